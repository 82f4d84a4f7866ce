"""Which in-doubt events CleverTap holds: bounded re-checks through Get Events.

An event sent without a readable reply (a lost reply, or HTTP 500/502/504) may or
may not be stored. CleverTap has no idempotency key, so the target looks for the
event's key property in the Get Events API before it sends anything again.

An accepted event may take a while before Get Events returns it (ingestion lag).
So "not found" only counts once a check ran at least `lag_seconds` after the
event was sent; earlier misses are checked again, at most `checks` times in all.
An event never checked late enough stays unknown (in doubt in the ledger).

A stop asked for (a first SIGTERM or Ctrl-C: `stop` is set) ends the waits
between checks at once, and so does the client's wait for a Get Events answer
CleverTap is still preparing (`ReadStoppedError`, the read's findings dropped):
what no check found yet stays unknown, so in doubt in the ledger, and the next
run checks it before anything is sent again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from target_clevertap.client import ReadStoppedError

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator, Sequence

LOGGER = logging.getLogger("target-clevertap.reconcile")
_DAY = dt.timedelta(days=1)
#: how often a wait between checks looks whether a stop was asked for (seconds)
STOP_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Sent:
    """One event whose fate is checked: its key, name, ts and when it was sent."""

    key: str
    name: str
    ts: int
    sent_at: float


@dataclass
class Outcome:
    """What the checks found: landed, certainly missing, still unknown."""

    found: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)
    #: a stop ended the checks before the lag was waited for
    stopped: bool = False

    @property
    def why_unknown(self) -> str:
        """Why the unknown events are unknown, for the message that stops the run."""
        if self.stopped:
            return "their check was cut short by the stop"
        return "not visible in Get Events yet (ingestion lag) after the checks"


def day_range(
    stamps: Sequence[int], zone: dt.tzinfo, now: float | None = None
) -> tuple[int, int]:
    """The Get Events `from`/`to` days (YYYYMMDD) covering `stamps`, padded a day.

    `to` is never after today in the account's time zone (CleverTap is not
    asked about days that have not begun).

    Args:
        stamps: event epoch seconds.
        zone: the account's time zone.
        now: the current epoch seconds (tests).

    Returns:
        (from, to).
    """
    today = dt.datetime.fromtimestamp(time.time() if now is None else now, zone).date()
    first = dt.datetime.fromtimestamp(min(stamps), zone).date() - _DAY
    last = min(dt.datetime.fromtimestamp(max(stamps), zone).date() + _DAY, today)
    first = min(first, last)
    return int(first.strftime("%Y%m%d")), int(last.strftime("%Y%m%d"))


class Reconciler:
    """Looks events up by their key property, allowing for ingestion lag."""

    def __init__(  # noqa: PLR0913 - keyword-only settings
        self,
        iter_events: Callable[[str, int, int], Iterator[dict[str, Any]]],
        *,
        key_property: str,
        lag_seconds: float,
        checks: int,
        zone: dt.tzinfo,
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
    ) -> None:
        """Set up.

        Args:
            iter_events: (event name, from day, to day) -> export records.
            key_property: the event property holding the event key.
            lag_seconds: how long an accepted event may stay invisible to reads.
            checks: reads of one set of events at most.
            zone: the account's time zone.
            sleep: the wait function (tests).
            stop: set when the run is asked to stop (a first signal); the
                waits between checks then end at once.
        """
        self.iter_events = iter_events
        self.key_property = key_property
        self.lag_seconds = max(0.0, lag_seconds)
        self.checks = max(1, checks)
        self.zone = zone
        self.sleep = sleep
        self.stop = stop

    def _pause(self, seconds: float) -> bool:
        """Wait between checks; False when a stop was (or is) asked for.

        The wait is cut into short sleeps of the `sleep` function (which tests
        replace) rather than an `Event.wait`.
        """
        if self.stop is None:
            self.sleep(seconds)
            return True
        end = time.monotonic() + seconds
        while not self.stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return True
            self.sleep(min(left, STOP_POLL_SECONDS))
        return False

    def _read(self, rows: Sequence[Sent]) -> set[str]:
        wanted = {row.key for row in rows}
        by_name: dict[str, list[int]] = {}
        for row in rows:
            by_name.setdefault(row.name, []).append(row.ts)
        found: set[str] = set()
        for name, stamps in by_name.items():
            day_from, day_to = day_range(stamps, self.zone)
            for record in self.iter_events(name, day_from, day_to):
                props = record.get("event_props") or record.get("evtData") or {}
                value = (
                    props.get(self.key_property) if isinstance(props, dict) else None
                )
                if value in wanted:
                    found.add(str(value))
        return found

    def check(self, rows: Sequence[Sent]) -> Outcome:
        """Settle what can be settled within `checks` reads.

        Reads are spread over the lag window: the first at once, the others
        `lag_seconds / (checks - 1)` apart, so the last one comes after the
        window for events just sent. A stop asked for ends the waits: what is
        not found by then is unknown (`Outcome.stopped`).

        Args:
            rows: the events to look for.

        Returns:
            Found, missing (checked late enough, absent) and unknown keys.

        Raises:
            CleverTapError: when Get Events cannot be read (nothing is settled).
        """
        outcome = Outcome()
        todo = list(rows)
        gap = self.lag_seconds / (self.checks - 1) if self.checks > 1 else 0.0
        for attempt in range(self.checks):
            started = time.time()
            try:
                found = self._read(todo)
            except ReadStoppedError:  # cut short: what this read found is unsure
                outcome.stopped = True
                self._log_stop(todo)
                break
            outcome.found |= found
            late = {
                r.key
                for r in todo
                if r.key not in found and started - r.sent_at >= self.lag_seconds
            }
            outcome.missing |= late
            todo = [r for r in todo if r.key not in found and r.key not in late]
            if not todo or attempt == self.checks - 1:
                break
            due = min(r.sent_at for r in todo) + self.lag_seconds - time.time()
            wait = max(0.0, min(gap, due)) if gap else max(0.0, due)
            if self.stop is None or not self.stop.is_set():
                LOGGER.info(
                    "%d events not visible yet in Get Events; checking again in %.0f s",
                    len(todo),
                    wait,
                )
            if not self._pause(wait):
                outcome.stopped = True
                self._log_stop(todo)
                break
        outcome.unknown = {r.key for r in todo}
        return outcome

    def _log_stop(self, todo: Sequence[Sent]) -> None:
        """Say what the stop leaves: events in doubt, checked by the next run."""
        left = max(r.sent_at for r in todo) + self.lag_seconds - time.time()
        LOGGER.info(
            "Stop asked: the check of %d events of unknown fate (no readable reply) "
            "ends now instead of waiting up to %.0f s more for them to show in Get "
            "Events; they stay in doubt in the ledger, no STATE is written past "
            "them, and the next run checks them in Get Events before sending "
            "anything again",
            len(todo),
            max(0.0, left),
        )
