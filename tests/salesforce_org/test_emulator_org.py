"""The emulator's sample org and its Apex handler follow salesforce-org/.

- Every custom field of salesforce-org/ is in the emulator's describe with the
  same type, length, precision, External ID, unique and lookup target.
- The emulator's `/ct/nps/*` handler honours the contract documented in
  CleverTapNpsService.cls: the same payload keys (read from the class's key
  lists), the same outcomes and status codes, the same error codes.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from sandbox.salesforce import org_metadata, schema

if TYPE_CHECKING:
    import requests
    from sandbox.salesforce.testing import SalesforceHandle

REPO = Path(__file__).resolve().parents[2]
APEX = (
    REPO / "salesforce-org/force-app/main/default/classes/CleverTapNpsService.cls"
).read_text()
APEX_PRESET = REPO / "transforms" / "clevertap_to_salesforce.apex.yml"
DESCRIBE_TYPES = {
    "Text": "string",
    "Email": "email",
    "LongTextArea": "textarea",
    "DateTime": "datetime",
    "Date": "date",
    "Number": "double",
    "Currency": "currency",
    "Percent": "percent",
    "Picklist": "picklist",
    "MultiselectPicklist": "multipicklist",
    "Checkbox": "boolean",
    "Lookup": "reference",
}
# Which field each key list of the class writes, on a Contact.
KEY_LISTS = {
    "NPS_KEYS": ("NPS_Score__c", 7),
    "LEAD_KEYS": ("Lead_Score__c", 42),
    "CITY_KEYS": ("MailingCity", "Lisbon"),
    "FEEDBACK_KEYS": ("Last_Feedback__c", "Great"),
}


def apex_keys(name: str) -> list[str]:
    """The string literals of the list constant `name` in the class."""
    match = re.search(name + r"\s*=\s*new List<String>\{([^}]*)\}", APEX)
    assert match, f"CleverTapNpsService.cls has no {name} list"
    return re.findall(r"'([^']*)'", match.group(1))


def apex_codes() -> set[str]:
    """The error codes the class defines as constants."""
    return set(re.findall(r"static final String (\w+) = '\1';", APEX))


def _all_fields() -> list[org_metadata.FieldMeta]:
    return [f for fields in org_metadata.custom_fields().values() for f in fields]


@pytest.mark.parametrize("meta", _all_fields(), ids=lambda m: f"{m.sobject}.{m.name}")
def test_emulator_describe_matches_the_metadata_file(
    meta: org_metadata.FieldMeta,
) -> None:
    sobject = schema.OBJECTS[meta.sobject]
    found = sobject.field(meta.name)
    assert found is not None, f"{meta.path}: not in the emulator's {meta.sobject}"
    described = found.describe()
    assert described["type"] == DESCRIBE_TYPES[meta.type], meta.path
    assert described["externalId"] is meta.external_id, meta.path
    assert described["unique"] is meta.unique, meta.path
    assert described["label"] == meta.label, meta.path
    # Checkboxes are never null on Salesforce, required or not.
    assert described["nillable"] is not (meta.required or meta.type == "Checkbox")
    if meta.type in {"Text", "LongTextArea"}:
        assert described["length"] == meta.length, meta.path
    if meta.type in {"Number", "Currency", "Percent"}:
        assert (described["precision"], described["scale"]) == (
            meta.precision,
            meta.scale,
        ), meta.path
    if meta.type == "Lookup":
        assert described["referenceTo"] == [meta.reference_to], meta.path
    if meta.picklist:
        values = [p["value"] for p in described["picklistValues"]]
        assert values == list(meta.picklist), meta.path


def test_emulator_custom_object_is_the_metadata_object() -> None:
    for name, meta in org_metadata.custom_objects().items():
        sobject = schema.OBJECTS[name]
        assert sobject.custom
        assert sobject.label == meta.label
        name_field = sobject.field("Name")
        assert name_field is not None
        assert name_field.auto_number is (meta.name_field_type == "AutoNumber")
        written = {f.name for f in sobject.fields if f.custom}
        assert written == {f.name for f in org_metadata.custom_fields()[name]}


def test_emulator_validation_rule_is_the_metadata_rule() -> None:
    for sobject, rules in org_metadata.range_rules().items():
        assert schema.OBJECTS[sobject].validation == tuple(
            (r.field, r.low, r.high, r.message) for r in rules
        )


# --- the Apex contract ---------------------------------------------------------------


def _post(
    handle: SalesforceHandle, body: Any, method: str = "POST"
) -> requests.Response:
    session = handle.session()
    session.headers["Authorization"] = f"Bearer {handle.access_token}"
    return session.request(
        method,
        f"{handle.base_url}/services/apexrest/ct/nps/v1",
        json=body,
        timeout=30,
    )


def _contact(handle: SalesforceHandle) -> dict[str, Any]:
    return next(c for c in handle.live_records("Contact") if c.get("Email"))


def test_every_preset_payload_key_is_read_or_documented_as_ignored() -> None:
    preset = yaml.safe_load(APEX_PRESET.read_text())
    payload = preset["streams"]["events_nps_submitted"]["apex"]["payload"]
    read = {k for name in ("EMAIL_KEYS", *KEY_LISTS) for k in apex_keys(name)}
    ignored = set(payload) - read
    assert ignored == {"identity", "timestamp"}
    assert (
        "Other keys (the preset also sends identity and timestamp) are ignored" in APEX
    )
    assert "urlMapping='/ct/nps/*'" in APEX
    assert preset["streams"]["events_nps_submitted"]["apex"]["path"].startswith(
        "ct/nps/"
    )


@pytest.mark.parametrize("key", apex_keys("EMAIL_KEYS"))
def test_emulator_finds_the_contact_by_every_email_key_of_the_class(
    salesforce_emulator: SalesforceHandle, key: str
) -> None:
    contact = _contact(salesforce_emulator)
    response = _post(salesforce_emulator, {key: contact["Email"], "npsScore": 8})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == contact["Id"]
    assert response.json()["sobject"] == "Contact"


@pytest.mark.parametrize(
    ("key", "field", "value"),
    [(k, *KEY_LISTS[name]) for name in KEY_LISTS for k in apex_keys(name)],
)
def test_emulator_writes_the_field_the_class_writes_for_every_key(
    salesforce_emulator: SalesforceHandle, key: str, field: str, value: object
) -> None:
    contact = _contact(salesforce_emulator)
    response = _post(salesforce_emulator, {"email": contact["Email"], key: value})
    assert response.status_code == 200, response.text
    assert field in response.json()["updatedFields"]


def test_emulator_outcomes_and_codes_are_the_class_contract(
    salesforce_emulator: SalesforceHandle,
) -> None:
    codes = apex_codes()
    assert codes == {"JSON_PARSER_ERROR", "REQUIRED_FIELD_MISSING", "NOT_FOUND"}
    email = _contact(salesforce_emulator)["Email"]

    unknown = _post(salesforce_emulator, {"email": "nobody@example.invalid"})
    assert unknown.status_code == 404
    assert unknown.json()["errorCode"] == "NOT_FOUND"

    no_email = _post(salesforce_emulator, {"npsScore": 5})
    assert no_email.status_code == 400
    assert no_email.json()["errorCode"] == "REQUIRED_FIELD_MISSING"

    invalid = _post(salesforce_emulator, {"email": email, "npsScore": 11})
    assert invalid.status_code == 400
    assert invalid.json()["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"

    not_a_number = _post(salesforce_emulator, {"email": email, "npsScore": "ten"})
    assert not_a_number.status_code == 400
    assert not_a_number.json()["errorCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    assert "'INVALID_TYPE_ON_FIELD_IN_RECORD'" in APEX

    for bad in ([], [1, 2]):
        response = _post(salesforce_emulator, bad)
        assert response.status_code == 400
        assert response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"

    wrapped = _post(
        salesforce_emulator,
        {"records": [{"email": email, "npsScore": 3}, {"npsScore": 1}]},
    )
    assert wrapped.status_code == 200
    assert [r["success"] for r in wrapped.json()] == [True, False]
    assert wrapped.json()[1]["errorCode"] == "REQUIRED_FIELD_MISSING"

    bare = _post(salesforce_emulator, [{"email": email, "npsScore": 3}], "PATCH")
    assert bare.status_code == 200
    assert isinstance(bare.json(), list)

    # Only POST, PUT and PATCH are defined in the class: the platform answers 405.
    assert "@HttpGet" not in APEX
    refused = _post(salesforce_emulator, None, "GET")
    assert refused.status_code == 405
    assert refused.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def _contacts(handle: SalesforceHandle, count: int) -> list[dict[str, Any]]:
    """Contacts with an email no other Contact or Lead shares."""
    emails: dict[str, int] = {}
    for name in ("Contact", "Lead"):
        for row in handle.live_records(name):
            if row.get("Email"):
                key = row["Email"].lower()
                emails[key] = emails.get(key, 0) + 1
    rows = [
        c
        for c in handle.live_records("Contact")
        if c.get("Email") and emails[c["Email"].lower()] == 1
    ]
    return rows[:count]


def _stored(handle: SalesforceHandle, record_id: str) -> dict[str, Any]:
    return next(c for c in handle.live_records("Contact") if c["Id"] == record_id)


def test_emulator_list_saves_each_person_on_its_own_and_reports_the_dml_code(
    salesforce_emulator: SalesforceHandle,
) -> None:
    # Database.update(records, false): a refused record fails alone, in a 200
    good, bad = _contacts(salesforce_emulator, 2)
    assert "Database.update(toSave, false)" in APEX
    response = _post(
        salesforce_emulator,
        [{"email": good["Email"], "npsScore": 3}, {"email": bad["Email"], "nps": 11}],
    )
    assert response.status_code == 200, response.text
    ok, failed = response.json()
    assert (ok["success"], ok["id"], ok["updatedFields"]) == (
        True,
        good["Id"],
        ["NPS_Score__c"],
    )
    assert set(failed) == {"email", "success", "errorCode", "message", "id"}
    assert failed["success"] is False
    assert failed["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert (failed["email"], failed["id"]) == (bad["Email"], bad["Id"])
    assert failed["message"]
    assert _stored(salesforce_emulator, good["Id"])["NPS_Score__c"] == 3
    assert (
        _stored(salesforce_emulator, bad["Id"])["NPS_Score__c"] == bad["NPS_Score__c"]
    )


def test_emulator_merges_objects_for_one_person_into_one_save(
    salesforce_emulator: SalesforceHandle,
) -> None:
    [contact] = _contacts(salesforce_emulator, 1)
    assert "are merged, later values winning" in APEX
    # Saved one after the other, the first object would fail the validation rule.
    response = _post(
        salesforce_emulator,
        [
            {"email": contact["Email"], "npsScore": 11, "city": "Porto"},
            {"email": contact["Email"].upper(), "npsScore": 4},
        ],
    )
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["success"] for r in results] == [True, True]
    assert {tuple(r["updatedFields"]) for r in results} == {
        ("MailingCity", "NPS_Score__c")
    }
    stored = _stored(salesforce_emulator, contact["Id"])
    assert (stored["NPS_Score__c"], stored["MailingCity"]) == (4, "Porto")


def test_emulator_skips_empty_values_as_the_class_does(
    salesforce_emulator: SalesforceHandle,
) -> None:
    [contact] = _contacts(salesforce_emulator, 1)
    response = _post(
        salesforce_emulator,
        {"email": "", "Email": contact["Email"], "npsScore": "", "nps": None, "NPS": 6},
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == contact["Id"]
    assert _stored(salesforce_emulator, contact["Id"])["NPS_Score__c"] == 6


def test_emulator_does_not_match_converted_leads(
    salesforce_emulator: SalesforceHandle,
) -> None:
    assert "IsConverted = false" in APEX
    leads = [
        lead for lead in salesforce_emulator.live_records("Lead") if lead.get("Email")
    ]
    open_emails = {lead["Email"].lower() for lead in leads if not lead["IsConverted"]}
    converted = next(
        lead
        for lead in leads
        if lead["IsConverted"] and lead["Email"].lower() not in open_emails
    )
    # The Contact it was converted into carries the email too: move it away.
    session = salesforce_emulator.session()
    session.headers["Authorization"] = f"Bearer {salesforce_emulator.access_token}"
    for contact in salesforce_emulator.live_records("Contact"):
        if (contact.get("Email") or "").lower() == converted["Email"].lower():
            moved = session.patch(
                f"{salesforce_emulator.base_url}/services/data/v62.0/sobjects/"
                f"Contact/{contact['Id']}",
                json={"Email": f"moved.{contact['Id']}@example.com"},
                timeout=30,
            )
            assert moved.status_code == 204, moved.text
    response = _post(salesforce_emulator, {"email": converted["Email"], "nps": 5})
    assert response.status_code == 404
    assert response.json()["errorCode"] == "NOT_FOUND"


def test_emulator_feedback_date_is_today_for_the_running_user(
    salesforce_emulator: SalesforceHandle,
) -> None:
    [contact] = _contacts(salesforce_emulator, 1)
    user = next(
        u
        for u in salesforce_emulator.live_records("User")
        if u["Username"] == salesforce_emulator.username
    )
    zone = zoneinfo.ZoneInfo(user["TimeZoneSidKey"])
    before = dt.datetime.now(zone).date().isoformat()
    response = _post(salesforce_emulator, {"email": contact["Email"], "comment": "Ok"})
    after = dt.datetime.now(zone).date().isoformat()
    assert response.status_code == 200, response.text
    stored = _stored(salesforce_emulator, contact["Id"])
    assert stored["Last_Feedback__c"] == "Ok"
    assert stored["Last_Feedback_Date__c"] in {before, after}
