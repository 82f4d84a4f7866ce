"""A first SIGTERM or Ctrl-C while events of unknown fate are reconciled.

The reconciliation waits up to `reconcile_lag_seconds` for events to show in Get
Events. A first signal ends that wait at once: the events not found yet stay in
doubt in the ledger (no STATE past them) and the next run checks them before
sending anything, so nothing is sent twice.
"""

from __future__ import annotations

import io
import logging
import signal
import threading
import time
from contextlib import redirect_stdout
from typing import TYPE_CHECKING, Any

import pytest
from target_clevertap.client import CleverTapError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.target_clevertap.conftest import Run

LAG_S = 60  # the reconciliation would wait this long; the test may not


@pytest.fixture
def signal_at_first_wait() -> Iterator[list[float]]:
    """SIGTERM to the main thread when the reconciler starts its first wait."""
    fired: list[float] = []
    main = threading.main_thread().ident or 0

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not fired and "checking again in" in record.getMessage():
                fired.append(time.monotonic())
                signal.pthread_kill(main, signal.SIGTERM)

    handler = Handler(logging.INFO)
    logger = logging.getLogger("target-clevertap.reconcile")
    logger.addHandler(handler)
    yield fired
    logger.removeHandler(handler)


@pytest.mark.usefixtures("signal_handlers")
def test_a_first_signal_ends_the_reconcile_wait_and_a_rerun_settles_the_events(
    clevertap_emulator: Any,
    ct_config: dict[str, Any],
    run_target: Callable[[dict[str, Any], str], Run],
    signal_at_first_wait: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    run_target(ct_config, "contacts_five.singer")
    # the event batch is stored but answered 502 (reply lost); the events show
    # in Get Events only from the second read on
    clevertap_emulator.fault("status_after_store", status=502, path="/1/upload")
    clevertap_emulator.fault("ingestion_lag", reads=2, path="/1/upload", times=1)
    # the run ends soon after the signal, not after the lag
    _stopped_then_rerun(
        clevertap_emulator, ct_config, run_target, caplog, signal_at_first_wait,
        within=LAG_S / 4,
    )  # fmt: skip


@pytest.fixture
def signal_at_first_in_progress(clevertap_emulator: Any) -> Iterator[list[float]]:
    """SIGTERM to the main thread once Get Events was asked.

    The fault answers that first read "still in progress".
    """
    fired: list[float] = []
    done = threading.Event()
    main = threading.main_thread().ident or 0

    def watch() -> None:
        while not done.wait(0.02):
            log = clevertap_emulator.requests_log()
            if any(row["path"] == "/1/events.json" for row in log):
                fired.append(time.monotonic())
                signal.pthread_kill(main, signal.SIGTERM)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yield fired
    done.set()
    watcher.join()


@pytest.mark.usefixtures("signal_handlers")
def test_a_first_signal_ends_the_wait_for_a_get_events_answer_still_in_progress(
    clevertap_emulator: Any,
    ct_config: dict[str, Any],
    run_target: Callable[[dict[str, Any], str], Run],
    signal_at_first_in_progress: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    run_target(ct_config, "contacts_five.singer")
    # the event batch is stored but answered 502 (reply lost); the first read of
    # Get Events answers "still in progress" (the client would ask again 15 times,
    # 2 s apart, before giving up)
    clevertap_emulator.fault("status_after_store", status=502, path="/1/upload")
    clevertap_emulator.fault("in_progress", requests=1)
    # the run ends before even one 2 s wait for the answer is over
    _stopped_then_rerun(
        clevertap_emulator, ct_config, run_target, caplog,
        signal_at_first_in_progress, within=1.5,
    )  # fmt: skip


def _stopped_then_rerun(
    clevertap_emulator: Any,
    ct_config: dict[str, Any],
    run_target: Callable[[dict[str, Any], str], Run],
    caplog: pytest.LogCaptureFixture,
    fired: list[float],
    *,
    within: float,
) -> None:
    """The stopped run leaves the events in doubt; a rerun settles them."""
    config = {**ct_config, "reconcile_lag_seconds": LAG_S, "reconcile_checks": 3}
    out = io.StringIO()
    with (
        pytest.raises(CleverTapError, match="cut short by the stop"),
        redirect_stdout(out),
    ):
        run_target(config, "tasks_only.singer")
    assert fired
    assert time.monotonic() - fired[0] < within
    assert out.getvalue() == ""  # no STATE past events in doubt
    assert "Stop asked: the check of 3 events of unknown fate" in caplog.text
    assert "the next run checks them in Get Events" in caplog.text
    assert len(clevertap_emulator.events(evtName="Task Created")) == 3

    # the rerun finds them in Get Events first: accepted, not sent again
    run = run_target(config, "tasks_only.singer")
    assert run.states
    assert "Earlier run: 3 events had landed" in caplog.text
    assert len(clevertap_emulator.events(evtName="Task Created")) == 3
