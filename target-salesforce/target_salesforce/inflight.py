"""Bulk 2.0 batches kept in flight while the target reads on.

`InFlight` runs each Bulk batch's work (its ingest job, and the resends of rows
that hit UNABLE_TO_LOCK_ROW or a Failed insert job) in a worker thread, and
settles the batches in the order they were sent, always in the reading thread:
rejects written, counters added, reject policy checked. At most `limit` batches
are out at once, the one just sent included, so memory holds at most that many
batches and `limit` 1 waits for every batch before reading on.

A batch that may touch a row an earlier batch still in flight touches (same
object, and the same key field with a value in common, or another key field)
starts its job only once the earlier one has finished: one row is never in two
running jobs, and rows of one key land in input order. Inserts name no row.
Two jobs writing the same rows (or children of one parent) at once can fail
with UNABLE_TO_LOCK_ROW (Bulk API 2.0 guide, "Organize Data to Minimize Lock
Contention"); rows that still do are resent by the sink's lock retries.

Nothing here writes STATE: the target calls `settle_all` first. An error while
settling stops the run: the other batches in flight are waited for and settled
(their rejects written) before it is raised, so no job is left behind unread.
Any other error that stops the run (a bad input line, a stream that cannot be
routed) reaches `stop` through `RunContext.stop` before it is raised.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from target_salesforce.errors import TargetSalesforceError

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

T = TypeVar("T")


class EarlierBatchFailedError(TargetSalesforceError):
    """Not sent: an earlier batch on the same rows did not finish cleanly."""


class RunStoppedError(TargetSalesforceError):
    """Not sent: the run stopped while the batch waited for an earlier one."""


@dataclasses.dataclass(frozen=True)
class Scope:
    """The rows a batch may write: its object, key field and key values.

    `key_field` None (insert) names no existing row.
    """

    sobject: str
    key_field: str | None
    keys: frozenset[str]

    def overlaps(self, other: Scope) -> bool:
        """Whether the two batches may write the same row."""
        if self.sobject != other.sobject or not self.key_field or not other.key_field:
            return False
        if self.key_field != other.key_field:
            return True  # e.g. Id and an External ID: rows cannot be told apart
        return not self.keys.isdisjoint(other.keys)


@dataclasses.dataclass(eq=False)
class _Batch:
    scope: Scope
    future: concurrent.futures.Future[Any]
    settle: Callable[[concurrent.futures.Future[Any]], None]


class InFlight:
    """Bulk batches running in worker threads, settled in the order sent."""

    def __init__(self, limit: int, logger: logging.Logger) -> None:
        """No thread yet; `limit` (at least 1) batches may be out at once."""
        self.limit = max(1, int(limit))
        self.logger = logger
        # set once the run stops: the workers send nothing more that waits
        self._stopped = threading.Event()
        self._batches: collections.deque[_Batch] = collections.deque()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def stopping(self) -> bool:
        """True once the run stops: settle callbacks then skip the reject policy."""
        return self._stopped.is_set()

    def __len__(self) -> int:
        """Batches sent and not settled yet."""
        return len(self._batches)

    def submit(
        self,
        scope: Scope,
        work: Callable[[], Any],
        settle: Callable[[concurrent.futures.Future[Any]], None],
    ) -> None:
        """Start `work` in a worker; `settle(future)` runs later, in this thread.

        Returns once fewer than `limit` batches are out (settling the oldest
        ones while not); batches that finished meanwhile are settled too.
        """
        earlier = [b.future for b in self._batches if b.scope.overlaps(scope)]
        if earlier:
            self.logger.info(
                "Bulk batch on %s waits for %d earlier batch(es) on the same rows",
                scope.sobject,
                len(earlier),
            )
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.limit, thread_name_prefix="bulk"
                )
            future = self._pool.submit(_after, earlier, work, self._stopped)
        self._batches.append(_Batch(scope, future, settle))
        while len(self._batches) >= self.limit:
            self._settle_oldest()
        while self._batches and self._batches[0].future.done():
            self._settle_oldest()

    def settle_all(self) -> None:
        """Wait for every batch out and settle it, oldest first."""
        while self._batches:
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        batch = self._batches.popleft()
        try:
            batch.settle(batch.future)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """The run stops: wait for the batches out and settle what they report.

        Their own errors are logged, not raised: the error that stops the run
        is the one the caller raises.
        """
        self._stopped.set()  # batches still waiting for an earlier one send nothing
        while self._batches:
            batch = self._batches.popleft()
            try:
                batch.settle(batch.future)
            except Exception as exc:  # noqa: BLE001 - logged; the first error stops the run
                self.logger.error("A Bulk batch in flight was not settled: %s", exc)  # noqa: TRY400 - one line, no traceback

    def close(self) -> None:
        """Wait for the worker threads (nothing is settled here)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _after(
    earlier: list[concurrent.futures.Future[Any]],
    work: Callable[[], T],
    stopped: threading.Event,
) -> T:
    """Run `work` once the earlier batches on the same rows have finished.

    Raises:
        EarlierBatchFailedError: one of them failed; `work` is not run, so its
            rows are not loaded and the run stops without STATE.
        RunStoppedError: the run stopped meanwhile; nothing is sent after that.
    """
    concurrent.futures.wait(earlier)
    if earlier and stopped.is_set():
        msg = (
            "not sent: the run stopped while this Bulk batch waited for an earlier "
            "one on the same rows; these records are not loaded and a rerun loads them"
        )
        raise RunStoppedError(msg)
    if any(f.exception() is not None for f in earlier):
        msg = (
            "not sent: an earlier Bulk batch on the same rows did not finish; "
            "these records are not loaded and a rerun loads them"
        )
        raise EarlierBatchFailedError(msg)
    return work()
