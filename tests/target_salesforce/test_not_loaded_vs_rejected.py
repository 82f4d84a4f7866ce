"""Transport failures leave records 'not loaded' (stop, no STATE), never rejected.

Only an answer about the records themselves (a per-record error, a lock beyond
its retries) may become a reject; a whole call or Bulk job Salesforce refuses stops
the run. A record that is invalid for its stream's schema is rejected by name and
the run goes on. Rejects keep the record replayable, with over-long values cut and
marked.
"""

from __future__ import annotations

from typing import Any

import pytest
from target_salesforce import bulk
from target_salesforce.client import SalesforceClient
from target_salesforce.journal import InsertJournal
from target_salesforce.preflight import with_defaults
from target_salesforce.rejects import reject_entry
from target_salesforce.target import TargetSalesforce

TRACEBACK = "Traceback (most recent call last)"


def _assert_one_line_stop(result: Any, cause: str) -> None:
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stdout == ""  # no STATE
    assert TRACEBACK not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "target-salesforce stopped" in last
    assert cause.lower() in last.lower(), last


# ----------------------------------------------------------------- HTTP 429


def test_http_429_is_retried_and_every_record_loads(harness: Any) -> None:
    harness.handle.fault("status", status=429, count=3, path="composite")
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert run.rejects == []
    assert harness.contact("ct-test-1") is not None
    assert harness.contact("ct-test-2") is not None
    assert run.states


def test_http_429_is_retried_even_for_insert(harness: Any) -> None:
    streams = {"nps": {"object": "Contact", "action": "insert", "fields": {
        "LastName": "name", "CleverTap_Id__c": "identity"}}}  # fmt: skip
    harness.handle.fault("status", status=429, count=1, path="composite")
    run = harness.run(
        harness.config(streams=streams), harness.fixture("nps_upsert_create.singer")
    )
    assert run.error is None
    assert run.rejects == []
    assert harness.contact("ct-test-1") is not None


def test_http_429_beyond_retries_stops_without_state_or_rejects(harness: Any) -> None:
    harness.handle.fault("status", status=429, count=50, path="composite")
    config = harness.config(max_retries=2)
    run = harness.run(config, harness.fixture("nps_upsert_create.singer"))
    assert "HTTP 429" in str(run.error)
    assert "not loaded" in str(run.error)
    assert run.states == []
    assert run.rejects == []
    assert harness.contact("ct-test-1") is None
    harness.handle.clear_faults()
    rerun = harness.run(config, harness.fixture("nps_upsert_create.singer"))
    assert rerun.error is None
    assert harness.contact("ct-test-1") is not None
    assert harness.contact("ct-test-2") is not None


def test_refused_call_other_than_request_limit_stops_without_rejects(
    harness: Any,
) -> None:
    harness.handle.fault("status", status=403, count=1, path="composite")
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert "HTTP 403" in str(run.error)
    assert run.states == []
    assert run.rejects == []


def test_unexpected_status_stops_without_rejects(harness: Any) -> None:
    harness.handle.fault("status", status=409, count=1, path="composite")
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert "HTTP 409" in str(run.error)
    assert run.states == []
    assert run.rejects == []


def test_bulk_step_failing_after_job_creation_stops_without_rejects(
    harness: Any,
) -> None:
    harness.handle.fault(
        "status", status=404, count=1, path="successfulResults", method="GET"
    )
    run = harness.run(
        harness.config(bulk_threshold=0), harness.fixture("nps_upsert_create.singer")
    )
    assert "outcome of the job's records is unknown" in str(run.error)
    assert run.states == []
    assert run.rejects == []


# Job-level codes of the Bulk API guide's "Errors" page (api_asynch,
# asynch_api_reference_errors.htm): the 24-hour batch allowance used up, a job
# Salesforce will not run, Bulk API off for the org, a user without the permission.
JOB_REFUSALS = ["ExceededQuota", "InvalidJob", "FeatureNotEnabled", "InvalidUser"]


@pytest.mark.parametrize("code", JOB_REFUSALS)
def test_bulk_job_refused_as_a_whole_stops_without_state_or_rejects(
    harness: Any, code: str
) -> None:
    harness.handle.fault(
        "status", status=400, path="jobs/ingest", method="POST", code=code
    )
    run = harness.run(
        harness.config(bulk_threshold=0), harness.fixture("nps_upsert_create.singer")
    )
    assert f"refused a Bulk 2.0 upsert job on Contact with HTTP 400 {code}" in str(
        run.error
    )
    assert "not the records" in str(run.error)
    assert run.states == []
    assert run.rejects == []
    assert harness.contact("ct-test-1") is None


def test_bulk_job_refused_after_an_earlier_job_keeps_that_jobs_results(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one job per record (uploads cut small); the second job is refused
    monkeypatch.setattr(bulk, "MAX_UPLOAD_BYTES", 150)
    jobs = harness.before_bulk_job(
        monkeypatch,
        2,
        lambda: harness.handle.fault(
            "status", status=400, path="jobs/ingest", method="POST",
            code="ExceededQuota",
        ),
    )  # fmt: skip
    run = harness.run(
        harness.config(bulk_threshold=0), harness.fixture("nps_upsert_create.singer")
    )
    assert len(jobs) == 2  # one job per record
    assert "HTTP 400 ExceededQuota" in str(run.error)
    assert run.summary["nps"]["succeeded"] == 1  # the first job's row settled
    assert harness.contact("ct-test-1") is not None
    assert run.rejects == []
    assert run.states == []


def test_bulk_create_503_is_retried_and_every_record_loads(harness: Any) -> None:
    harness.handle.fault(
        "status", status=503, count=1, path="jobs/ingest", method="POST"
    )
    run = harness.run(
        harness.config(bulk_threshold=0), harness.fixture("nps_upsert_create.singer")
    )
    assert run.error is None
    assert run.rejects == []
    assert harness.contact("ct-test-2") is not None


def test_retry_backoff_is_bounded_by_max_retries(harness: Any) -> None:
    config = harness.config(max_retries=2)
    client = SalesforceClient(with_defaults(TargetSalesforce.config_jsonschema, config))
    harness.handle.fault("status", status=503, count=None, path="describe")
    with pytest.raises(RuntimeError, match="after 3 attempts"):
        client.describe("Contact")
    assert client.retries == 2  # one wait before each of the 2 resends
    client.session.close()


# ------------------------------------------------------------ fatal stops


def test_request_limit_ends_with_one_line_and_exit_1(harness: Any) -> None:
    harness.handle.fault("request_limit", path="composite")
    result = harness.run_cli(
        harness.config(), harness.fixture("nps_upsert_create.singer")
    )
    _assert_one_line_stop(result, "REQUEST_LIMIT_EXCEEDED")


def test_bulk_job_failed_ends_with_one_line_and_exit_1(harness: Any) -> None:
    harness.handle.fault("bulk_job_failed", count=1, message="bulk went wrong")
    config = harness.config(bulk_threshold=0)
    result = harness.run_cli(config, harness.fixture("nps_upsert_create.singer"))
    _assert_one_line_stop(result, "ended Failed")


def test_bulk_create_still_503_ends_with_one_line_and_exit_1(harness: Any) -> None:
    harness.handle.fault("status", status=503, count=None, path="jobs/ingest")
    config = harness.config(bulk_threshold=0, max_retries=1)
    result = harness.run_cli(config, harness.fixture("nps_upsert_create.singer"))
    _assert_one_line_stop(result, "HTTP 503")
    assert "after 2 attempts" in result.stderr
    assert not harness.rejects_path.exists()


def test_input_not_json_ends_with_one_line_and_exit_1(harness: Any) -> None:
    result = harness.run_cli(harness.config(), harness.fixture("nps_not_json.singer"))
    _assert_one_line_stop(result, "not valid JSON")


def test_record_before_schema_ends_with_one_line_and_exit_1(harness: Any) -> None:
    result = harness.run_cli(
        harness.config(), harness.fixture("nps_record_before_schema.singer")
    )
    _assert_one_line_stop(result, "schema")


# ------------------------------------------------------ invalid records


def test_wrong_type_becomes_a_reject_naming_stream_key_and_field(
    harness: Any,
) -> None:
    run = harness.run(harness.config(), harness.fixture("nps_wrong_type.singer"))
    assert run.error is None
    assert [(r["stream"], r["key"], r["code"], r["fields"]) for r in run.rejects] == [
        ("nps", "ct-wrong-1", "INVALID_RECORD", ["score"])
    ]
    assert "score" in run.rejects[0]["message"]
    assert run.rejects[0]["record"]["score"] == "high"
    assert harness.contact("ct-wrong-1") is None
    assert harness.contact("ct-good-1") is not None
    summary = run.summary["nps"]
    assert (summary["received"], summary["succeeded"], summary["rejected"]) == (
        2,
        1,
        1,
    )
    assert run.states


def test_invalid_record_with_on_reject_fail_stops_without_state(
    harness: Any,
) -> None:
    run = harness.run(
        harness.config(on_reject="fail"), harness.fixture("nps_wrong_type.singer")
    )
    assert "on_reject is 'fail'" in str(run.error)
    assert run.states == []
    assert harness.contact("ct-good-1") is None


# ------------------------------------------------------------- rejects file


def test_reject_of_a_huge_value_keeps_it_whole_for_replay(harness: Any) -> None:
    text = harness.fixture("nps_long_value.singer", __LONG__="x" * 200_000)
    run = harness.run(harness.config(), text)
    assert run.error is None
    assert len(run.rejects) == 1
    reject = run.rejects[0]
    assert reject["record"]["name"] == "x" * 200_000
    assert "truncated" not in reject


def _nps_reject(record: dict[str, Any]) -> dict[str, Any]:
    return reject_entry(
        stream="nps",
        sobject="Contact",
        action="upsert",
        key="a",
        code="X",
        message="m",
        fields=[],
        record=record,
    )


def test_reject_keeps_long_values_inside_nested_values() -> None:
    record = {"identity": "a", "extra": {"notes": ["ok", "y" * 50_000]}}
    entry = _nps_reject(record)
    assert entry["record"] == record
    assert "truncated" not in entry


def test_bulk_close_reply_lost_goes_on_to_poll_the_closed_job(harness: Any) -> None:
    harness.handle.fault(
        "reset", count=1, after_processing=True, path="jobs/ingest", method="PATCH"
    )
    run = harness.run(
        harness.config(bulk_threshold=0), harness.fixture("nps_upsert_create.singer")
    )
    assert run.error is None
    assert run.rejects == []
    assert harness.contact("ct-test-1") is not None
    assert run.states


@pytest.mark.parametrize("action", ["insert", "upsert"])
def test_bulk_upload_reply_lost_goes_to_a_new_job_not_twice_to_the_same(
    harness: Any, action: str
) -> None:
    # the CSV upload is stored but its reply is lost: the job (still Open, never
    # processed) is aborted and the rows go in a new job; a second upload to the
    # same job would be refused ("Found multiple contents for job") and stop the run
    harness.handle.fault(
        "reset", count=1, after_processing=True, path="batches", method="PUT"
    )
    extra: dict[str, Any] = {}
    if action == "insert":
        fields = {"LastName": "name", "Description": "identity"}
        extra["streams"] = {
            "nps": {"object": "Contact", "action": "insert", "fields": fields}
        }
    config = harness.config(bulk_threshold=0, retry_backoff_seconds=0, **extra)
    run = harness.run(config, harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert run.rejects == []
    assert [j["state"] for j in harness.ingest_jobs()] == ["Aborted", "JobComplete"]
    uploads = [
        r["path"]
        for r in harness.handle.requests_log()
        if r["path"].endswith("/batches")
    ]
    assert len(set(uploads)) == len(uploads) == 2  # one upload per job
    key = "Description" if action == "insert" else "CleverTap_Id__c"
    stored = [
        c[key]
        for c in harness.handle.live_records("Contact")
        if c.get(key) in {"ct-test-1", "ct-test-2"}
    ]
    assert sorted(stored) == ["ct-test-1", "ct-test-2"]  # each once
    assert run.states
    assert run.summary["nps"]["api_calls"]["bulk2_jobs"] == 2  # both jobs counted
    if action == "insert":  # the aborted job stored nothing: not left in the journal
        journal = InsertJournal(harness.journal_path)
        assert journal.count_jobs() == 0
        journal.close()
        # so the next run does not stop on it
        assert (
            harness.run(config, harness.fixture("nps_upsert_create.singer")).error
            is None
        )
