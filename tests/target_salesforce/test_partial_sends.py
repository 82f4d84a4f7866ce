"""A batch whose sending stops part-way settles what Salesforce already answered.

A batch of more than `collection_size` records goes out in several Collections
calls (or Bulk jobs), and a resend round follows for UNABLE_TO_LOCK_ROW. When a
later call fails as a whole (a 503 after the retries, the quota guard, a refused
call), the records of the earlier calls were written or refused all the same:
they are counted and their refusals go to the rejects file before the run stops
without STATE. Steps on a Bulk job already running (its status polls and result
files) are not held back by the quota guard: stopping there would leave rows
written with no outcome at all.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from target_salesforce import bulk
from target_salesforce.bulk_client import BulkClient
from target_salesforce.client import SalesforceClient

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

    from tests.target_salesforce.conftest import Harness

INSERT = {
    "nps": {"object": "Contact", "action": "insert", "fields": {"LastName": "name"}}
}


def _singer(count: int, *, blank_every: int = 0) -> str:
    """`count` records of stream nps; every `blank_every`-th has no name."""
    schema = {
        "type": "object",
        "properties": {"identity": {"type": "string"}, "name": {"type": "string"}},
    }
    lines = [{"type": "SCHEMA", "stream": "nps", "schema": schema,
              "key_properties": ["identity"]}]  # fmt: skip
    for i in range(count):
        blank = blank_every and i % blank_every == 0
        record = {"identity": f"id-{i}", "name": "" if blank else f"NPS-{i}"}
        lines.append({"type": "RECORD", "stream": "nps", "record": record})
    lines.append({"type": "STATE", "value": {"bookmark": count}})
    return "".join(json.dumps(line) + "\n" for line in lines)


def _stored(harness: Harness) -> list[dict[str, Any]]:
    return [
        r
        for r in harness.handle.live_records("Contact")
        if str(r.get("LastName") or "").startswith("NPS-")
    ]


def _on_collections_calls(
    monkeypatch: pytest.MonkeyPatch, arms: dict[int, Callable[[], None]]
) -> list[str]:
    """Call `arms[n]()` just before the n-th Collections call; the paths called."""
    original = SalesforceClient.collections
    calls: list[str] = []

    def collections(
        self: SalesforceClient, method: str, path: str, kwargs: Any, **kw: Any
    ) -> Any:
        calls.append(path)
        if len(calls) in arms:
            arms[len(calls)]()
        return original(self, method, path, kwargs, **kw)

    monkeypatch.setattr(SalesforceClient, "collections", collections)
    return calls


def test_records_of_calls_before_a_failed_collections_call_are_settled(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 300 records: two calls of 200 and 100; the second answers 503 (an insert
    # is not resent after a 5xx: its outcome is unknown)
    calls = _on_collections_calls(monkeypatch, {2: lambda: _fail_next(harness)})
    # every 50th record has an empty LastName, which Salesforce refuses
    run = harness.run(
        harness.config(streams=INSERT, bulk_threshold=100_000),
        _singer(300, blank_every=50),
    )
    assert len(calls) == 2
    assert run.error is not None
    assert "503" in str(run.error)
    assert run.states == []  # no STATE past the call of unknown outcome
    summary = run.summary["nps"]
    # the first call's 200 records: 196 stored and counted, 4 refused
    assert summary["succeeded"] == 196
    assert summary["created"] == 196
    assert len(_stored(harness)) == 196
    assert [r["record"]["identity"] for r in run.rejects] == [
        "id-0",
        "id-50",
        "id-100",
        "id-150",
    ]
    assert {r["code"] for r in run.rejects} == {"REQUIRED_FIELD_MISSING"}


def test_a_lock_retry_round_that_fails_keeps_the_first_rounds_results(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first call locks one record; its resend fails as a whole
    arms = {
        1: lambda: harness.handle.fault("lock_row", count=1),
        2: lambda: _fail_next(harness),
    }
    calls = _on_collections_calls(monkeypatch, arms)
    run = harness.run(
        harness.config(streams=INSERT, bulk_threshold=100_000, retry_backoff_seconds=0),
        _singer(5),
    )
    assert len(calls) == 2
    assert run.error is not None
    assert run.states == []
    summary = run.summary["nps"]
    assert summary["succeeded"] == 4  # written in the first round, counted
    assert summary["created"] == 4
    assert len(_stored(harness)) == 4


def _fail_next(harness: Harness) -> None:
    harness.handle.fault("status", status=503, count=1, path="composite")


def test_rows_of_a_bulk_job_before_a_failed_job_are_settled(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uploads of at most 60 bytes: 20 records make several jobs; every job
    # creation after the first answers 503 until the retries are used up
    monkeypatch.setattr(bulk, "MAX_UPLOAD_BYTES", 60)
    jobs = harness.before_bulk_job(
        monkeypatch,
        2,
        lambda: harness.handle.fault(
            "status", status=503, count=None, path="jobs/ingest", method="POST"
        ),
    )
    streams = {"nps": {**INSERT["nps"], "bulk_threshold": 0}}
    run = harness.run(
        harness.config(streams=streams, retry_backoff_seconds=0, max_retries=1),
        _singer(20),
    )
    assert len(jobs) == 2
    assert run.error is not None
    assert "503" in str(run.error)
    assert run.states == []
    stored = len(_stored(harness))
    assert 0 < stored < 20
    summary = run.summary["nps"]
    assert summary["succeeded"] == stored  # counted, not lost with the run
    assert summary["created"] == stored


def test_the_quota_guard_lets_a_running_bulk_job_finish_and_settle(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # usage crosses quota_percent once the job is closed: its polls and result
    # files still go and its rows settle (a next write would stop the run)
    harness.handle.fault("slow_bulk", count=1, polls=3)
    original = BulkClient._raw

    def raw(self: BulkClient, sf: Any, method: str, url: str, **kw: Any) -> Any:
        if method == "PATCH":  # the close: usage is 95% from here on
            _used, limit = harness.handle.api_usage()
            harness.handle.fault("api_usage", used=int(limit * 0.95))
        return original(self, sf, method, url, **kw)

    monkeypatch.setattr(BulkClient, "_raw", raw)
    streams = {"nps": {**INSERT["nps"], "bulk_threshold": 0}}
    run = harness.run(harness.config(streams=streams), _singer(20))
    assert run.error is None  # nothing was left to write after the job
    assert len(_stored(harness)) == 20
    assert run.summary["nps"]["succeeded"] == 20
    assert run.states == [{"bookmark": 20}]
