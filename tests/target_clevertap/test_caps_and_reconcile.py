"""Units: the caps tracker and the lag-aware reconciler."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from target_clevertap import caps
from target_clevertap.ledger import StateStore
from target_clevertap.reconcile import Reconciler, Sent

LOGGER = logging.getLogger("test")


def _caps(tmp_path: Any, **others: int) -> caps.AccountCaps:
    store = StateStore(tmp_path, "acct")
    return caps.AccountCaps(store.backend, store.lock, LOGGER, others=others)


def test_caps_admit_all_or_nothing_and_remember_across_runs(tmp_path) -> None:
    first = _caps(tmp_path, **{caps.EVENT_NAMES: 510})
    assert first.admit(caps.EVENT_NAMES, ["Sign Up"]) is None
    refusal = first.admit(caps.EVENT_NAMES, ["A", "B"])  # 511 + 2 > 512
    assert refusal is not None
    assert (refusal.code, refusal.name, refusal.used, refusal.cap) == (
        "event_name_cap",
        "B",
        511,
        512,
    )
    assert first.used(caps.EVENT_NAMES) == 511  # nothing of the refused record
    again = _caps(tmp_path, **{caps.EVENT_NAMES: 510})
    assert again.admit(caps.EVENT_NAMES, ["signup"]) is None  # same name, known
    assert again.used(caps.EVENT_NAMES) == 511


def test_predefined_and_msg_keys_are_not_custom() -> None:
    keys = ["Name", "Email", "MSG-email", "Phone", "Job Title", "identity", "Tier"]
    assert caps.custom_keys(keys) == ["Job Title", "Tier"]


def test_caps_warn_once_at_80_percent(tmp_path, caplog) -> None:
    tracker = _caps(tmp_path, **{caps.PROFILE_KEYS: 203})
    assert tracker.admit(caps.PROFILE_KEYS, ["a"]) is None  # 204 < 204.8
    assert "80%" not in caplog.text
    assert tracker.admit(caps.PROFILE_KEYS, ["b"]) is None  # 205
    assert tracker.admit(caps.PROFILE_KEYS, ["c"]) is None
    assert caplog.text.count("80% warning") == 1


def test_dry_run_caps_remember_nothing(tmp_path) -> None:
    store = StateStore(tmp_path, "acct")
    dry = caps.AccountCaps(store.backend, store.lock, LOGGER, persist=False)
    assert dry.admit(caps.EVENT_NAMES, ["E"]) is None
    assert _caps(tmp_path).used(caps.EVENT_NAMES) == 0


class _Export:
    """Get Events stand-in: keys become visible after `visible_after` reads."""

    def __init__(self, keys: list[str], visible_after: int) -> None:
        self.keys = keys
        self.visible_after = visible_after
        self.reads = 0
        self.asked: list[tuple[str, int, int]] = []

    def __call__(self, name: str, day_from: int, day_to: int) -> Any:
        self.reads += 1
        self.asked.append((name, day_from, day_to))
        if self.reads < self.visible_after:
            return iter(())
        return iter({"event_props": {"k": key}} for key in self.keys)


def _reconciler(
    export: _Export, lag: float, checks: int
) -> tuple[Reconciler, list[Any]]:
    waits: list[float] = []
    return (
        Reconciler(
            export,
            key_property="k",
            lag_seconds=lag,
            checks=checks,
            zone=dt.UTC,
            sleep=waits.append,
        ),
        waits,
    )


def test_a_late_event_is_found_by_a_later_check_not_called_missing() -> None:
    export = _Export(["a"], visible_after=3)
    rec, waits = _reconciler(export, lag=60, checks=4)
    now = time.time()
    outcome = rec.check([Sent("a", "E", int(now), now), Sent("b", "E", int(now), now)])
    assert outcome.found == {"a"}
    # "b" was never checked 60 s after sending (the sleeps are fake): unknown
    assert outcome.unknown == {"b"}
    assert outcome.missing == set()
    assert export.reads == 4
    assert all(0 < w <= 20 for w in waits)  # spread over the 60 s window


def test_missing_only_once_checked_after_the_lag() -> None:
    export = _Export([], visible_after=1)
    rec, waits = _reconciler(export, lag=60, checks=3)
    old = time.time() - 61
    outcome = rec.check([Sent("a", "E", int(old), old)])
    assert outcome.missing == {"a"}
    assert export.reads == 1
    assert waits == []


def test_reads_never_ask_for_a_future_day() -> None:
    export = _Export(["a"], visible_after=1)
    rec, _ = _reconciler(export, lag=0, checks=1)
    now = time.time()
    rec.check([Sent("a", "E", int(now), now)])
    ((_, _day_from, day_to),) = export.asked
    today = int(dt.datetime.now(dt.UTC).strftime("%Y%m%d"))
    assert day_to <= today


def test_a_stop_ends_the_wait_between_checks_and_leaves_the_rest_unknown() -> None:
    export = _Export(["a"], visible_after=1)
    stop = threading.Event()
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the stop comes during the first wait
        waits.append(seconds)
        stop.set()

    rec = Reconciler(
        export,
        key_property="k",
        lag_seconds=60,
        checks=4,
        zone=dt.UTC,
        sleep=sleep,
        stop=stop,
    )
    now = time.time()
    outcome = rec.check([Sent("a", "E", int(now), now), Sent("b", "E", int(now), now)])
    # what the first read found stays found; the rest is unknown (in doubt)
    assert (outcome.found, outcome.unknown, outcome.missing) == ({"a"}, {"b"}, set())
    assert outcome.stopped
    assert export.reads == 1
    assert len(waits) == 1
