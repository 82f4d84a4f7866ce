"""Bulk 2.0 jobs in flight while the target reads on (`bulk_jobs_in_flight`).

Every job is slowed by the emulator's `slow_bulk` fault (it stays InProgress for
some polls), so a job still runs while the target reads the next window. The
emulator's request log tells, per job, when its CSV was uploaded and when its
results were first asked for.
"""

from __future__ import annotations

import csv
import io
import json
import signal
from typing import TYPE_CHECKING, Any

import pytest
from singer_sdk.target_base import Target
from target_salesforce.inflight import InFlight, Scope
from target_salesforce.sinks import SalesforceSink
from target_salesforce.target import TargetSalesforce

if TYPE_CHECKING:
    from pathlib import Path

WINDOWS = "nps_bulk_windows.singer"  # 3 windows of 4 records, a STATE after each
SAME_KEY = "nps_bulk_same_key.singer"  # window 2 repeats ct-key-1 with later values
SLOW_POLLS = 20


def _config(harness: Any, in_flight: int, **extra: Any) -> dict[str, Any]:
    """Every batch through Bulk, windows of 4 records."""
    config: dict[str, Any] = harness.config(
        bulk_threshold=0,
        batch_size_rows=4,
        bulk_jobs_in_flight=in_flight,
        bulk_poll_interval=0.02,
        **extra,
    )
    return config


def _slow_jobs_with_summary(
    harness: Any, in_flight: int, **extra: Any
) -> tuple[dict[str, Any], Path]:
    """Three slowed jobs (InProgress for a while) and a summary file: config, path."""
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=3)
    summary_path = harness.tmp_path / "summary.json"
    config = _config(harness, in_flight, summary_path=str(summary_path), **extra)
    return config, summary_path


def _jobs(handle: Any) -> list[dict[str, Any]]:
    """Per Bulk job, by upload time: keys sent, upload and first result times."""
    jobs: dict[str, dict[str, Any]] = {}
    for entry in handle.requests_log():
        parts = str(entry["path"]).rstrip("/").split("/")
        if "ingest" not in parts or parts[-1] == "ingest":
            continue
        job = jobs.setdefault(parts[parts.index("ingest") + 1], {})
        if entry["method"] == "PUT":
            job["upload"] = entry["time"]
            rows = csv.DictReader(io.StringIO(entry["body"]))
            job["keys"] = [row["CleverTap_Id__c"] for row in rows]
        elif parts[-1] == "successfulResults":
            job["results"] = entry["time"]
    return sorted(jobs.values(), key=lambda job: job["upload"])


@pytest.mark.parametrize(("in_flight", "overlapping"), [(3, 2), (1, 0)])
def test_bulk_jobs_run_while_the_target_reads_the_next_windows(
    harness: Any, in_flight: int, overlapping: int
) -> None:
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=3)
    run = harness.run(_config(harness, in_flight), harness.fixture(WINDOWS))
    assert run.error is None
    jobs = _jobs(harness.handle)
    assert [len(job["keys"]) for job in jobs] == [4, 4, 4]
    # the later windows were read, mapped and uploaded before the first job ended
    # (with 1 job in flight, each job waits for the one before: today's order)
    early = [job for job in jobs[1:] if job["upload"] < jobs[0]["results"]]
    assert len(early) == overlapping
    summary = run.summary["nps"]
    assert (summary["succeeded"], summary["api_calls"]["bulk2_jobs"]) == (12, 3)
    assert run.states == [{"bookmarks": {"nps": {"n": 12}}}]


def test_a_later_window_with_a_key_still_in_flight_waits_and_lands_last(
    harness: Any,
) -> None:
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=3)
    run = harness.run(_config(harness, 3), harness.fixture(SAME_KEY))
    assert run.error is None
    jobs = _jobs(harness.handle)
    # (the window with other keys may even be uploaded before the first one)
    first, repeat = [job for job in jobs if "ct-key-1" in job["keys"]]
    other = next(job for job in jobs if "ct-key-8" in job["keys"])
    assert "ct-key-2" in first["keys"]
    # the window sharing ct-key-1 starts only after the first job is done; the
    # window with other keys does not wait
    assert repeat["upload"] > first["results"]
    assert other["upload"] < first["results"]
    contact = harness.contact("ct-key-1")
    assert contact is not None
    assert (contact["LastName"], contact["NPS_Score__c"]) == ("Later 1", 9)
    assert run.summary["nps"]["succeeded"] == 12


def test_a_batch_waiting_for_an_earlier_one_sends_nothing_once_the_run_stops(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # window 2 repeats ct-key-1, so it waits for window 1's (slow) job; the next
    # line is not JSON: the run stops, and window 2 must not start its job then
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=1)
    run = harness.run(
        _config(harness, 3), harness.fixture("nps_bulk_same_key_then_stop.singer")
    )
    assert "not valid JSON" in str(run.error)
    assert run.states == []
    assert [sorted(job["keys"]) for job in _jobs(harness.handle)] == [
        ["ct-key-1", "ct-key-2", "ct-key-3", "ct-key-4"]
    ]
    contact = harness.contact("ct-key-1")
    assert contact is not None
    assert (contact["LastName"], contact["NPS_Score__c"]) == ("First 1", 1)
    assert harness.contact("ct-key-5") is None
    assert run.summary["nps"]["succeeded"] == 4
    assert "not sent: the run stopped while this Bulk batch waited" in caplog.text


def test_state_is_written_only_after_every_earlier_bulk_job_is_settled(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full drain mid-run (as after the SDK's max record age) writes STATE."""
    written: list[tuple[int, int]] = []
    write_state = Target._write_state_message
    process_state = Target._process_state_message

    def recording(self: TargetSalesforce, state: dict[str, Any]) -> None:
        settled = sum(s.succeeded + s.rejected for s in self.run.summaries.values())
        written.append((state["bookmarks"]["nps"]["n"], settled))
        write_state(self, state)

    def drain_at_state(self: TargetSalesforce, message: dict[str, Any]) -> None:
        process_state(self, message)
        self.drain_all()

    monkeypatch.setattr(Target, "_write_state_message", recording)
    monkeypatch.setattr(TargetSalesforce, "_process_state_message", drain_at_state)
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=3)
    run = harness.run(_config(harness, 3), harness.fixture(WINDOWS))
    assert run.error is None
    assert [n for n, _ in written] == [4, 8, 12, 12]
    assert all(settled >= n for n, settled in written), written


def test_failed_job_among_jobs_in_flight_settles_the_others_and_writes_no_state(
    harness: Any,
) -> None:
    # every job is slow, so all three are out when the Failed one is read
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=3)
    harness.handle.fault("bulk_job_failed", processed=2)
    run = harness.run(_config(harness, 3), harness.fixture(WINDOWS))
    assert "ended Failed" in str(run.error)
    assert run.states == []
    assert run.rejects == []
    # 4 + 4 rows of the other jobs and the 2 the Failed job processed; its 2
    # unprocessed rows are not loaded (a rerun sends them)
    assert run.summary["nps"]["succeeded"] == 10


def test_rows_overlap_only_on_the_same_object_and_key() -> None:
    upsert = Scope("Contact", "CleverTap_Id__c", frozenset({"a", "b"}))
    assert upsert.overlaps(Scope("Contact", "CleverTap_Id__c", frozenset({"b"})))
    assert not upsert.overlaps(Scope("Contact", "CleverTap_Id__c", frozenset({"c"})))
    assert not upsert.overlaps(Scope("Lead", "CleverTap_Id__c", frozenset({"a"})))
    # another key field may name the same rows: treated as overlapping
    assert upsert.overlaps(Scope("Contact", "Id", frozenset({"003000000000001"})))
    # an insert names no existing row
    assert not upsert.overlaps(Scope("Contact", None, frozenset()))


def test_reject_ratio_sees_the_whole_bulk_window_not_its_invalid_records_alone(
    harness: Any,
) -> None:
    # 1 of 4 records fails schema validation: 0.25 of the window, under 0.3
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=1)
    config = _config(harness, 3, max_reject_ratio=0.3)
    run = harness.run(config, harness.fixture("nps_bulk_one_invalid.singer"))
    assert run.error is None
    assert [r["code"] for r in run.rejects] == ["INVALID_RECORD"]
    assert run.summary["nps"]["succeeded"] == 3
    assert run.states == [{"bookmarks": {"nps": {"n": 4}}}]


def test_daily_limit_while_jobs_are_in_flight_stops_without_state(
    harness: Any,
) -> None:
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=3)
    # the daily allocation runs out when the first job's results are fetched
    harness.handle.fault("request_limit", count=1, path="successfulResults")
    run = harness.run(_config(harness, 3), harness.fixture(WINDOWS))
    assert "REQUEST_LIMIT_EXCEEDED" in str(run.error)
    assert run.states == []
    assert run.rejects == []
    # the other two jobs were waited for and settled; the 4 rows of the job
    # whose results were refused are not loaded (a rerun sends them)
    assert run.summary["nps"]["succeeded"] == 8


# 3 windows of 4 records, one refused by Salesforce in each (NPS 11 breaks the
# org's validation rule), then the line `__STOP__` (not JSON unless replaced)
REFUSED_THEN_STOP = "nps_bulk_refused_then_stop.singer"
REFUSED_KEYS = ["ct-ref-02", "ct-ref-06", "ct-ref-10"]
ORDERS_SCHEMA = (
    '{"type": "SCHEMA", "stream": "orders", "schema": {"type": "object", '
    '"properties": {"id": {"type": "integer"}}}, "key_properties": ["id"]}'
)


def _assert_every_window_settled(harness: Any, run: Any, summary_path: Any) -> None:
    """Every window's refused rows are in the rejects file; the summary counts all."""
    assert run.states == []
    assert [r["key"] for r in run.rejects] == REFUSED_KEYS
    for reject in run.rejects:
        assert (reject["stream"], reject["object"], reject["code"]) == (
            "nps",
            "Contact",
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        )
        assert reject["fields"] == ["NPS_Score__c"]
        assert reject["record"]["score"] == 11
    assert harness.contact("ct-ref-12") is not None
    written = json.loads(summary_path.read_text(encoding="utf-8"))
    (nps,) = written["streams"]
    assert (nps["received"], nps["succeeded"], nps["rejected"]) == (12, 9, 3)
    assert nps["api_calls"]["bulk2_jobs"] == 3
    assert run.summary["nps"] == nps


@pytest.mark.parametrize(
    ("stop_line", "extra", "cause"),
    [
        ("__STOP__", {}, "not valid JSON"),
        ('{"type": "RECORD", "stream": "orders", "record": {"id": 1}}', {}, "schema"),
        (ORDERS_SCHEMA, {"unmapped_streams": "fail"}, "no mapping"),
    ],
    ids=["bad-json-line", "record-before-schema", "unmapped-stream-fail"],
)
def test_stopping_error_in_the_reading_thread_settles_the_jobs_in_flight_first(
    harness: Any, stop_line: str, extra: dict[str, Any], cause: str
) -> None:
    # every job stays InProgress for a while: two are still out at the stop line
    config, summary_path = _slow_jobs_with_summary(harness, 3, **extra)
    text = harness.fixture(REFUSED_THEN_STOP, __STOP__=stop_line)
    run = harness.run(config, text)
    assert cause.lower() in str(run.error).lower()
    _assert_every_window_settled(harness, run, summary_path)


def test_bad_json_line_with_jobs_in_flight_still_ends_with_its_own_one_line(
    harness: Any,
) -> None:
    config, summary_path = _slow_jobs_with_summary(harness, 3)
    result = harness.run_cli(config, harness.fixture(REFUSED_THEN_STOP))
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stdout == ""  # no STATE
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "target-salesforce stopped" in last
    assert "not valid JSON" in last
    assert "Run summary" in result.stderr
    rejects = harness.rejects_path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["key"] for line in rejects] == REFUSED_KEYS
    nps = json.loads(summary_path.read_text(encoding="utf-8"))["streams"][0]
    assert (nps["succeeded"], nps["rejected"]) == (9, 3)


def test_on_reject_fail_records_the_later_jobs_already_sent(harness: Any) -> None:
    """Window 1's reject fails the run once windows 2 and 3 are already sent.

    Their jobs ran: their rejects are written and their accepted rows counted
    (summary log and file) before the run stops, without STATE.
    """
    config, summary_path = _slow_jobs_with_summary(harness, 3, on_reject="fail")
    run = harness.run(config, harness.fixture(REFUSED_THEN_STOP))
    assert "on_reject is 'fail'" in str(run.error)
    _assert_every_window_settled(harness, run, summary_path)


def test_on_reject_fail_on_an_invalid_record_writes_the_jobs_in_flight_rejects_first(
    harness: Any,
) -> None:
    # 5 in flight: the three jobs are still out when a record fails its schema;
    # their refused rows come before it in the input, so first in the rejects file
    config, summary_path = _slow_jobs_with_summary(harness, 5, on_reject="fail")
    invalid = (
        '{"type": "RECORD", "stream": "nps", "record": {"identity": "ct-ref-13", '
        '"name": "Invalid score", "score": "high"}}'
    )
    run = harness.run(config, harness.fixture(REFUSED_THEN_STOP, __STOP__=invalid))
    assert "on_reject is 'fail'" in str(run.error)
    assert run.states == []
    assert [r["key"] for r in run.rejects] == [*REFUSED_KEYS, "ct-ref-13"]
    assert run.rejects[-1]["code"] == "INVALID_RECORD"
    nps = json.loads(summary_path.read_text(encoding="utf-8"))["streams"][0]
    assert (nps["received"], nps["succeeded"], nps["rejected"]) == (13, 9, 4)


def test_a_job_failing_while_the_run_stops_is_logged_and_the_first_error_stands(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # 5 in flight: all three windows are out at the bad line; one job ends
    # Failed after its first 2 rows (one accepted, one refused)
    config, summary_path = _slow_jobs_with_summary(harness, 5)
    harness.handle.fault("bulk_job_failed", processed=2)
    run = harness.run(config, harness.fixture(REFUSED_THEN_STOP))
    assert "not valid JSON" in str(run.error)
    assert run.states == []
    assert "A Bulk batch in flight was not settled" in caplog.text
    assert "ended Failed" in caplog.text
    # every refused row was processed (the second of each window); the Failed
    # job's last 2 rows are not loaded, so a rerun sends them
    assert [r["key"] for r in run.rejects] == REFUSED_KEYS
    written = json.loads(summary_path.read_text(encoding="utf-8"))
    assert written["stopped"] is True
    (nps,) = written["streams"]
    assert (nps["received"], nps["succeeded"], nps["rejected"]) == (12, 7, 3)


def test_a_bad_input_line_while_a_job_is_in_flight_settles_it_first(
    harness: Any,
) -> None:
    # the window's invalid record is rejected when its Bulk job settles; the
    # next line is not JSON while the job still runs: the run stops, and the
    # job is settled first (reject written, its rows counted), as for any error
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=1)
    config = _config(harness, 3)
    run = harness.run(
        config, harness.fixture("nps_bulk_one_invalid_then_not_json.singer")
    )
    assert "not valid JSON" in str(run.error)
    assert run.states == []
    assert [r["code"] for r in run.rejects] == ["INVALID_RECORD"]
    assert run.summary["nps"]["succeeded"] == 3


@pytest.mark.usefixtures("signal_handlers")
def test_sigterm_while_waiting_for_a_job_writes_no_state_before_it_settled(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's handler drains every sink and writes STATE inside the signal
    # handler, in the middle of what the reading thread was doing: most often
    # waiting for the oldest job, already taken off the batches in flight.
    written: list[bool] = []
    waited: list[bool] = []  # the interrupted batch settled
    write_state = Target._write_state_message
    settle_oldest = InFlight._settle_oldest

    def recording(self: TargetSalesforce, state: dict[str, Any]) -> None:
        written.append(bool(waited))
        write_state(self, state)

    def signal_while_waiting(self: InFlight) -> None:
        batch = self._batches[0]
        if not waited and not written and not batch.future.done():
            settle = batch.settle

            def interrupted(future: Any) -> None:
                signal.raise_signal(signal.SIGTERM)  # lands while it waits
                settle(future)
                waited.append(True)

            batch.settle = interrupted
        settle_oldest(self)

    monkeypatch.setattr(Target, "_write_state_message", recording)
    monkeypatch.setattr(InFlight, "_settle_oldest", signal_while_waiting)
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=3)
    run = harness.run(_config(harness, 3), harness.fixture(WINDOWS))
    assert run.error is None
    assert waited
    assert written, "what was read settles and STATE is written"
    assert all(written), "STATE written before the interrupted batch settled"


@pytest.mark.usefixtures("signal_handlers")
def test_a_first_sigterm_ends_the_input_there_and_settles_what_was_read(
    harness: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # SIGTERM while record 6 is handled: the input ends after it (records 7-12
    # are not read); window 1 and records 5-6 are loaded, the last STATE read
    # (n=4) is written once they settled, and the run ends as at end of input
    process = SalesforceSink.process_record

    def signalled(self: Any, record: dict[str, Any], context: Any) -> None:
        process(self, record, context)
        if record["identity"] == "ct-win-06":
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(SalesforceSink, "process_record", signalled)
    harness.handle.fault("slow_bulk", polls=SLOW_POLLS, count=3)
    run = harness.run(_config(harness, 3), harness.fixture(WINDOWS))
    assert run.error is None
    assert run.states[-1] == {"bookmarks": {"nps": {"n": 4}}}
    loaded = [
        f"ct-win-{n:02d}" for n in range(1, 13) if harness.contact(f"ct-win-{n:02d}")
    ]
    assert loaded == [f"ct-win-{n:02d}" for n in range(1, 7)]
    assert run.summary["nps"]["succeeded"] == 6
    assert "the input ends after the message being handled" in caplog.text


@pytest.mark.usefixtures("signal_handlers")
def test_a_second_signal_stops_at_once_without_state(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = SalesforceSink.process_record

    def twice(self: Any, record: dict[str, Any], context: Any) -> None:
        process(self, record, context)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C, then Ctrl-C again
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(SalesforceSink, "process_record", twice)
    with pytest.raises(SystemExit) as stopped:
        harness.run(_config(harness, 3), harness.fixture(WINDOWS))
    assert stopped.value.code == 128 + signal.SIGINT
