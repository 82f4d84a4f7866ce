"""Failure paths: session expiry, request limit, locks, bulk failures, quota, 5xx."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest


def _token_calls(handle: Any) -> int:
    return sum(1 for r in handle.requests_log() if "oauth2/token" in r["path"])


def test_invalid_session_once_logs_in_again_and_retries(login_harness: Any) -> None:
    handle = login_harness.handle
    handle.fault("invalid_session", count=1, path="composite")
    config = login_harness.login_config("refresh_token")
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert _token_calls(handle) == 2
    assert login_harness.contact("ct-test-1") is not None
    assert run.states


def test_invalid_session_twice_stops_without_state(login_harness: Any) -> None:
    handle = login_harness.handle
    handle.fault("invalid_session", count=2, path="composite")
    config = login_harness.login_config("refresh_token")
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    assert "INVALID_SESSION_ID again" in str(run.error)
    assert _token_calls(handle) == 2
    assert run.states == []


def test_invalid_session_with_direct_token_says_it_cannot_refresh(harness: Any) -> None:
    harness.handle.fault("invalid_session", count=1, path="composite")
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert "cannot be refreshed" in str(run.error)
    assert run.states == []


def test_request_limit_exceeded_stops_with_clear_message(harness: Any) -> None:
    harness.handle.fault("request_limit", path="composite")
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert "REQUEST_LIMIT_EXCEEDED" in str(run.error)
    assert "rerun once usage has dropped" in str(run.error)
    assert run.states == []
    assert harness.contact("ct-test-1") is None


def test_lock_row_records_are_retried_with_backoff(harness: Any) -> None:
    harness.handle.fault("lock_row", count=1)
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert run.rejects == []
    assert harness.contact("ct-test-1") is not None
    assert harness.contact("ct-test-2") is not None
    assert run.summary["nps"]["api_calls"]["collections"] == 2


def test_lock_row_beyond_retries_becomes_a_reject(harness: Any) -> None:
    harness.handle.fault("lock_row", count=10)
    run = harness.run(
        harness.config(max_retries=1), harness.fixture("nps_upsert_create.singer")
    )
    assert run.error is None
    assert {r["code"] for r in run.rejects} == {"UNABLE_TO_LOCK_ROW"}
    assert run.summary["nps"]["api_calls"]["collections"] == 2


def test_lock_row_in_bulk_is_retried_as_a_new_job(harness: Any) -> None:
    harness.handle.fault("lock_row", count=1)
    run = harness.run(
        harness.config(bulk_threshold=0), harness.fixture("nps_upsert_create.singer")
    )
    assert run.error is None
    assert run.rejects == []
    assert run.summary["nps"]["api_calls"]["bulk2_jobs"] == 2
    assert harness.contact("ct-test-1") is not None


def test_bulk_job_failed_stops_without_state(harness: Any) -> None:
    harness.handle.fault("bulk_job_failed")
    run = harness.run(
        harness.config(bulk_threshold=0), harness.fixture("nps_upsert_create.singer")
    )
    assert "ended Failed" in str(run.error)
    assert run.states == []


def test_slow_bulk_job_is_polled_until_complete(harness: Any) -> None:
    harness.handle.fault("slow_bulk", polls=3)
    run = harness.run(
        harness.config(bulk_threshold=0), harness.fixture("nps_upsert_create.singer")
    )
    assert run.error is None
    polls = [
        r
        for r in harness.handle.requests_log()
        if r["method"] == "GET" and r["path"].rstrip("/").split("/")[-2] == "ingest"
    ]
    assert len(polls) >= 4
    assert harness.contact("ct-test-2") is not None


def _job_patches(handle: Any) -> list[dict[str, Any]]:
    """The PATCH calls on Bulk 2.0 jobs (close or abort), in order."""
    return [
        r
        for r in handle.requests_log()
        if r["method"] == "PATCH" and "/jobs/ingest/" in r["path"]
    ]


def test_bulk_job_beyond_bulk_timeout_is_aborted_then_settled(harness: Any) -> None:
    harness.handle.fault("slow_bulk", polls=1000)
    run = harness.run(
        harness.config(bulk_threshold=0, bulk_timeout=0.05),
        harness.fixture("nps_upsert_create.singer"),
    )
    # close, then abort: Salesforce no longer works on the job after the run
    patches = [json.loads(r["body"]) for r in _job_patches(harness.handle)]
    assert patches == [{"state": "UploadComplete"}, {"state": "Aborted"}]
    assert [j["state"] for j in harness.ingest_jobs()] == ["Aborted"]
    # the emulator had processed both rows when the job was aborted: both settle
    assert run.error is None
    assert run.summary["nps"]["succeeded"] == 2
    assert harness.contact("ct-test-2") is not None
    assert run.states


def test_aborted_late_upsert_job_stops_without_state_for_unprocessed_rows(
    harness: Any,
) -> None:
    harness.handle.fault("slow_bulk", polls=1000)
    harness.handle.fault("bulk_job_failed", processed=1)
    run = harness.run(
        harness.config(bulk_threshold=0, bulk_timeout=0.05),
        harness.fixture("nps_upsert_create.singer"),
    )
    assert "ended Aborted (aborted by the target after bulk_timeout" in str(run.error)
    assert "1 not processed" in str(run.error)
    assert run.states == []
    assert harness.contact("ct-test-1") is not None  # processed before the abort
    assert harness.contact("ct-test-2") is None  # a rerun loads it


def test_aborted_late_insert_job_resends_its_unprocessed_rows_once(
    harness: Any,
) -> None:
    streams = {"nps": {"object": "Contact", "action": "insert", "fields": {
        "LastName": "name", "CleverTap_Id__c": "identity"}}}  # fmt: skip
    harness.handle.fault("slow_bulk", polls=1000)
    harness.handle.fault("bulk_job_failed", processed=1)
    run = harness.run(
        harness.config(streams=streams, bulk_threshold=0, bulk_timeout=0.05),
        harness.fixture("nps_upsert_create.singer"),
    )
    assert run.error is None
    assert run.summary["nps"]["api_calls"]["bulk2_jobs"] == 2
    assert harness.contact("ct-test-1") is not None  # one row each, not two
    assert harness.contact("ct-test-2") is not None
    assert run.states


def test_bulk_job_that_cannot_be_aborted_stops_naming_the_job(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.handle.fault("slow_bulk", polls=1000)
    # the abort and its retries fail
    harness.on_bulk_abort(
        monkeypatch,
        lambda: harness.handle.fault("status", status=503, path="/jobs/ingest/"),
    )

    run = harness.run(
        harness.config(bulk_threshold=0, bulk_timeout=0.05),
        harness.fixture("nps_upsert_create.singer"),
    )
    (job,) = harness.ingest_jobs()
    assert job["state"] != "Aborted"
    assert f"job {job['id']} up in Setup > Bulk Data Load Jobs" in str(run.error)
    assert "aborting it failed" in str(run.error)
    assert run.states == []
    assert run.rejects == []


def test_quota_guard_stops_before_writing(harness: Any) -> None:
    harness.handle.fault("api_usage", used=90, limit=100)
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert "above quota_percent 80" in str(run.error)
    assert harness.writes() == []
    assert run.states == []


def test_quota_guard_allows_a_higher_threshold(harness: Any) -> None:
    harness.handle.fault("api_usage", used=90, limit=100)
    run = harness.run(
        harness.config(quota_percent=95), harness.fixture("nps_upsert_create.singer")
    )
    assert run.error is None
    assert harness.contact("ct-test-1") is not None


def test_server_unavailable_is_retried_for_upsert(harness: Any) -> None:
    harness.handle.fault("status", status=503, count=2, path="composite")
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert harness.contact("ct-test-1") is not None


def test_server_error_is_not_retried_for_insert(harness: Any) -> None:
    streams = {"nps": {"object": "Contact", "action": "insert", "fields": {
        "LastName": "name", "CleverTap_Id__c": "identity"}}}  # fmt: skip
    harness.handle.fault("status", status=500, count=1, path="composite")
    run = harness.run(
        harness.config(streams=streams), harness.fixture("nps_upsert_create.singer")
    )
    assert "HTTP 500" in str(run.error)
    assert run.states == []


def test_reply_lost_after_storing_is_retried_without_duplicates(harness: Any) -> None:
    harness.handle.fault("reset", path="composite", after_processing=True)
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert harness.contact("ct-test-1") is not None  # exactly one row (upsert)
    sent = [r for r in harness.writes() if "composite" in r["path"]]
    assert len(sent) == 2  # the lost reply, then the retry
    assert run.rejects == []
    assert run.summary["nps"]["succeeded"] == 2
    assert run.states


def test_bulk_job_state_unknown_after_the_abort_stops_naming_the_job(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.handle.fault("slow_bulk", polls=1000)
    # after the abort every status read fails
    harness.on_bulk_abort(
        monkeypatch,
        lambda: harness.handle.fault(
            "status", status=500, count=None, path="jobs/ingest", method="GET"
        ),
    )
    run = harness.run(
        harness.config(
            bulk_threshold=0, bulk_timeout=0.05, max_retries=1, retry_backoff_seconds=0
        ),
        harness.fixture("nps_upsert_create.singer"),
    )
    harness.handle.clear_faults()
    (job,) = harness.ingest_jobs()
    assert job["state"] == "Aborted"
    assert "its state after the abort is unknown (bulk status" in str(run.error)
    assert f"job {job['id']} up in Setup > Bulk Data Load Jobs" in str(run.error)
    assert run.states == []
