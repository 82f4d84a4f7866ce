"""Run counters: per-stream statistics, progress lines and the run summary."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from target_clevertap.ledger import create_private_file, new_store_warning

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from target_clevertap.loader import Entry
    from target_clevertap.payloads import UploadItem
    from target_clevertap.run_context import RunContext

PROGRESS_EVERY_S = 30.0
PROGRESS_CHECK_EVERY = 256  # records between clock reads


@dataclass
class StreamStats:
    """Per-stream counters for the summary."""

    received: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    profiles_sent: int = 0
    events_sent: int = 0
    rejected_by_code: Counter[str] = field(default_factory=Counter)
    duplicates_suppressed: int = 0
    profiles_deleted: int = 0
    events_by_age: Counter[str] = field(default_factory=Counter)
    old_events_skipped: int = 0
    identity_lookups: int = 0
    joined_existing_profiles: int = 0
    #: profile fields left out as invalid, by field (the rest was sent)
    dropped_fields: Counter[str] = field(default_factory=Counter)
    #: events whose time was in the future, sent as the time of sending
    event_times_in_future: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON view.

        Returns:
            The counters.
        """
        return {
            "received": self.received,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "skipped": dict(self.skipped),
            "profiles_sent": self.profiles_sent,
            "events_sent": self.events_sent,
            "rejected_by_code": dict(self.rejected_by_code),
            "duplicates_suppressed": self.duplicates_suppressed,
            "profiles_deleted": self.profiles_deleted,
            "events_by_age": dict(self.events_by_age),
            "old_events_skipped": self.old_events_skipped,
            "identity_lookups": self.identity_lookups,
            "joined_existing_profiles": self.joined_existing_profiles,
            "dropped_fields": dict(self.dropped_fields),
            "event_times_in_future": self.event_times_in_future,
        }


class RunCounters:
    """Counts every record's outcome, logs progress, writes the summary."""

    def __init__(self, ctx: RunContext) -> None:
        """Start counting.

        Args:
            ctx: the run context (logger, config, store).
        """
        self.ctx = ctx
        self.stats: dict[str, StreamStats] = {}
        #: events whose fate stays unknown after reconciliation
        self.in_doubt_total = 0
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._started = time.monotonic()
        self._last_progress = self._started
        self._received_total = 0

    def stream_stats(self, stream: str) -> StreamStats:
        """Counters of a stream.

        Args:
            stream: the stream.

        Returns:
            Its counters.
        """
        stats = self.stats.get(stream)
        if stats is not None:
            return stats
        with self._lock:
            return self.stats.setdefault(stream, StreamStats())

    def warn_once(self, key: str, message: str, *args: Any) -> None:
        """Log a warning once per key.

        Args:
            key: dedup key.
            message: the message.
            *args: message args.
        """
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        self.ctx.logger.warning(message, *args)

    def received(self, stream: str) -> None:
        """Count one received record and log progress at most every 30 s.

        Args:
            stream: the stream.
        """
        self.stream_stats(stream).received += 1
        self._received_total += 1
        if self._received_total % PROGRESS_CHECK_EVERY == 0:
            now = time.monotonic()
            if now - self._last_progress >= PROGRESS_EVERY_S:
                self._last_progress = now
                self.log_progress(now)

    def skip(self, stream: str, reason: str) -> None:
        """Account a record as skipped.

        Args:
            stream: the stream.
            reason: why.
        """
        self.stream_stats(stream).skipped[reason] += 1

    def count_sent(self, entries: Sequence[Entry], idx: int, item: UploadItem) -> None:
        """Count a sent profile or event for its stream."""
        self.count_all_sent(entries, ((idx, item),))

    def count_all_sent(
        self, entries: Sequence[Entry], pairs: Iterable[tuple[int, UploadItem]]
    ) -> None:
        """Count sent profiles and events for their streams (one lock for all).

        Args:
            entries: the window's records.
            pairs: (position, item) of the sent items.
        """
        counts: Counter[tuple[str, bool]] = Counter(
            (entries[idx].stream, item.kind == "profile") for idx, item in pairs
        )
        stats = {stream: self.stream_stats(stream) for stream, _ in counts}
        with self._lock:  # upload windows settle on several threads
            for (stream, profile), count in counts.items():
                if profile:
                    stats[stream].profiles_sent += count
                else:
                    stats[stream].events_sent += count

    def bump(self, stream: str, name: str, count: int = 1) -> None:
        """Add to one counter of a stream (safe from any upload thread).

        Args:
            stream: the stream.
            name: the `StreamStats` field.
            count: how much.
        """
        stats = self.stream_stats(stream)
        with self._lock:
            setattr(stats, name, getattr(stats, name) + count)

    def add_in_doubt(self, count: int) -> None:
        """Count events whose fate stays unknown (safe from any upload thread).

        Args:
            count: how many.
        """
        with self._lock:
            self.in_doubt_total += count

    def log_progress(self, now: float | None = None) -> None:
        """Log records received/accepted/rejected and the rate.

        Args:
            now: monotonic time.
        """
        now = now or time.monotonic()
        totals = self.totals()
        rate = totals["received"] / max(now - self._started, 1e-6)
        self.ctx.logger.info(
            "Progress: %d received, %d accepted, %d rejected, %d skipped (%.0f rec/s)",
            totals["received"],
            totals["accepted"],
            totals["rejected"],
            totals["skipped"],
            rate,
        )

    def totals(self) -> dict[str, int]:
        """Totals over all streams.

        Returns:
            received/accepted/rejected/skipped.
        """
        with self._lock:
            stats = list(self.stats.values())
        return {
            "received": sum(s.received for s in stats),
            "accepted": sum(s.accepted for s in stats),
            "rejected": sum(s.rejected for s in stats),
            "skipped": sum(sum(s.skipped.values()) for s in stats),
        }

    def log_summary(self) -> None:
        """Log one summary line per stream and the totals."""
        with self._lock:
            items = sorted(self.stats.items())
        for stream, stats in items:
            self.ctx.logger.info(
                "Summary for stream %s: %s",
                stream,
                json.dumps(stats.as_dict(), sort_keys=True),
            )
        self.log_progress()
        store = self.ctx.opened_store
        if store is not None and store.created:
            self.ctx.logger.warning("Summary: %s", new_store_warning(store))
        self.write_summary_file(items)

    def write_summary_file(self, items: Sequence[tuple[str, StreamStats]]) -> None:
        """Write the run summary to `summary_path` (mode 0600), if set."""
        config = self.ctx.config
        path = config.get("summary_path")
        if not path:
            return
        store = self.ctx.opened_store
        data = {
            "dry_run": self.ctx.dry_run,
            "rejects_path": str(config["rejects_path"]),
            "state_store": None if store is None else store.name,
            "state_store_new": store is not None and store.created,
            "streams": {stream: stats.as_dict() for stream, stats in items},
            "totals": self.totals(),
        }
        target = Path(str(path)).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        create_private_file(target)
        target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
