"""The upload pipeline: windows upload while the next is built, in a safe order."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import singer_sdk.target_base
from singer_sdk.singerlib.exceptions import InvalidInputLine
from target_clevertap.client import CleverTapClient, CleverTapError
from target_clevertap.payload_types import UploadItem
from target_clevertap.pipeline import UploadPipeline, WindowCancelledError
from target_clevertap.sinks import LIVE_WINDOW_CALLS, CleverTapSink
from target_clevertap.target import TargetCleverTap

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from target_clevertap.client import UploadResult

    from tests.target_clevertap.conftest import Run

STAGE_S = 0.15  # each fake upload step takes this long


class _FakeDeletes:
    def __init__(self, log: _Log) -> None:
        self.log = log

    def send(self, entries: Sequence[Any], _deletes: list[tuple[int, str]]) -> None:
        self.log.step(entries, "deletes")


class _FakeEvents:
    def __init__(self, log: _Log) -> None:
        self.log = log

    def upload(self, entries: Sequence[Any], events: Sequence[Any]) -> None:
        if events:
            self.log.step(entries, "events")


class _Log:
    """A fake upload dispatcher: every step sleeps and notes when it ran."""

    def __init__(self, fail: str | None = None) -> None:
        self.spans: dict[tuple[str, str], tuple[float, float]] = {}
        self.lock = threading.Lock()
        self.fail = fail
        self.deletes = _FakeDeletes(self)
        self.events = _FakeEvents(self)

    def step(self, entries: Sequence[Any], kind: str) -> None:
        start = time.monotonic()
        time.sleep(STAGE_S)
        with self.lock:
            self.spans[entries[0], kind] = (start, time.monotonic())
        if self.fail == f"{entries[0]}:{kind}":
            msg = f"{kind} of {entries[0]} failed"
            raise CleverTapError(msg)

    def upload_upserts(self, entries: Sequence[Any], profiles: Sequence[Any]) -> None:
        if profiles:  # like the real one: nothing to send, no request
            self.step(entries, "profiles")


def _pipeline(log: _Log, limit: int = 2) -> UploadPipeline:
    return UploadPipeline(log, limit)  # type: ignore[arg-type]  # a duck-typed fake


def _submit(
    pipe: UploadPipeline,
    name: str,
    done: list[str],
    *,
    profiles: str = "",
    events: str = "",
    deletes: str = "",
    size: int = 1,
) -> None:
    """Queue a window of `size` records; each letter is a person (and event key)."""
    pipe.submit(
        [name] * size,  # type: ignore[list-item]  # the fake only names the window
        [(0, UploadItem("profile", {"identity": p})) for p in profiles],
        [(0, p) for p in deletes],
        [(0, UploadItem("event", {"identity": p}, event_key=p)) for p in events],
        lambda: done.append(name),
    )


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_next_windows_profiles_upload_while_earlier_events_are_in_flight() -> None:
    log, done = _Log(), list[str]()
    pipe = _pipeline(log)
    _submit(pipe, "w1", done, profiles="a", events="a")
    _submit(pipe, "w2", done, profiles="a")  # waits for w1's profiles only
    pipe.drain()
    assert log.spans["w1", "profiles"][1] <= log.spans["w2", "profiles"][0]
    assert _overlap(log.spans["w2", "profiles"], log.spans["w1", "events"])
    assert sorted(done) == ["w1", "w2"]
    pipe.close()


def test_events_wait_for_earlier_profiles_of_their_people_and_earlier_same_keys() -> (
    None
):
    log, done = _Log(), list[str]()
    pipe = _pipeline(log, limit=4)
    _submit(pipe, "w1", done, profiles="a")
    _submit(pipe, "w2", done, profiles="b")
    _submit(pipe, "w3", done, profiles="c", events="ab")
    _submit(pipe, "w4", done, events="a")
    pipe.drain()
    w3_events = log.spans["w3", "events"][0]
    assert log.spans["w1", "profiles"][1] <= w3_events
    assert log.spans["w2", "profiles"][1] <= w3_events
    assert log.spans["w3", "profiles"][1] <= w3_events
    # the same event key: the ledger sees the earlier send settled first
    assert log.spans["w3", "events"][1] <= log.spans["w4", "events"][0]
    # profiles of different people go together
    assert _overlap(log.spans["w1", "profiles"], log.spans["w2", "profiles"])
    pipe.close()


def test_profiles_and_deletes_of_a_person_keep_their_order_across_windows() -> None:
    log, done = _Log(), list[str]()
    pipe = _pipeline(log, limit=3)
    _submit(pipe, "w1", done, profiles="x", events="x")
    _submit(pipe, "w2", done, deletes="x")
    _submit(pipe, "w3", done, profiles="x")
    pipe.drain()
    assert log.spans["w1", "profiles"][1] <= log.spans["w2", "deletes"][0]
    assert log.spans["w1", "events"][1] <= log.spans["w2", "deletes"][0]
    assert log.spans["w2", "deletes"][1] <= log.spans["w3", "profiles"][0]
    pipe.close()


def test_submit_waits_while_the_pipeline_holds_its_limit_of_windows() -> None:
    log, done = _Log(), list[str]()
    pipe = _pipeline(log, limit=2)
    _submit(pipe, "w1", done, profiles="a")
    _submit(pipe, "w2", done, profiles="b")
    assert pipe.in_flight == 2
    _submit(pipe, "w3", done, profiles="c")  # waits until w1 settled
    assert "w1" in done
    assert pipe.in_flight <= 2
    pipe.drain()
    assert pipe.in_flight == 0
    pipe.close()


def test_submit_waits_while_the_records_in_flight_would_pass_the_budget() -> None:
    log, done = _Log(), list[str]()
    pipe = UploadPipeline(log, 8, max_records=3)  # type: ignore[arg-type]  # a duck-typed fake
    _submit(pipe, "w1", done, profiles="a", size=2)
    _submit(pipe, "w2", done, profiles="b", size=2)  # 2 + 2 > 3: waits for w1
    assert done == ["w1"]
    _submit(pipe, "w3", done, profiles="c", size=5)  # larger than the budget: alone
    assert done == ["w1", "w2"]
    assert pipe.in_flight == 1
    pipe.drain()
    assert log.spans["w1", "profiles"][1] <= log.spans["w2", "profiles"][0]
    assert log.spans["w2", "profiles"][1] <= log.spans["w3", "profiles"][0]
    pipe.close()


def test_a_settled_window_frees_its_room_at_the_next_submit_without_waiting() -> None:
    log, done = _Log(), list[str]()
    pipe = _pipeline(log, limit=2)
    _submit(pipe, "w1", done, profiles="a")
    time.sleep(3 * STAGE_S)  # w1 settled meanwhile
    assert done == ["w1"]
    _submit(pipe, "w2", done, profiles="b")
    assert pipe.in_flight == 1  # w1 collected, w2 in flight
    pipe.drain()
    pipe.close()


def test_after_a_failed_window_later_windows_send_nothing_and_drain_raises() -> None:
    log, done = _Log(fail="w1:profiles"), list[str]()
    pipe = _pipeline(log, limit=3)
    _submit(pipe, "w1", done, profiles="a", events="a")
    _submit(pipe, "w2", done, profiles="a")
    _submit(pipe, "w3", done, events="a")
    with pytest.raises(CleverTapError, match="profiles of w1 failed") as info:
        pipe.drain()
    assert not isinstance(info.value, WindowCancelledError)
    pipe.close()
    assert ("w1", "events") not in log.spans
    assert not {key for key in log.spans if key[0] != "w1"}
    assert done == []


# ------------------------------------------------- end to end, with the emulator

Uploads = list[tuple[float, float, list[tuple[str, str]]]]


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch) -> Uploads:
    """Every upload call the client makes: start, end, (type, identity) of each."""
    seen: Uploads = []
    original = CleverTapClient.upload

    def upload(
        self: CleverTapClient, records: Sequence[dict[str, Any]], **kwargs: Any
    ) -> UploadResult:
        start = time.monotonic()
        try:
            return original(self, records, **kwargs)
        finally:
            kinds = [(str(r["type"]), str(r.get("identity"))) for r in records]
            seen.append((start, time.monotonic(), kinds))

    monkeypatch.setattr(CleverTapClient, "upload", upload)
    return seen


@pytest.fixture
def state_times(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When each STATE is written (monotonic clock), as the test's run writes them."""
    states: list[float] = []
    write = singer_sdk.target_base.Target._write_state_message

    def timed(self: Any, state: dict[str, Any]) -> None:
        states.append(time.monotonic())
        write(self, state)

    monkeypatch.setattr(singer_sdk.target_base.Target, "_write_state_message", timed)
    return states


def test_pipelined_run_keeps_profiles_before_events_and_state_after_all_uploads(
    clevertap_emulator: Any,
    ct_config: dict[str, Any],
    run_target: Callable[[dict[str, Any], str], Run],
    uploads: Uploads,
    state_times: list[float],
) -> None:
    states = state_times
    clevertap_emulator.fault("latency", ms=300, path="/1/upload")
    # windows of two records: C1-2, C3-4, T1-2, T3-4, C5-6, one upload call per
    # record; both stages share the four upload threads
    config = {
        **ct_config,
        "batch_size_rows": 2,
        "batch_size": 1,
        "max_concurrency": 4,
    }
    run = run_target(config, "pipeline_windows.singer")
    assert run.states
    assert run.stats("Contact")["accepted"] == 6
    assert run.stats("Task")["accepted"] == 4
    profile_calls = [u for u in uploads if u[2][0][0] == "profile"]
    event_calls = [u for u in uploads if u[2][0][0] == "event"]
    assert len(profile_calls) == 6
    assert len(event_calls) == 4
    # every event goes after the upload of the profile it references settled
    for start, _end, kinds in event_calls:
        for _kind, identity in kinds:
            settled = [e for _s, e, k in profile_calls if ("profile", identity) in k]
            assert settled
            assert max(settled) <= start
    # the last window's profiles went up while the events of T3-4 were in flight
    last_start, last_end, _ = max(profile_calls)
    assert any(s < last_end and last_start < e for s, e, _k in event_calls)
    # STATE only once every upload settled
    assert min(states) >= max(e for _s, e, _k in uploads)
    assert len(clevertap_emulator.events()) == 4


def _end_of_input(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When the target read its last line (process_endofpipe starts)."""
    seen: list[float] = []
    original = TargetCleverTap.process_endofpipe

    def timed(self: TargetCleverTap) -> None:
        seen.append(time.monotonic())
        original(self)

    monkeypatch.setattr(TargetCleverTap, "process_endofpipe", timed)
    return seen


@pytest.mark.parametrize(
    "fixture",
    [
        # tap-salesforce: each stream's SCHEMA just before its records
        "streams_in_turn.singer",
        # every SCHEMA first: the Contact window goes once Contact fell silent,
        # or before a Task window whose events name its people
        "schemas_first.singer",
    ],
)
def test_a_stream_smaller_than_a_window_uploads_while_the_input_is_still_read(
    clevertap_emulator: Any,
    ct_config: dict[str, Any],
    run_target: Callable[[dict[str, Any], str], Run],
    uploads: Uploads,
    *,
    monkeypatch: pytest.MonkeyPatch,
    state_times: list[float],
    fixture: str,
) -> None:
    states = state_times
    end_of_input = _end_of_input(monkeypatch)
    clevertap_emulator.fault("latency", ms=300, path="/1/upload")
    # a full window would be 15 records: the 3 Contacts never fill one
    config = {**ct_config, "batch_size": 1, "max_concurrency": 15}
    run = run_target(config, fixture)
    assert run.stats("Contact")["accepted"] == 3
    assert run.stats("Task")["accepted"] == 6
    profile_calls = [u for u in uploads if u[2][0][0] == "profile"]
    event_calls = [u for u in uploads if u[2][0][0] == "event"]
    assert len(profile_calls) == 3
    assert len(event_calls) == 6
    # the Contacts' profiles went up while the Tasks were still being read
    assert max(start for start, _end, _k in profile_calls) < end_of_input[0]
    # every event after the profile it references settled
    for start, _end, kinds in event_calls:
        for _kind, identity in kinds:
            settled = [e for _s, e, k in profile_calls if ("profile", identity) in k]
            assert settled
            assert max(settled) <= start
    # STATE only once every upload settled, the last bookmark last
    assert states
    assert min(states) >= max(e for _s, e, _k in uploads)
    assert run.states[-1] == {"bookmarks": {"Task": {"n": 6}}}
    assert len(clevertap_emulator.events()) == 6


def test_live_windows_are_a_few_upload_calls_dry_run_and_lookup_windows_stay_full(
    ct_config: dict[str, Any],
    run_target: Callable[[dict[str, Any], str], Run],
) -> None:
    config = {**ct_config, "batch_size": 2, "max_concurrency": 15}
    live = run_target(config, "streams_in_turn.singer")
    sizes = {sink.stream_name: sink.max_size for sink in live.target.clevertap_sinks}
    # profiles: LIVE_WINDOW_CALLS calls' worth; events only: one call's worth
    assert sizes == {"Contact": 2 * LIVE_WINDOW_CALLS, "Task": 2}
    dry = run_target({**config, "dry_run": True}, "streams_in_turn.singer")
    sizes = {sink.stream_name: sink.max_size for sink in dry.target.clevertap_sinks}
    assert sizes == {"Contact": 30, "Task": 30}
    # email lookups make each window wait for the earlier ones: nothing to overlap
    joins = run_target({**config, "identity_lookup": "email"}, "streams_in_turn.singer")
    assert {sink.max_size for sink in joins.target.clevertap_sinks} == {30}
    rows = run_target({**config, "batch_size_rows": 7}, "streams_in_turn.singer")
    assert {sink.max_size for sink in rows.target.clevertap_sinks} == {7}


def test_a_bad_input_line_stops_the_windows_still_waiting_to_upload(
    clevertap_emulator: Any,
    ct_config: dict[str, Any],
    run_target: Callable[[dict[str, Any], str], Run],
    uploads: Uploads,
) -> None:
    # the Contact window's profiles are in flight (latency) and the Task window's
    # events wait for them when the next line turns out not to be JSON: the run
    # stops, so the waiting events must not go out after it reported failure
    # (threads keep running: the main thread stays alive until they end)
    clevertap_emulator.fault("latency", ms=400, path="/1/upload")
    config = {**ct_config, "batch_size_rows": 2, "batch_size": 1}
    with pytest.raises(InvalidInputLine):
        run_target(config, "bad_line_after_windows.singer")
    stopped = time.monotonic()
    time.sleep(1.2)  # what the waiting events' upload would take, and more
    assert [u for u in uploads if u[0] >= stopped] == []
    assert all(end <= stopped for _start, end, _kinds in uploads)
    assert clevertap_emulator.events() == []


@pytest.mark.usefixtures("signal_handlers")
def test_sigterm_while_waiting_for_a_window_writes_no_state_before_it_settled(
    ct_config: dict[str, Any],
    run_target: Callable[[dict[str, Any], str], Run],
    uploads: Uploads,
    monkeypatch: pytest.MonkeyPatch,
    state_times: list[float],
) -> None:
    # The SDK's handler drains every sink and writes STATE inside the signal
    # handler, i.e. in the middle of what the main thread was doing. Most often
    # that is waiting for the oldest window, already taken off the pipeline's
    # queue: a STATE written then does not wait for it.
    states = state_times
    collect = UploadPipeline._collect
    fired: list[bool] = []

    def signal_while_waiting(self: UploadPipeline) -> None:
        window = self._in_flight[0]
        if not fired and not window.done.done():
            fired.append(True)
            wait = window.done.exception

            def interrupted(timeout: float | None = None) -> BaseException | None:
                signal.raise_signal(signal.SIGTERM)  # lands while it waits
                return wait(timeout)

            window.done.exception = interrupted  # type: ignore[method-assign]
        collect(self)

    monkeypatch.setattr(UploadPipeline, "_collect", signal_while_waiting)
    # the first window's uploads are slow, the others are not
    upload = CleverTapClient.upload

    def slow_first(
        self: CleverTapClient, records: Sequence[dict[str, Any]], **kwargs: Any
    ) -> UploadResult:
        if any(r.get("identity") == "SF_Contact_003C0001" for r in records):
            time.sleep(0.8)
        return upload(self, records, **kwargs)

    monkeypatch.setattr(CleverTapClient, "upload", slow_first)
    config = {**ct_config, "batch_size_rows": 2, "batch_size": 1}
    run = run_target(config, "contacts_five.singer")
    assert fired
    last_upload = max(end for _start, end, _kinds in uploads)
    assert states, "what was read settles and STATE is written"
    assert all(at >= last_upload for at in states), (states, last_upload)
    # the input ended after the message being handled (a STATE, or the record
    # before it): the last STATE written is the last one read
    received = run.target.loader.counters.totals()["received"]
    assert run.states[-1]["bookmarks"]["Contact"]["n"] in {received - 1, received}


@pytest.mark.usefixtures("signal_handlers")
def test_a_first_sigterm_ends_the_input_there_and_settles_what_was_read(
    ct_config: dict[str, Any],
    run_target: Callable[[dict[str, Any], str], Run],
    clevertap_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # SIGTERM arrives while the second record is handled: the input ends after
    # it (records 3-5 and the STATE that follows record 2 are not read), the
    # first two are uploaded and the last STATE read, n=1, is written once they
    # settled; the run ends as at end of input (no exit code)
    process = CleverTapSink.process_record

    def signalled(self: CleverTapSink, record: dict[str, Any], context: Any) -> None:
        process(self, record, context)
        if record["Id"] == "003C0002":
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(CleverTapSink, "process_record", signalled)
    run = run_target(ct_config, "contacts_five.singer")
    assert run.target.loader.counters.totals()["received"] == 2
    assert run.states[-1] == {"bookmarks": {"Contact": {"n": 1}}}
    ids = sorted(p["identity"] for p in clevertap_emulator.profiles())
    assert ids == ["SF_Contact_003C0001", "SF_Contact_003C0002"]
    assert "the input ends after the message being handled" in caplog.text


@pytest.mark.usefixtures("signal_handlers")
def test_a_second_signal_stops_at_once_without_state(
    ct_config: dict[str, Any],
    run_target: Callable[[dict[str, Any], str], Run],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    process = CleverTapSink.process_record

    def twice(self: CleverTapSink, record: dict[str, Any], context: Any) -> None:
        process(self, record, context)
        signal.raise_signal(signal.SIGINT)  # Ctrl-C, then Ctrl-C again
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(CleverTapSink, "process_record", twice)
    written: list[dict[str, Any]] = []
    monkeypatch.setattr(
        singer_sdk.target_base.Target,
        "_write_state_message",
        lambda _self, state: written.append(state),
    )
    config = {**ct_config, "batch_size_rows": 1}
    with pytest.raises(SystemExit) as stopped:
        run_target(config, "contacts_five.singer")
    assert stopped.value.code == 128 + signal.SIGINT
    assert written == []
