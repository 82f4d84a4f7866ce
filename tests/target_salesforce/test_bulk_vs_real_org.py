"""Bulk 2.0 and Collections as a real org answers them (issue 13, Bulk items).

UTF-8 result files under a bare `text/csv`, Failed jobs with partial results,
the Bulk size limits, empty string vs null on both APIs, polymorphic lookups.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from target_salesforce import bulk
from target_salesforce.mapping import MappingError
from target_salesforce.payloads import Prepared

NPS_INSERT: dict[str, Any] = {
    "object": "Contact",
    "action": "insert",
    "fields": {
        "CleverTap_Id__c": "identity",
        "LastName": "name",
        "Email": "email",
        "NPS_Score__c": "score",
    },
}


def _contacts(harness: Any, prefix: str) -> Counter[str]:
    return Counter(
        str(r["CleverTap_Id__c"])
        for r in harness.handle.live_records("Contact")
        if str(r.get("CleverTap_Id__c") or "").startswith(prefix)
    )


# --------------------------------------------------------------- 1. UTF-8 results


@pytest.mark.parametrize("bulk_threshold", [2000, 0])
def test_non_ascii_keys_and_values_match_their_bulk_result_rows(
    harness: Any, bulk_threshold: int
) -> None:
    """Result CSVs come as `text/csv` without charset; they are UTF-8 all the same."""
    run = harness.run(
        harness.config(bulk_threshold=bulk_threshold),
        harness.fixture("nps_unicode_keys.singer"),
    )
    assert run.error is None
    assert run.rejects == []
    assert run.states
    assert run.summary["nps"]["created"] == 3
    assert harness.contact("köln-1")["LastName"] == "Müller"
    assert harness.contact("東京-2")["LastName"] == "東京"
    assert harness.contact("emoji-😀-3")["LastName"] == "Smile 😀"
    # an insert rerun of the same rows would have duplicated them on main
    again = harness.run(
        harness.config(bulk_threshold=bulk_threshold),
        harness.fixture("nps_unicode_keys.singer"),
    )
    assert again.error is None
    assert again.summary["nps"]["updated"] == 3


# ------------------------------------------------- 7. Failed job, partial results


def test_failed_upsert_job_settles_processed_rows_then_stops(harness: Any) -> None:
    harness.handle.fault("bulk_job_failed", processed=3, message="InternalError")
    config = harness.config(bulk_threshold=0)
    run = harness.run(config, harness.fixture("nps_six_records.singer"))
    assert run.error is not None
    assert "ended Failed (InternalError)" in str(run.error)
    assert "3 of 6 records settled" in str(run.error)
    assert "3 not processed" in str(run.error)
    assert run.states == []
    assert run.summary["nps"]["succeeded"] == 3
    assert sum(_contacts(harness, "ct-six-").values()) == 3
    rerun = harness.run(config, harness.fixture("nps_six_records.singer"))
    assert rerun.error is None
    assert _contacts(harness, "ct-six-") == {f"ct-six-{i}": 1 for i in range(1, 7)}


def test_failed_insert_job_resends_only_its_unprocessed_rows(harness: Any) -> None:
    """A rerun would insert the stored rows twice: the batch finishes instead."""
    harness.handle.fault("bulk_job_failed", processed=3)
    run = harness.run(
        harness.config(bulk_threshold=0, streams={"nps": NPS_INSERT}),
        harness.fixture("nps_six_records.singer"),
    )
    assert run.error is None
    assert run.states
    assert run.rejects == []
    assert run.summary["nps"]["api_calls"]["bulk2_jobs"] == 2
    assert _contacts(harness, "ct-six-") == {f"ct-six-{i}": 1 for i in range(1, 7)}


def test_insert_rows_a_failed_job_never_processes_are_rejected(harness: Any) -> None:
    harness.handle.fault("bulk_job_failed", processed=2, message="first")
    harness.handle.fault("bulk_job_failed", count=5, message="again")
    run = harness.run(
        harness.config(bulk_threshold=0, max_retries=1, streams={"nps": NPS_INSERT}),
        harness.fixture("nps_six_records.singer"),
    )
    assert run.error is None
    assert run.states
    assert _contacts(harness, "ct-six-") == {"ct-six-1": 1, "ct-six-2": 1}
    assert len(run.rejects) == 4
    assert {r["code"] for r in run.rejects} == {bulk.CODE_BULK_JOB_FAILED}
    assert "ended Failed (again)" in run.rejects[0]["message"]


def test_failed_insert_job_that_stored_nothing_stops_not_loaded(harness: Any) -> None:
    harness.handle.fault("bulk_job_failed", message="nothing done")
    run = harness.run(
        harness.config(bulk_threshold=0, streams={"nps": NPS_INSERT}),
        harness.fixture("nps_six_records.singer"),
    )
    assert "0 of 6 records settled" in str(run.error)
    assert run.states == []
    assert run.rejects == []
    assert not _contacts(harness, "ct-six-")


# ---------------------------------------------------------------- 9. Bulk limits


def test_bulk_refuses_a_field_over_32000_characters_naming_it(harness: Any) -> None:
    mapping = {
        **harness.nps_mapping,
        "fields": {**harness.nps_mapping["fields"], "Last_Feedback__c": "feedback"},
    }
    run = harness.run(
        harness.config(bulk_threshold=0, streams={"nps": mapping}),
        harness.fixture("nps_long_feedback.singer", LONGTEXT="x" * 32_001),
    )
    assert run.error is None
    assert [(r["key"], r["code"], r["fields"]) for r in run.rejects] == [
        ("ct-long-1", bulk.CODE_FIELD_TOO_LONG, ["Last_Feedback__c"])
    ]
    assert "32,000" in run.rejects[0]["message"]
    assert harness.contact("ct-long-1") is None
    assert harness.contact("ct-long-2")["Last_Feedback__c"] == "fine"
    # the job's upload never carried the long value
    uploads = [r for r in harness.writes() if str(r["path"]).endswith("/batches")]
    assert len(uploads) == 1


def test_bulk_uploads_are_split_by_bytes(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "MAX_UPLOAD_BYTES", 120)
    run = harness.run(
        harness.config(bulk_threshold=0), harness.fixture("nps_six_records.singer")
    )
    assert run.error is None
    jobs = run.summary["nps"]["api_calls"]["bulk2_jobs"]
    assert jobs >= 3
    assert _contacts(harness, "ct-six-") == {f"ct-six-{i}": 1 for i in range(1, 7)}


def test_split_uploads_respects_the_cap_and_keeps_every_row() -> None:
    items = [Prepared([i], {"Ext__c": f"k{i}", "Name": "n" * 40}) for i in range(9)]
    chunks = list(bulk.split_uploads(["Ext__c", "Name"], items, 150))
    assert [p for positions, _ in chunks for p in positions] == list(range(9))
    for _, text in chunks:
        assert text.startswith("Ext__c,Name\r\n")
        assert len(text.encode("utf-8")) <= 150
    # a row bigger than the cap travels alone rather than being dropped
    big = [Prepared([0], {"Ext__c": "k", "Name": "é" * 200})]
    assert len(list(bulk.split_uploads(["Ext__c", "Name"], big, 150))) == 1


def test_record_over_400000_characters_is_refused_naming_its_longest_field() -> None:
    columns = [f"F{i}__c" for i in range(13)]
    payload = dict.fromkeys(columns, "y" * 31_000)
    payload["F7__c"] = "y" * 31_999
    problem = bulk.limit_problem(columns, Prepared([0], payload))
    assert problem is not None
    code, message, fields = problem
    assert code == bulk.CODE_RECORD_TOO_LONG
    assert fields == ["F7__c"]
    assert "400,000" in message


# ------------------------------------------------------ 10. empty string vs null


@pytest.mark.parametrize("bulk_threshold", [2000, 0], ids=["collections", "bulk"])
@pytest.mark.parametrize(
    ("null_policy", "email"), [("skip", "rao@example.com"), ("set_null", None)]
)
def test_empty_string_is_null_on_both_apis(
    harness: Any, bulk_threshold: int, null_policy: str, email: str | None
) -> None:
    """`""` follows null_policy: unchanged under skip, cleared under set_null."""
    config = harness.config(bulk_threshold=bulk_threshold, null_policy=null_policy)
    assert (
        harness.run(config, harness.fixture("nps_upsert_create.singer")).error is None
    )
    run = harness.run(config, harness.fixture("nps_empty_email.singer"))
    assert run.error is None
    assert run.rejects == []
    contact = harness.contact("ct-test-1")
    assert contact["Email"] == email
    assert contact["NPS_Score__c"] == 8


# ------------------------------------------------------ 11. polymorphic lookups


def _task_streams(contact_field: str, lead_field: str) -> dict[str, Any]:
    return {
        "tasks_contact": {
            "object": "Task",
            "action": "insert",
            "fields": {"Subject": "subject", contact_field: "who"},
        },
        "tasks_lead": {
            "object": "Task",
            "action": "insert",
            "fields": {"Subject": "subject", lead_field: "who"},
        },
    }


@pytest.mark.parametrize("bulk_threshold", [2000, 0], ids=["collections", "bulk"])
def test_polymorphic_who_is_set_by_a_named_parent_type(
    harness: Any, bulk_threshold: int
) -> None:
    """`Contact:Who.CleverTap_Id__c` by External ID; `Lead:Who.Email` by idLookup."""
    contact = harness.contact("ct-000001")
    lead = next(r for r in harness.handle.live_records("Lead") if r.get("Email"))
    streams = _task_streams("Contact:Who.CleverTap_Id__c", "Lead:Who.Email")
    run = harness.run(
        harness.config(bulk_threshold=bulk_threshold, streams=streams),
        harness.fixture(
            "tasks_polymorphic_who.singer",
            CONTACT_KEY="ct-000001",
            LEAD_EMAIL=lead["Email"],
        ),
    )
    assert run.error is None
    assert run.rejects == []
    tasks = {t["Subject"]: t for t in harness.handle.live_records("Task")}
    assert tasks["Poly contact"]["WhoId"] == contact["Id"]
    assert tasks["Poly lead"]["WhoId"] == lead["Id"]


def test_polymorphic_lookup_without_a_type_is_refused_with_the_syntax(
    harness: Any,
) -> None:
    streams = _task_streams("Who.CleverTap_Id__c", "Lead:Who.Email")
    run = harness.run(
        harness.config(streams=streams),
        harness.fixture(
            "tasks_polymorphic_who.singer", CONTACT_KEY="x", LEAD_EMAIL="y@x.com"
        ),
    )
    assert isinstance(run.error, MappingError)
    assert "Contact:Who.CleverTap_Id__c" in str(run.error)
    subjects = {t["Subject"] for t in harness.handle.live_records("Task")}
    assert not subjects & {"Poly contact", "Poly lead"}
