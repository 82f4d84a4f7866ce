"""The upload pipeline: the next window is built while earlier ones upload.

Each window's uploads run in two steps on threads of their own: the profile step
(its profile upserts, then its profile deletes) and the event step (its events
through the ledger, then `complete`: identity map, change tracking, accepted
counts). Windows in flight overlap except where order matters; a step waits for
the steps of earlier windows still in flight that touch the same people or
events:

- profiles and deletes of a person wait for earlier profiles and deletes of that
  person (the last write wins, as without the pipeline);
- deletes of a person also wait for earlier events of that person (no event of
  an earlier window lands on a profile deleted after it);
- events wait for the window's own profile step and for every earlier profile
  step touching a person they name (profiles reach CleverTap before the events
  that need them, across windows too), and for earlier event steps sharing an
  event key (the ledger sees those settled first: no duplicate send).

Windows in flight are bounded twice: at most `WINDOWS_IN_FLIGHT` of them, and
at most `max_records` records among them (`RECORDS_IN_FLIGHT_CALLS` times
`batch_size * max_concurrency` by default: what three full windows held before
live windows got smaller); `submit` waits for the oldest before taking one more,
so memory holds that many records plus the window being built. Many small
windows can be in flight at once: a live run hands over a window every few
upload calls' worth of records (sinks.py), so uploads run while the input is
still read instead of after its end (a window already settled is collected
at the next `submit` without waiting). All steps share the run's upload thread
pool: `max_concurrency` still caps the requests in flight. After a failure (a
window's, or the main thread ended by an error elsewhere) no later step sends
anything; `drain` raises the first error (no STATE then).
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from target_clevertap.client import CleverTapError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from target_clevertap.dispatch import UploadDispatcher
    from target_clevertap.loader import Entry
    from target_clevertap.payloads import UploadItem

#: windows whose uploads may be in flight while the next one is built
WINDOWS_IN_FLIGHT = 16
#: records in flight at most, in full windows (batch_size * max_concurrency)
RECORDS_IN_FLIGHT_CALLS = 3


class WindowCancelledError(CleverTapError):
    """An earlier window failed (or the run stops): this one sent nothing more."""


def _person(payload: dict[str, Any]) -> str:
    return str(payload.get("identity") or payload.get("objectId") or "")


@dataclass
class _Window:
    """What a window in flight touches, and its two steps."""

    writes: frozenset[str]  # people whose profile it upserts or deletes
    reads: frozenset[str]  # people its events name
    keys: frozenset[str]  # its event keys
    size: int  # its records
    profiles_done: Future[None]
    done: Future[None]


class UploadPipeline:
    """Runs windows' uploads in two ordered steps, a bounded number at a time."""

    def __init__(
        self,
        dispatch: UploadDispatcher,
        limit: int = WINDOWS_IN_FLIGHT,
        max_records: int | None = None,
    ) -> None:
        """Set up (threads start with the first window).

        Args:
            dispatch: sends profiles, deletes and events and settles them.
            limit: windows in flight at most.
            max_records: records in flight at most (None: no bound but `limit`);
                a window larger than that still goes, alone.
        """
        self.dispatch = dispatch
        self.limit = max(1, limit)
        self.max_records = max_records
        self._records = 0  # records of the windows in flight
        self._threads: ThreadPoolExecutor | None = None
        self._in_flight: deque[_Window] = deque()
        self._stop = threading.Event()
        self._error: BaseException | None = None

    @property
    def in_flight(self) -> int:
        """Windows submitted and not yet collected."""
        return len(self._in_flight)

    def submit(
        self,
        entries: Sequence[Entry],
        profiles: Sequence[tuple[int, UploadItem]],
        deletes: list[tuple[int, str]],
        events: Sequence[tuple[int, UploadItem]],
        complete: Callable[[], None],
    ) -> Future[None]:
        """Queue one window's uploads; wait first while the pipeline is full.

        Args:
            entries: the window's records.
            profiles: its profile upserts.
            deletes: its profile deletes.
            events: its events, oldest first.
            complete: settles the window once its events settled.

        Returns:
            The window's handle: done once the window settled.
        """
        while self._in_flight and self._in_flight[0].done.done():
            self._collect()  # settled already: frees its room without waiting
        while self._in_flight and self._full(len(entries)):
            self._collect()
        if self._threads is None:  # two steps per window, each may wait
            self._threads = ThreadPoolExecutor(
                2 * self.limit, thread_name_prefix="clevertap-window"
            )
        upserts = frozenset(_person(it.payload) for _, it in profiles)
        removed = frozenset(ident for _, ident in deletes)
        writes = upserts | removed
        reads = frozenset(_person(it.payload) for _, it in events)
        keys = frozenset(it.event_key or "" for _, it in events) - {""}
        earlier = list(self._in_flight)
        before_profiles = [w.profiles_done for w in earlier if w.writes & writes]
        before_deletes = [w.done for w in earlier if w.reads & removed]
        profiles_done = self._threads.submit(
            self._profile_step, entries, profiles, deletes, before_profiles,
            before_deletes,
        )  # fmt: skip
        before_events = [profiles_done]
        before_events += [w.profiles_done for w in earlier if w.writes & reads]
        before_events += [w.done for w in earlier if w.keys & keys]
        done = self._threads.submit(
            self._event_step, entries, events, before_events, complete
        )
        self._in_flight.append(
            _Window(writes, reads, keys, len(entries), profiles_done, done)
        )
        self._records += len(entries)
        return done

    def _full(self, size: int) -> bool:
        """Whether a window of `size` records must wait for room."""
        if len(self._in_flight) >= self.limit:
            return True
        return self.max_records is not None and self._records + size > self.max_records

    def _collect(self) -> None:
        """Wait for the oldest window; raise the run's first error if it failed."""
        window = self._in_flight.popleft()
        self._records -= window.size
        exc = window.done.exception()
        if exc is None:
            exc = window.profiles_done.exception()
        if exc is not None:
            raise self._error or exc

    def drain(self) -> None:
        """Wait until every window settled; raise the first error.

        Raises:
            BaseException: the first failed window's error (the run must stop).
        """
        while self._in_flight:
            self._collect()

    def close(self) -> None:
        """Stop: steps not started send nothing; wait for the ones running."""
        self._stop.set()
        while self._in_flight:
            window = self._in_flight.popleft()
            self._records -= window.size
            window.done.exception()  # waits; raised already if any
            window.profiles_done.exception()
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None

    def _check(self) -> None:
        # the main thread ended (the run failed outside a window): stop sending
        if self._stop.is_set() or not threading.main_thread().is_alive():
            msg = "an earlier upload window failed; this window was not sent"
            raise WindowCancelledError(msg)

    def _failed(self, exc: BaseException) -> None:
        if self._error is None and not isinstance(exc, WindowCancelledError):
            self._error = exc
        self._stop.set()

    def _profile_step(
        self,
        entries: Sequence[Entry],
        profiles: Sequence[tuple[int, UploadItem]],
        deletes: list[tuple[int, str]],
        before_profiles: list[Future[None]],
        before_deletes: list[Future[None]],
    ) -> None:
        try:
            for future in before_profiles:
                future.result()
            self._check()
            self.dispatch.upload_upserts(entries, profiles)
            if deletes:
                for future in before_deletes:
                    future.result()
                self._check()
                self.dispatch.deletes.send(entries, deletes)
        except BaseException as exc:
            self._failed(exc)
            raise

    def _event_step(
        self,
        entries: Sequence[Entry],
        events: Sequence[tuple[int, UploadItem]],
        before: list[Future[None]],
        complete: Callable[[], None],
    ) -> None:
        try:
            for future in before:
                future.result()
            self._check()
            self.dispatch.events.upload(entries, events)
            complete()
        except BaseException as exc:
            self._failed(exc)
            raise
