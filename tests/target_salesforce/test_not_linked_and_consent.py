"""People without a Salesforce record are "not linked", not rejects; consent flags.

`on_missing_key: not_linked` counts a record whose key is missing apart from the
rejects (summary `not_linked`, the not-linked file beside the rejects file);
`source_stream` lets a second entry read the same stream (Contact and Lead); a
value map with `map_default: null` writes an opt-out only when it is one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from target_salesforce.mapping import MappingError, parse_stream_mapping
from target_salesforce.rejects import not_linked_path

# One flag: the CleverTap opt-out (false) -> the Salesforce opt-out (true); an
# opt-in (true) or no value leaves the field alone (null is skipped).
OPT_OUT = {"map": {"false": True}, "map_default": None}
CONTACT_ENTRY: dict[str, Any] = {
    "object": "Contact",
    "action": "update",
    "null_policy": "skip",
    "on_missing_key": "not_linked",
    "fields": {
        "Id": "profile_sf_contact_id",
        "CleverTap_Id__c": "identity",
        "HasOptedOutOfEmail": {"source": "profile_msg_email", **OPT_OUT},
    },
}
LEAD_ENTRY: dict[str, Any] = {
    "source_stream": "profiles",
    "object": "Lead",
    "action": "update",
    "null_policy": "skip",
    "on_missing_key": "not_linked",
    "fields": {
        "Id": "profile_sf_lead_id",
        "HasOptedOutOfEmail": {"source": "profile_msg_email", **OPT_OUT},
    },
}
SCHEMA = {
    "type": "object",
    "properties": {
        "object_id": {"type": "string"},
        "identity": {"type": ["string", "null"]},
        "profile_sf_contact_id": {"type": ["string", "null"]},
        "profile_sf_lead_id": {"type": ["string", "null"]},
        "profile_msg_email": {"type": ["boolean", "null"]},
    },
}


def _singer(records: list[dict[str, Any]]) -> str:
    lines = [
        {
            "type": "SCHEMA",
            "stream": "profiles",
            "schema": SCHEMA,
            "key_properties": ["object_id"],
        },
        *({"type": "RECORD", "stream": "profiles", "record": r} for r in records),
    ]
    return "".join(json.dumps(line) + "\n" for line in lines)


def _row(harness: Any, sobject: str, record_id: str) -> dict[str, Any]:
    return next(r for r in harness.handle.live_records(sobject) if r["Id"] == record_id)


def test_missing_key_is_not_linked_when_the_mapping_says_so(
    harness: Any, tmp_path: Any
) -> None:
    contact = harness.handle.live_records("Contact")[0]
    records = [
        {"object_id": "o1", "identity": "ct-1", "profile_sf_contact_id": contact["Id"]},
        {"object_id": "o2", "identity": "app-user-2"},  # never came from Salesforce
        {"object_id": "o3", "identity": "app-user-3", "profile_sf_contact_id": ""},
    ]
    summary_path = tmp_path / "summary.json"
    run = harness.run(
        harness.config(
            streams={"profiles": CONTACT_ENTRY}, summary_path=str(summary_path)
        ),
        _singer(records),
    )
    assert run.error is None
    assert run.rejects == []
    stream = run.summary["profiles"]
    assert stream["received"] == 3
    assert stream["succeeded"] == 1
    assert stream["rejected"] == 0
    assert stream["not_linked"] == 2
    assert stream["received"] == (
        stream["succeeded"] + stream["rejected"] + stream["not_linked"]
    )
    listed = [
        json.loads(line)
        for line in (tmp_path / "rejects.not-linked.jsonl").read_text().splitlines()
    ]
    assert [e["record"]["identity"] for e in listed] == ["app-user-2", "app-user-3"]
    assert {e["code"] for e in listed} == {"NOT_LINKED"}
    assert listed[0]["fields"] == ["Id"]
    written = json.loads(summary_path.read_text())
    assert written["not_linked_path"] == str(tmp_path / "rejects.not-linked.jsonl")
    assert written["streams"][0]["not_linked"] == 2
    assert _row(harness, "Contact", contact["Id"])["CleverTap_Id__c"] == "ct-1"


def test_missing_key_stays_a_reject_by_default(harness: Any) -> None:
    entry = {k: v for k, v in CONTACT_ENTRY.items() if k != "on_missing_key"}
    run = harness.run(
        harness.config(streams={"profiles": entry}),
        _singer([{"object_id": "o2", "identity": "app-user-2"}]),
    )
    assert [r["code"] for r in run.rejects] == ["MISSING_KEY"]
    assert run.summary["profiles"]["not_linked"] == 0


def test_source_stream_entry_writes_the_same_records_to_leads(harness: Any) -> None:
    contact = harness.handle.live_records("Contact")[0]
    lead = next(
        r for r in harness.handle.live_records("Lead") if not r.get("IsConverted")
    )
    records = [
        {
            "object_id": "o1",
            "identity": "ct-1",
            "profile_sf_contact_id": contact["Id"],
            "profile_msg_email": False,
        },
        {
            "object_id": "o2",
            "identity": "ct-2",
            "profile_sf_lead_id": lead["Id"],
            "profile_msg_email": False,
        },
    ]
    run = harness.run(
        harness.config(streams={"profiles": CONTACT_ENTRY, "leads": LEAD_ENTRY}),
        _singer(records),
    )
    assert run.error is None
    assert run.rejects == []
    assert run.summary["profiles"]["succeeded"] == 1
    assert run.summary["profiles"]["not_linked"] == 1
    assert run.summary["leads"]["succeeded"] == 1
    assert run.summary["leads"]["not_linked"] == 1
    assert _row(harness, "Contact", contact["Id"])["HasOptedOutOfEmail"] is True
    assert _row(harness, "Lead", lead["Id"])["HasOptedOutOfEmail"] is True


def test_an_opt_in_never_clears_a_salesforce_opt_out(harness: Any) -> None:
    contact = harness.handle.live_records("Contact")[0]
    base = {"object_id": "o1", "profile_sf_contact_id": contact["Id"]}
    harness.run(
        harness.config(streams={"profiles": CONTACT_ENTRY}),
        _singer([{**base, "identity": "ct-1", "profile_msg_email": False}]),
    )
    assert _row(harness, "Contact", contact["Id"])["HasOptedOutOfEmail"] is True
    for value in (True, None):
        run = harness.run(
            harness.config(streams={"profiles": CONTACT_ENTRY}),
            _singer([{**base, "identity": "ct-2", "profile_msg_email": value}]),
        )
        assert run.rejects == []
        row = _row(harness, "Contact", contact["Id"])
        assert row["HasOptedOutOfEmail"] is True
        assert row["CleverTap_Id__c"] == "ct-2"


@pytest.mark.parametrize(
    ("entry", "stream"),
    [
        ({"source_stream": "profiles"}, "events_*"),
        ({"source_stream": "events_*"}, "leads"),
        ({"source_stream": "leads"}, "leads"),
        ({"on_missing_key": "ignore"}, "leads"),
        ({"when": "record.get('email')"}, "leads"),  # when needs source_stream
        ({"source_stream": "profiles", "when": ["x"]}, "leads"),
    ],
)
def test_bad_source_stream_or_missing_key_policy_is_refused(
    entry: dict[str, Any], stream: str
) -> None:
    raw = {"object": "Lead", "action": "update", "fields": {"Id": "x"}, **entry}
    with pytest.raises(MappingError):
        parse_stream_mapping(stream, raw)


def test_not_linked_file_sits_beside_the_rejects_file() -> None:
    assert not_linked_path("out/target-salesforce-rejects.jsonl") == (
        "out/target-salesforce-rejects.not-linked.jsonl"
    )
    assert not_linked_path("rejects") == "rejects.not-linked.jsonl"


def test_when_lets_only_matching_records_reach_a_source_stream_entry(
    harness: Any,
) -> None:
    lead = next(
        r for r in harness.handle.live_records("Lead") if not r.get("IsConverted")
    )
    entry = {
        **LEAD_ENTRY,
        "when": "record.get('identity') == 'ct-2'",
        "fields": {"Id": "profile_sf_lead_id", "CleverTap_Id__c": "identity"},
    }
    records = [
        {"object_id": "o1", "identity": "ct-1", "profile_sf_lead_id": lead["Id"]},
        {"object_id": "o2", "identity": "ct-2", "profile_sf_lead_id": lead["Id"]},
    ]
    run = harness.run(
        harness.config(streams={"profiles": {"skip": True}, "leads": entry}),
        _singer(records),
    )
    assert run.error is None
    assert run.summary["leads"]["received"] == 1
    assert _row(harness, "Lead", lead["Id"])["CleverTap_Id__c"] == "ct-2"


def test_second_entry_and_not_linked_work_through_the_cli(
    harness: Any, tmp_path: Any
) -> None:
    lead = next(
        r for r in harness.handle.live_records("Lead") if not r.get("IsConverted")
    )
    summary_path = tmp_path / "summary.json"
    config = harness.config(
        streams={"profiles": CONTACT_ENTRY, "leads": LEAD_ENTRY},
        summary_path=str(summary_path),
    )
    records = [
        {
            "object_id": "o2",
            "identity": "ct-2",
            "profile_sf_lead_id": lead["Id"],
            "profile_msg_email": False,
        }
    ]
    done = harness.run_cli(config, _singer(records))
    assert done.returncode == 0, done.stderr[-2000:]
    streams = {s["stream"]: s for s in json.loads(summary_path.read_text())["streams"]}
    assert streams["profiles"]["not_linked"] == 1
    assert streams["leads"]["succeeded"] == 1
    assert _row(harness, "Lead", lead["Id"])["HasOptedOutOfEmail"] is True


def test_when_is_the_shared_expression_language_with_null_safe_fields() -> None:
    # The same language as target-clevertap's `when:`: a field the record lacks is
    # None (a stream-map `__filter__` would stop the run with NameNotDefined), an
    # ordering with None is false, and numeric text compares as a number.
    raw = {
        "object": "Lead",
        "action": "update",
        "fields": {"Id": "x"},
        "source_stream": "profiles",
        "when": "score >= 5 and email is not None",
    }
    when = parse_stream_mapping("leads", raw).when
    assert when is not None
    assert when({"score": "7", "email": "a@b.c"})
    assert not when({"email": "a@b.c"})
    assert not when({"score": 9})
    with pytest.raises(MappingError, match=r"streams\.leads\.when: invalid expr"):
        parse_stream_mapping("leads", {**raw, "when": "score => 5"})
