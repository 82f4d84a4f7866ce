"""A Contact's typed fields through both pipelines and back keep their values.

Salesforce sample org -> (import preset) target-clevertap -> CleverTap emulator ->
tap-clevertap -> (export preset) target-salesforce -> the same Salesforce org, whose
fields were cleared (or flipped) in between.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tap_clevertap.records import snake

ROOT = Path(__file__).resolve().parents[2]
TRANSFORMS = ROOT / "transforms"

# Contact field -> its CleverTap profile key (the preset's, or the field name for the
# sample org's custom fields this test adds to the preset's Contact entry).
TYPED = {
    "Birthdate": "DOB",  # date
    "Last_Feedback_Date__c": "Last_Feedback_Date__c",  # date
    "Last_Engagement_Date__c": "Last_Engagement_Date__c",  # date-time
    "NPS_Score__c": "NPS_Score__c",  # double
    "Lifetime_Value__c": "Lifetime_Value__c",  # currency
    "Engagement_Score__c": "Engagement_Score__c",  # percent
    "Push_Opt_In__c": "Push_Opt_In__c",  # boolean
    "Title": "Title",  # text
}
DATES = {"Birthdate", "Last_Feedback_Date__c"}
DATETIMES = {"Last_Engagement_Date__c"}


def _contact_mapping() -> dict[str, Any]:
    """The preset's Contact entry, with the sample org's typed custom fields added."""
    doc = yaml.safe_load(
        (TRANSFORMS / "salesforce_to_clevertap.yml").read_text(encoding="utf-8")
    )
    contact: dict[str, Any] = doc["streams"]["Contact"]
    include = contact["profile"]["properties"]["include"]
    include += [f for f in TYPED if f not in include]
    return contact


def _export_profiles_mapping() -> dict[str, Any]:
    """The export preset's `profiles` entry, with the typed fields mapped back."""
    doc = yaml.safe_load(
        (TRANSFORMS / "clevertap_to_salesforce.yml").read_text(encoding="utf-8")
    )
    profiles: dict[str, Any] = doc["streams"]["profiles"]
    for field, key in TYPED.items():
        profiles["fields"][field] = f"profile_{snake(key)}"
    return profiles


def _day(value: str) -> str:
    return value[:10]


def _instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("+0000", "+00:00"))


@pytest.mark.slow
def test_contact_typed_fields_survive_salesforce_clevertap_salesforce(
    trusted_salesforce: Any,
    make_clevertap_emulator: Any,
    fast_retries: None,
    tmp_path: Path,
    kit: Any,
) -> None:
    del fast_retries
    sf = trusted_salesforce
    ct = make_clevertap_emulator()
    contact = next(
        c for c in sf.records("Contact") if all(c.get(f) is not None for f in TYPED)
    )
    # A task of this contact gives the profile an event in tap-clevertap's range.
    task = {**sf.records("Task")[0], "WhoId": contact["Id"]}
    identity = f"SF_Contact_{contact['Id']}"

    kit.run_target_clevertap(
        {
            **ct.plugin_config(),
            "mappings_file": str(TRANSFORMS / "salesforce_to_clevertap.yml"),
            "mappings": {"Contact": _contact_mapping()},
            "state_dir": str(tmp_path / "ct-state"),
            "rejects_path": str(tmp_path / "ct-rejects.jsonl"),
            "default_phone_country": "US",
        },
        kit.singer_lines([("Contact", [contact]), ("Task", [task])]),
    )
    assert kit.read_jsonl(tmp_path / "ct-rejects.jsonl") == []
    (profile,) = [p for p in ct.profiles() if p["identity"] == identity]
    data = profile["profileData"]
    # Consent: an opt-out arrives as false; no opt-out sends nothing.
    assert data.get("MSG-email") is (False if contact["HasOptedOutOfEmail"] else None)
    assert data.get("MSG-sms") is (False if contact["DoNotCall"] else None)
    assert data["Push_Opt_In__c"] is contact["Push_Opt_In__c"]

    # Clear the fields in Salesforce (flip the boolean, which cannot be null).
    cleared = dict.fromkeys(TYPED) | {"Push_Opt_In__c": not contact["Push_Opt_In__c"]}
    reply = sf.session().patch(
        f"{sf.base_url}/services/data/v62.0/sobjects/Contact/{contact['Id']}",
        json=cleared,
        headers={"Authorization": f"Bearer {sf.access_token}"},
        timeout=30,
    )
    assert reply.status_code == 204, reply.text

    day = dt.date.fromisoformat(_day(task["CreatedDate"]))
    messages = kit.run_tap_clevertap(
        {
            **ct.plugin_config(),
            "start_date": f"{day.isoformat()}T00:00:00Z",
            "end_date": f"{(day + dt.timedelta(days=2)).isoformat()}T00:00:00Z",
            "event_names": ["Task Created"],
            "window_days": 2,
            "campaign_lookahead_days": 0,
            # The filter transforms/README.md suggests for people without a Contact.
            "stream_maps": {
                "profiles": {"__filter__": "record.get('profile_sf_contact_id')"}
            },
        }
    )
    text = "".join(
        json.dumps(m) + "\n"
        for m in messages
        if m["type"] in {"SCHEMA", "RECORD"} and m["stream"] == "profiles"
    )
    assert '"RECORD"' in text, "tap-clevertap exported no profile"
    target = kit.run_target_salesforce(
        {
            "access_token": sf.access_token,
            "instance_url": sf.base_url,
            "mappings_file": str(TRANSFORMS / "clevertap_to_salesforce.yml"),
            "streams": {"profiles": _export_profiles_mapping()},
            "rejects_path": str(tmp_path / "sf-rejects.jsonl"),
            "retry_backoff_seconds": 0.001,
        },
        text,
    )
    del target
    assert kit.read_jsonl(tmp_path / "sf-rejects.jsonl") == []

    after = next(c for c in sf.records("Contact") if c["Id"] == contact["Id"])
    assert after["CleverTap_Id__c"] == identity
    for field in TYPED:
        before, back = contact[field], after[field]
        if field in DATES:
            assert _day(back) == _day(before), field
        elif field in DATETIMES:
            assert _instant(back) == _instant(before), field
        elif isinstance(before, bool):
            assert back is before, field
        elif isinstance(before, float | int):
            assert float(back) == float(before), field
        else:
            assert back == before, field
