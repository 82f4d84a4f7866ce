"""The upload pipeline: the next window is built while earlier ones upload.

A window's uploads run in two stages, each on its own thread and first in, first
out across windows:

- profile stage: the window's profile upserts, then its profile deletes (the
  deletes wait until every earlier window's events settled, so no event of an
  earlier window lands on a profile deleted after it);
- event stage: waits until the window's profile stage settled (so every profile
  of this window and of all earlier ones is in CleverTap), then sends the events
  through the ledger and settles the window (`complete`: identity map, change
  tracking, accepted counts).

So window k+1's profiles upload while window k's events are in flight, but a
window's events never go before the profiles they may reference, and events of
two windows never overlap (the ledger sees every earlier event settled). At most
`WINDOWS_IN_FLIGHT` windows are in flight; `submit` waits for the oldest before
taking one more, so memory holds that many windows plus the one being built.
Both stages share the run's upload thread pool: `max_concurrency` still caps the
requests in flight. After a failure (a window's, or the main thread ended by
an error elsewhere) no later window sends anything; `drain` raises the first
window's error (no STATE then).
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from target_clevertap.client import CleverTapError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from target_clevertap.dispatch import UploadDispatcher
    from target_clevertap.loader import Entry
    from target_clevertap.payloads import UploadItem

#: windows whose uploads may be in flight while the next one is built
WINDOWS_IN_FLIGHT = 2


class WindowCancelledError(CleverTapError):
    """An earlier window failed (or the run stops): this one sent nothing more."""


class UploadPipeline:
    """Runs windows' uploads in two ordered stages, a bounded number at a time."""

    def __init__(
        self, dispatch: UploadDispatcher, limit: int = WINDOWS_IN_FLIGHT
    ) -> None:
        """Set up (threads start with the first window).

        Args:
            dispatch: sends profiles, deletes and events and settles them.
            limit: windows in flight at most.
        """
        self.dispatch = dispatch
        self.limit = max(1, limit)
        self._stages: tuple[ThreadPoolExecutor, ThreadPoolExecutor] | None = None
        self._in_flight: deque[Future[None]] = deque()
        self._last_events: Future[None] | None = None
        self._stop = threading.Event()

    def _executors(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        if self._stages is None:
            self._stages = (
                ThreadPoolExecutor(1, thread_name_prefix="clevertap-profiles"),
                ThreadPoolExecutor(1, thread_name_prefix="clevertap-events"),
            )
        return self._stages

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
        while len(self._in_flight) >= self.limit:
            self._in_flight.popleft().result()  # raises the window's error
        profile_stage, event_stage = self._executors()
        earlier_events = self._last_events
        profiles_done = profile_stage.submit(
            self._profile_stage, entries, profiles, deletes, earlier_events
        )
        done = event_stage.submit(
            self._event_stage, entries, events, profiles_done, complete
        )
        self._last_events = done
        self._in_flight.append(done)
        return done

    def drain(self) -> None:
        """Wait until every window settled; raise the first window's error.

        Raises:
            BaseException: the first failed window's error (the run must stop).
        """
        while self._in_flight:
            self._in_flight.popleft().result()

    def close(self) -> None:
        """Stop: windows not started send nothing; wait for the ones running."""
        self._stop.set()
        while self._in_flight:
            self._in_flight.popleft().exception()  # waits; raised already if any
        if self._stages is not None:
            for executor in self._stages:
                executor.shutdown(wait=True)
            self._stages = None

    def _check(self) -> None:
        # the main thread ended (the run failed outside a window): stop sending
        if self._stop.is_set() or not threading.main_thread().is_alive():
            msg = "an earlier upload window failed; this window was not sent"
            raise WindowCancelledError(msg)

    def _profile_stage(
        self,
        entries: Sequence[Entry],
        profiles: Sequence[tuple[int, UploadItem]],
        deletes: list[tuple[int, str]],
        earlier_events: Future[None] | None,
    ) -> None:
        try:
            self._check()
            self.dispatch.upload_upserts(entries, profiles)
            if deletes:
                if earlier_events is not None:
                    earlier_events.result()
                self._check()
                self.dispatch.deletes.send(entries, deletes)
        except BaseException:
            self._stop.set()
            raise

    def _event_stage(
        self,
        entries: Sequence[Entry],
        events: Sequence[tuple[int, UploadItem]],
        profiles_done: Future[None],
        complete: Callable[[], None],
    ) -> None:
        try:
            profiles_done.result()
            self._check()
            self.dispatch.events.upload(entries, events)
            complete()
        except BaseException:
            self._stop.set()
            raise
