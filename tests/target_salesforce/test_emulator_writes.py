"""Upserts through Collections and Bulk 2.0, duplicates, dry run, describe checks."""

from __future__ import annotations

import csv
import decimal
import io
import json
from typing import Any

import pytest

from tests.target_salesforce.conftest import APEX_LIST


def test_collections_upsert_creates_then_updates_on_external_id(harness: Any) -> None:
    first = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert first.error is None
    assert first.states == [{"bookmarks": {"nps": {"ts": "2026-11-02T11:30:00Z"}}}]
    rao = harness.contact("ct-test-1")
    assert rao is not None
    assert (rao["LastName"], rao["Email"], rao["NPS_Score__c"]) == (
        "Rao",
        "rao@example.com",
        7,
    )
    assert first.summary["nps"]["created"] == 2

    second = harness.run(harness.config(), harness.fixture("nps_upsert_update.singer"))
    assert second.error is None
    rao_again = harness.contact("ct-test-1")
    assert rao_again is not None
    assert rao_again["Id"] == rao["Id"]
    assert rao_again["NPS_Score__c"] == 3
    # null_policy skip: a null email leaves the stored value unchanged.
    assert rao_again["Email"] == "rao@example.com"
    assert harness.contact("ct-test-3") is not None
    assert (second.summary["nps"]["created"], second.summary["nps"]["updated"]) == (
        1,
        1,
    )
    paths = [r["path"] for r in harness.writes()]
    assert all("composite/sobjects/Contact/CleverTap_Id__c" in p for p in paths)


def test_bulk_upsert_creates_then_updates_and_maps_results_back(harness: Any) -> None:
    config = harness.config(bulk_threshold=1)
    first = harness.run(config, harness.fixture("nps_upsert_create.singer"))
    assert first.error is None
    assert first.summary["nps"]["api_calls"] == {"bulk2_jobs": 1}
    assert first.summary["nps"]["created"] == 2
    second = harness.run(config, harness.fixture("nps_upsert_update.singer"))
    assert second.error is None
    assert (second.summary["nps"]["created"], second.summary["nps"]["updated"]) == (
        1,
        1,
    )
    rao = harness.contact("ct-test-1")
    assert rao is not None
    assert rao["NPS_Score__c"] == 3
    assert rao["Email"] == "rao@example.com"  # empty CSV cell: unchanged
    jobs = [r for r in harness.writes() if r["path"].endswith("/jobs/ingest")]
    assert len(jobs) == 2
    assert second.states == [{"bookmarks": {"nps": {"ts": "2026-11-03T09:00:00Z"}}}]


def test_bulk_set_null_policy_sends_na_and_clears_the_field(harness: Any) -> None:
    harness.run(
        harness.config(bulk_threshold=1), harness.fixture("nps_upsert_create.singer")
    )
    run = harness.run(
        harness.config(bulk_threshold=1, null_policy="set_null"),
        harness.fixture("nps_upsert_update.singer"),
    )
    assert run.error is None
    rao = harness.contact("ct-test-1")
    assert rao is not None
    assert rao["Email"] is None


def test_collections_partial_failure_writes_rejects_with_code(harness: Any) -> None:
    run = harness.run(harness.config(), harness.fixture("nps_invalid_score.singer"))
    assert run.error is None
    assert harness.contact("ct-good-1") is not None
    assert harness.contact("ct-bad-1") is None
    assert len(run.rejects) == 1
    reject = run.rejects[0]
    assert reject["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert (reject["stream"], reject["object"], reject["key"]) == (
        "nps",
        "Contact",
        "ct-bad-1",
    )
    assert reject["record"]["score"] == 11
    assert harness.rejects_path.stat().st_mode & 0o777 == 0o600
    assert run.summary["nps"]["rejected_by_code"] == {
        "FIELD_CUSTOM_VALIDATION_EXCEPTION": 1
    }
    assert run.states  # continue: the batch is settled, STATE follows


def test_bulk_failed_results_become_rejects(harness: Any) -> None:
    run = harness.run(
        harness.config(bulk_threshold=1), harness.fixture("nps_invalid_score.singer")
    )
    assert run.error is None
    assert [r["key"] for r in run.rejects] == ["ct-bad-1"]
    assert run.rejects[0]["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert harness.contact("ct-good-1") is not None


def test_on_reject_fail_stops_after_settling_and_writes_no_state(harness: Any) -> None:
    run = harness.run(
        harness.config(on_reject="fail"), harness.fixture("nps_invalid_score.singer")
    )
    assert run.error is not None
    assert "on_reject is 'fail'" in str(run.error)
    assert run.states == []
    assert len(run.rejects) == 1


def test_max_reject_ratio_fails_the_run(harness: Any) -> None:
    run = harness.run(
        harness.config(max_reject_ratio=0.25),
        harness.fixture("nps_invalid_score.singer"),
    )
    assert "max_reject_ratio" in str(run.error)
    assert run.states == []


def test_duplicate_keys_are_merged_later_wins(harness: Any) -> None:
    run = harness.run(harness.config(), harness.fixture("nps_duplicate_keys.singer"))
    assert run.error is None
    sen = harness.contact("ct-dup-1")
    assert sen is not None
    assert (sen["NPS_Score__c"], sen["Email"]) == (8, "sen@example.com")
    assert run.summary["nps"]["succeeded"] == 3
    composite = [r for r in harness.writes() if "composite" in r["path"]]
    assert len(composite) == 1


def test_duplicate_keys_rejected_before_sending(harness: Any) -> None:
    run = harness.run(
        harness.config(duplicate_keys="reject"),
        harness.fixture("nps_duplicate_keys.singer"),
    )
    assert run.error is None
    assert harness.contact("ct-dup-1") is None
    assert harness.contact("ct-dup-2") is not None
    assert [r["code"] for r in run.rejects] == ["DUPLICATE_KEY_IN_BATCH"] * 2


def test_dry_run_validates_and_writes_nothing(harness: Any) -> None:
    dry_path = harness.tmp_path / "dry.jsonl"
    before = len(harness.handle.records("Contact"))
    run = harness.run(
        harness.config(dry_run=True, dry_run_path=str(dry_path)),
        harness.fixture("nps_upsert_create.singer"),
    )
    assert run.error is None
    assert len(harness.handle.records("Contact")) == before
    assert harness.writes() == []
    lines = [json.loads(x) for x in dry_path.read_text().splitlines()]
    assert [x["key"] for x in lines] == ["ct-test-1", "ct-test-2"]
    assert lines[0]["api"] == "collections"
    assert lines[0]["payload"]["NPS_Score__c"] == 7
    assert lines[0]["payload"]["Last_Engagement_Date__c"] == "2026-11-01T10:00:00.000Z"


def test_dry_run_still_refuses_unknown_field(harness: Any) -> None:
    mapping = {
        **harness.nps_mapping,
        "fields": {**harness.nps_mapping["fields"], "Shoe_Size__c": "score"},
    }
    run = harness.run(
        harness.config(dry_run=True, streams={"nps": mapping}),
        harness.fixture("nps_upsert_create.singer"),
    )
    assert "'Shoe_Size__c' does not exist on Contact" in str(run.error)


def test_unknown_field_fails_before_any_write(harness: Any) -> None:
    mapping = {
        **harness.nps_mapping,
        "fields": {**harness.nps_mapping["fields"], "Shoe_Size__c": "score"},
    }
    run = harness.run(
        harness.config(streams={"nps": mapping}),
        harness.fixture("nps_upsert_create.singer"),
    )
    assert "'Shoe_Size__c' does not exist on Contact" in str(run.error)
    assert harness.writes() == []
    assert run.states == []


def test_non_writable_field_fails_before_any_write(harness: Any) -> None:
    mapping = {
        **harness.nps_mapping,
        "fields": {**harness.nps_mapping["fields"], "CreatedDate": "ts"},
    }
    run = harness.run(
        harness.config(streams={"nps": mapping}),
        harness.fixture("nps_upsert_create.singer"),
    )
    assert "'CreatedDate' on Contact is not writable for upsert" in str(run.error)
    assert harness.writes() == []


def test_upsert_key_must_be_an_external_id(harness: Any) -> None:
    mapping = {**harness.nps_mapping, "external_id_field": "Email"}
    run = harness.run(
        harness.config(streams={"nps": mapping}),
        harness.fixture("nps_upsert_create.singer"),
    )
    assert "'Email' on Contact is not flagged External ID" in str(run.error)


def test_unmapped_stream_fails_when_configured(harness: Any) -> None:
    run = harness.run(
        harness.config(streams={}, unmapped_streams="fail"),
        harness.fixture("nps_upsert_create.singer"),
    )
    assert "stream 'nps' has no mapping" in str(run.error)


def test_unmapped_stream_is_skipped_with_one_warning(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    run = harness.run(
        harness.config(streams={}), harness.fixture("nps_upsert_create.singer")
    )
    assert run.error is None
    assert harness.handle.requests_log() == []
    warnings = [r for r in caplog.records if "has no mapping" in r.getMessage()]
    assert len(warnings) == 1
    assert run.summary["nps"]["received"] == 2
    assert run.states


def test_mappings_file_drives_the_stream(harness: Any) -> None:
    path = harness.tmp_path / "preset.yml"
    path.write_text(
        "streams:\n"
        "  nps:\n"
        "    object: Contact\n"
        "    external_id_field: CleverTap_Id__c\n"
        "    fields:\n"
        "      CleverTap_Id__c: identity\n"
        "      LastName: name\n"
        "      LeadSource: {value: CleverTap}\n"
        "      Description: {template: 'NPS {score} ({email})'}\n",
        encoding="utf-8",
    )
    config = harness.config(mappings_file=str(path))
    del config["streams"]
    run = harness.run(config, harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    rao = harness.contact("ct-test-1")
    assert rao is not None
    assert (rao["LeadSource"], rao["Description"]) == (
        "CleverTap",
        "NPS 7 (rao@example.com)",
    )


def test_apex_payload_per_record_reports_each_outcome(harness: Any) -> None:
    seeded = next(c for c in harness.handle.live_records("Contact") if c.get("Email"))
    streams = {
        "nps_feedback": {
            "mode": "apex",
            "apex": {
                "path": "ct/nps/feedback",
                "payload": {
                    "email": "{profile.email}",
                    "leadScore": "{score}",
                    "npsScore": "{score}",
                    "city": "{profile.city}",
                    "comment": "{comment}",
                },
            },
        }
    }
    run = harness.run(
        harness.config(streams=streams),
        harness.fixture("nps_apex_feedback.singer", __EMAIL__=seeded["Email"]),
    )
    assert run.error is None
    calls = harness.handle.apex_calls()
    assert len(calls) == 2
    updated = next(
        c for c in harness.handle.live_records("Contact") if c["Id"] == seeded["Id"]
    )
    assert (updated["NPS_Score__c"], updated["MailingCity"]) == (9, "Pune")
    assert [r["code"] for r in run.rejects] == ["NOT_FOUND"]
    assert run.summary["nps_feedback"]["succeeded"] == 1


def test_apex_list_mode_sends_one_call_and_maps_item_results(harness: Any) -> None:
    seeded = next(c for c in harness.handle.live_records("Contact") if c.get("Email"))
    streams = APEX_LIST
    run = harness.run(
        harness.config(streams=streams),
        harness.fixture("nps_apex_feedback.singer", __EMAIL__=seeded["Email"]),
    )
    assert run.error is None
    assert len(harness.handle.apex_calls()) == 1
    assert [r["code"] for r in run.rejects] == ["NOT_FOUND"]
    assert run.summary["nps_feedback"]["succeeded"] == 1


def _two_contacts(harness: Any) -> list[dict[str, Any]]:
    return list(harness.handle.live_records("Contact"))[:2]


def test_update_by_id_converts_types_through_collections(harness: Any) -> None:
    first, second = _two_contacts(harness)
    streams = {
        "contact_scores": {
            "object": "Contact",
            "action": "update",
            "fields": {
                "Id": "sf_id",
                "NPS_Score__c": "score",
                "HasOptedOutOfEmail": "opted_out",
            },
        }
    }
    run = harness.run(
        harness.config(streams=streams),
        harness.fixture(
            "contact_update_by_id.singer", __ID1__=first["Id"], __ID2__=second["Id"]
        ),
    )
    assert run.error is None
    rows = {c["Id"]: c for c in harness.handle.live_records("Contact")}
    assert (
        rows[first["Id"]]["NPS_Score__c"],
        rows[first["Id"]]["HasOptedOutOfEmail"],
    ) == (
        4,
        True,
    )
    assert rows[second["Id"]]["HasOptedOutOfEmail"] is False


def test_delete_by_id_through_bulk(harness: Any) -> None:
    first, second = _two_contacts(harness)
    streams = {
        "contact_scores": {
            "object": "Contact",
            "action": "delete",
            "fields": {"Id": "sf_id"},
        }
    }
    run = harness.run(
        harness.config(streams=streams, bulk_threshold=0),
        harness.fixture(
            "contact_update_by_id.singer", __ID1__=first["Id"], __ID2__=second["Id"]
        ),
    )
    assert run.error is None
    live = {c["Id"] for c in harness.handle.live_records("Contact")}
    assert first["Id"] not in live
    assert second["Id"] not in live
    assert run.summary["contact_scores"]["succeeded"] == 2


ENGAGEMENT: dict[str, Any] = {
    "events_*": {
        "object": "CleverTap_Engagement__c",
        "external_id_field": "CleverTap_Event_Id__c",
        "fields": {
            "CleverTap_Event_Id__c": {"template": "{identity}:{event_name}:{ts}"},
            "CleverTap_Id__c": "identity",
            "Event_Name__c": "event_name",
            "Event_Timestamp__c": {"source": "ts", "type": "datetime"},
            "Channel__c": "props.channel",
            "Contact__r.CleverTap_Id__c": "identity",
        },
        "pack_unmapped_into": "Properties__c",
    }
}


@pytest.mark.parametrize("bulk_threshold", [2000, 0])
def test_events_link_to_contact_by_its_external_id(
    harness: Any, bulk_threshold: int
) -> None:
    harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    run = harness.run(
        harness.config(streams=ENGAGEMENT, bulk_threshold=bulk_threshold),
        harness.fixture("engagement_events.singer"),
    )
    assert run.error is None
    rao = harness.contact("ct-test-1")
    assert rao is not None
    rows = {
        r["CleverTap_Event_Id__c"]: r
        for r in harness.handle.live_records("CleverTap_Engagement__c")
    }
    event = rows["ct-test-1:NPS Submitted:20261101100000"]
    assert event["Contact__c"] == rao["Id"]
    assert event["Event_Timestamp__c"].startswith("2026-11-01T10:00:00")
    # Top-level properties that no field reads are packed as JSON.
    assert json.loads(event["Properties__c"]) == {"device": "android"}
    assert [r["key"] for r in run.rejects] == [
        "ct-unknown:NPS Submitted:20261102120000"
    ]
    assert run.rejects[0]["code"] == "INVALID_FIELD"


def test_relationship_to_a_non_external_id_is_refused(harness: Any) -> None:
    mapping = ENGAGEMENT["events_*"]
    fields = {**mapping["fields"], "Contact__r.LastName": "identity"}
    streams = {"events_*": {**mapping, "fields": fields}}
    run = harness.run(
        harness.config(streams=streams), harness.fixture("engagement_events.singer")
    )
    assert "'LastName' is not an External ID field of Contact" in str(run.error)


@pytest.mark.parametrize("bulk_threshold", [2000, 0])
def test_external_ids_with_url_characters_round_trip(
    harness: Any, bulk_threshold: int
) -> None:
    config = harness.config(bulk_threshold=bulk_threshold)
    for _ in range(2):  # create, then update the same two records
        run = harness.run(config, harness.fixture("nps_special_keys.singer"))
        assert run.error is None
        assert run.rejects == []
    assert run.summary["nps"]["updated"] == 2
    slash = harness.contact("ct/1?a#b %c&d")
    assert slash is not None
    assert slash["LastName"] == "Slash"
    assert harness.contact("mail+tag@example.inc") is not None


def test_dry_run_apex_shows_payloads_and_calls_nothing(harness: Any) -> None:
    dry_path = harness.tmp_path / "dry-apex.jsonl"
    streams = {
        "nps_feedback": {
            "mode": "apex",
            "apex": {"path": "ct/nps/{identity}", "payload": {"score": "{score}"}},
        }
    }
    run = harness.run(
        harness.config(streams=streams, dry_run=True, dry_run_path=str(dry_path)),
        harness.fixture("nps_apex_feedback.singer", __EMAIL__="x@example.com"),
    )
    assert run.error is None
    assert harness.handle.apex_calls() == []
    lines = [json.loads(x) for x in dry_path.read_text().splitlines()]
    assert [(x["path"], x["payload"]) for x in lines] == [
        ("ct/nps/ct-a-1", {"score": 9}),
        ("ct/nps/ct-a-2", {"score": 4}),
    ]


def test_collections_calls_are_chunked(harness: Any) -> None:
    run = harness.run(
        harness.config(collections_batch_size=1),
        harness.fixture("nps_upsert_create.singer"),
    )
    assert run.error is None
    assert run.summary["nps"]["api_calls"] == {"collections": 2}
    assert harness.contact("ct-test-2") is not None


# Contact.Lifetime_Value__c is Currency(16, 2). 99999999999999.99 has 16 digits,
# which a float cannot hold (it reads 99999999999999.98); 1200 is a JSON integer
# and 0.0000001 a Decimal whose str() is "1E-7".
DECIMALS = "nps_lifetime_value_decimals.singer"
LTV_STREAM = {"nps": {"object": "Contact", "external_id_field": "CleverTap_Id__c",
    "fields": {"CleverTap_Id__c": "identity", "LastName": "name",
               "Lifetime_Value__c": "ltv"}}}  # fmt: skip


def test_collections_body_keeps_every_digit_of_a_decimal(harness: Any) -> None:
    run = harness.run(harness.config(streams=LTV_STREAM), harness.fixture(DECIMALS))
    assert run.error is None
    (sent,) = [r["body"] for r in harness.writes() if "composite" in r["path"]]
    assert '"Lifetime_Value__c":99999999999999.99' in sent
    assert '"Lifetime_Value__c":1E-7' in sent  # a JSON number, the same digits
    values = [
        r["Lifetime_Value__c"]
        for r in json.loads(sent, parse_float=decimal.Decimal)["records"]
    ]
    assert values == [
        decimal.Decimal("99999999999999.99"),
        1200,
        decimal.Decimal("1E-7"),
    ]
    assert type(values[1]) is int


def test_bulk_csv_keeps_every_digit_of_a_decimal_in_plain_notation(
    harness: Any,
) -> None:
    config = harness.config(streams=LTV_STREAM, bulk_threshold=0)
    run = harness.run(config, harness.fixture(DECIMALS))
    assert run.error is None
    (upload,) = [r["body"] for r in harness.writes() if r["path"].endswith("/batches")]
    cells = [row["Lifetime_Value__c"] for row in csv.DictReader(io.StringIO(upload))]
    assert cells == ["99999999999999.99", "1200", "0.0000001"]


def test_apex_body_keeps_every_digit_of_a_decimal(harness: Any) -> None:
    bodies: list[bytes] = []

    def ltv_class(request: Any, context: Any) -> tuple[int, Any]:
        del context
        bodies.append(request.body)
        return 200, {"success": True}

    harness.handle.register_apex("/ct/ltv", ltv_class)
    payload = {"id": "{identity}", "ltv": "{ltv}"}
    streams = {"nps": {"mode": "apex", "apex": {"path": "ct/ltv", "payload": payload}}}
    run = harness.run(harness.config(streams=streams), harness.fixture(DECIMALS))
    assert run.error is None
    assert bodies == [
        b'{"id":"ct-dec-1","ltv":99999999999999.99}',
        b'{"id":"ct-dec-2","ltv":1200}',
        b'{"id":"ct-dec-3","ltv":1E-7}',
    ]
