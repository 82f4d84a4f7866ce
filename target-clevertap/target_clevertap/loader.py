"""The loader: settles each batch window a sink hands over, durably.

The run's units, each in its own module: `RunContext` (settings, client, store,
threads), `RunCounters` (statistics, progress, summary), `Rejects` (rejects and
dry-run files), `ChangeTracker` (previous values), `References` (the identity
map, deferral of records waiting for a person), `IdentityJoiner` (email joins),
`Deletes` and `UploadDispatcher` (batches in flight, the event ledger).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from target_clevertap import ages, screen
from target_clevertap.client import CleverTapError
from target_clevertap.counters import RunCounters
from target_clevertap.deletes import Deletes
from target_clevertap.dispatch import UploadDispatcher
from target_clevertap.identity_join import IdentityJoiner
from target_clevertap.payloads import (
    RecordContext,
    RecordReject,
    UnresolvedReference,
    build_uploads,
)
from target_clevertap.references import References
from target_clevertap.rejects import Rejects
from target_clevertap.run_context import RunContext
from target_clevertap.tracking import ChangeTracker

if TYPE_CHECKING:
    import logging
    from collections.abc import Iterable, Mapping, Sequence

    from target_clevertap.client import CleverTapClient
    from target_clevertap.counters import StreamStats
    from target_clevertap.ledger import StateStore
    from target_clevertap.mapping import StreamMapping
    from target_clevertap.payloads import SchemaInfo, UploadItem
    from target_clevertap.tracking import Tracked


@dataclass(slots=True)
class Entry:
    """One input record waiting in a batch window."""

    stream: str
    key: str
    record: dict[str, Any]
    mapping: StreamMapping
    schema: SchemaInfo
    accounted: bool = False  # counted as rejected or skipped
    #: change tracking: values remembered when the record was last seen (None on
    #: its first sighting or for a stale replay), and what to remember now
    previous: dict[str, Any] | None = None
    track: Tracked | None = None
    #: identities that depend on the record alone, by spec (computed once)
    identities: dict[int, list[str]] = field(default_factory=dict)


class Loader:
    """Builds, screens, sends and settles one window of a sink's records.

    Each sink hands it its own batch (`CleverTapSink.process_batch`). It is one
    object per run, not one per sink, because the rules span streams: the
    identity map a Contact window fills is what a Task window's references
    resolve against (profiles before the events that need them), the event
    ledger and the caps are account-wide, and STATE may only follow once every
    sink's earlier records settled. It holds no per-window state of its own.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        logger: logging.Logger,
        referenced: Iterable[str] | None = None,
    ) -> None:
        """Set up the run's units from the target config.

        Args:
            config: the target config (defaults filled in by the SDK).
            logger: the target logger.
            referenced: objects some mapping references (`{ref: ...}`); their
                identity-map entries stay in memory, others' only on disk.
                None keeps every entry in memory.
        """
        self.ctx = ctx = RunContext(config, logger)
        self.counters = counters = RunCounters(ctx)
        self.rejects = rejects = Rejects(ctx, counters)
        self.tracker = ChangeTracker(ctx, counters)
        self.joins = IdentityJoiner(ctx, counters, rejects)
        self.refs = References(ctx, counters, rejects, self.joins, referenced)
        self.deletes = Deletes(ctx, counters, rejects, self.refs)
        self.dispatch = UploadDispatcher(ctx, counters, rejects, self.deletes)
        self._reconciled = False
        self._backfill_checked = False  # the once-only old-events warning

    # ------------------------------------------------------ shortcuts, close

    @property
    def store(self) -> StateStore:
        """The state store (opened on first use)."""
        return self.ctx.store

    @property
    def client(self) -> CleverTapClient:
        """The API client (created on first use)."""
        return self.ctx.client

    @property
    def overlaps_uploads(self) -> bool:
        """Whether windows handed over early upload while the input is still read.

        A live run, unless `identity_lookup: email` makes every window wait for
        all earlier ones (nothing would overlap: windows stay full).
        """
        return not self.ctx.any_dry_run and not self.joins.enabled

    def stream_stats(self, stream: str) -> StreamStats:
        """Counters of a stream.

        Args:
            stream: the stream.

        Returns:
            Its counters.
        """
        return self.counters.stream_stats(stream)

    def close(self) -> None:
        """Release files, threads, connections and the database.

        Windows still queued send nothing; running ones finish first.
        """
        self.dispatch.pipeline.close()
        self.ctx.close()
        self.rejects.close()

    # -------------------------------------------------------------- windows

    def process_window(self, entries: Sequence[Entry], *, final: bool) -> list[Entry]:
        """Build one window and hand it to the uploads; settle it once answered.

        Profiles go first, then events (oldest first); events already accepted
        (ledger) are suppressed; ambiguous event sends are reconciled. A live
        run returns once the window is queued (`pipeline.UploadPipeline`: a
        bounded number of windows and records in flight); `drain` waits for
        all of them. A dry run settles the window before returning.

        Args:
            entries: the records.
            final: this is the end-of-input drain (no more deferral).

        Returns:
            Records deferred until their referenced person is known.

        Raises:
            CleverTapError: on a fatal failure (the run must stop, no STATE).
        """
        if not self._reconciled and not self.ctx.any_dry_run:
            self.reconcile_previous_run()
        if self.joins.enabled:  # lookups see every earlier window's profiles
            self.drain()
        self.joins.prepare(entries)
        items, deletes, deferred = self._build(entries, final=final)
        items = self._screen(entries, self.joins.apply(entries, items))
        waiting = {id(e) for e in deferred}
        if self.ctx.any_dry_run:
            self.dispatch.send(entries, items, deletes)
            self._settled(entries, waiting)
        else:  # uploads while the next window is built (pipeline.py)
            self.dispatch.submit(
                entries, items, deletes, lambda: self._settled(entries, waiting)
            )
        return deferred

    def drain(self) -> None:
        """Wait until every window in flight settled (before any STATE).

        Raises:
            CleverTapError: a window failed (the run must stop, no STATE).
        """
        self.dispatch.pipeline.drain()

    def _settled(self, entries: Sequence[Entry], waiting: set[int]) -> None:
        """Settle a window once all its uploads are answered (the event stage)."""
        # per window (a dry run too), so the pending changes stay within a window
        self.ctx.store.flush_identities()
        # only now: a crash before this replays the records with the same previous
        # values, so their change events get the same keys (a dry run keeps them
        # in a temporary table of this run only)
        self.tracker.save(entries, waiting)
        accepted = Counter(
            entry.stream
            for entry in entries
            if not entry.accounted and id(entry) not in waiting
        )
        for stream, count in accepted.items():
            self.counters.bump(stream, "accepted", count)

    def _build(
        self, entries: Sequence[Entry], *, final: bool
    ) -> tuple[list[tuple[int, UploadItem]], list[tuple[int, str]], list[Entry]]:
        items: list[tuple[int, UploadItem]] = []
        deletes: list[tuple[int, str]] = []
        deferred: list[Entry] = []
        now = int(time.time())
        refs_unit, counters = self.refs, self.counters
        refs_unit.final_pass = final
        refs_unit.prefetch(entries)
        resolve, options = refs_unit.resolve, self.ctx.options
        for idx, entry in enumerate(entries):
            refs: dict[int, list[str]] = {}  # the identity map is fixed till registered
            try:
                if entry.record.get("IsDeleted") is True:
                    self.deletes.plan(idx, entry, items, deletes, now)
                    continue
                ctx = RecordContext(
                    entry.stream,
                    entry.key,
                    entry.mapping,
                    entry.schema,
                    options,
                    resolve,
                    now,
                    entry.previous,
                    entry.identities,
                    refs,
                )
                result = build_uploads(entry.record, ctx)
            except UnresolvedReference as exc:
                if not final:
                    deferred.append(entry)
                else:
                    refs_unit.register_persons(entry, refs)
                    refs_unit.unresolved(entry, exc)
                continue
            except RecordReject as exc:
                entry.accounted = True
                refs_unit.register_persons(entry, refs)
                self.rejects.reject(
                    entry.stream,
                    entry.key,
                    code=exc.code,
                    message=exc.message,
                    field_name=exc.field,
                    record=entry.record,
                )
                continue
            if result.dropped_fields or result.future_times:
                stats = counters.stream_stats(entry.stream)
                stats.dropped_fields.update(result.dropped_fields)
                stats.event_times_in_future += result.future_times
            for warning in result.warnings:
                counters.warn_once(
                    f"warn:{entry.stream}:{warning}",
                    "Stream %s: %s",
                    entry.stream,
                    warning,
                )
            refs_unit.register_persons(entry, refs)
            if result.skipped:
                counters.skip(entry.stream, result.skipped)
                entry.accounted = True  # accounted: not counted as accepted
                continue
            items.extend((idx, item) for item in result.items)
        return items, deletes, deferred

    def _screen(
        self, entries: Sequence[Entry], items: list[tuple[int, UploadItem]]
    ) -> list[tuple[int, UploadItem]]:
        """Drop events past the age limit, refuse keys/names past the caps."""
        out = screen.screen(
            items,
            self.ctx.account_caps,
            now=int(time.time()),
            max_age_days=self.ctx.max_event_age_days,
        )
        for idx, refusal in out.refused.items():
            self.rejects.reject_entry(
                entries[idx], refusal.code, refusal.message, refusal.name
            )
        kept = {idx for idx, _ in out.kept}
        for idx, count in out.too_old.items():
            entry = entries[idx]
            self.counters.stream_stats(entry.stream).old_events_skipped += count
            if idx not in kept and idx not in out.refused and not entry.accounted:
                entry.accounted = True
                self.counters.skip(entry.stream, "event_too_old")
        old = 0
        by_age = Counter((entries[idx].stream, bucket) for idx, bucket in out.buckets)
        for (stream, bucket), count in by_age.items():
            self.counters.stream_stats(stream).events_by_age[bucket] += count
            old += count if bucket != ages.LIVE else 0
        if old and not self._backfill_checked:
            self._backfill_checked = True
            self._warn_backfill()
        return out.kept

    def _warn_backfill(self) -> None:
        """Warn once (the first run that sends them) about events over 2 h old."""
        store = self.ctx.store
        if store.meta("backfill_warned") is not None:
            return
        store.set_meta("backfill_warned", "1")
        self.ctx.logger.warning(
            "Historical events: some events are over 2 hours old (they trigger "
            "no live campaigns) and those over 365 days do not show in "
            "CleverTap's dashboard; see events_by_age in the run summary and "
            "the README's backfill section (warned once)"
        )

    def reconcile_previous_run(self) -> None:
        """Settle events a previous run left pending or in doubt.

        Raises:
            CleverTapError: when they cannot be checked (nothing is sent then).
        """
        self._reconciled = True
        try:
            self.dispatch.events.settle_previous_run()
        except CleverTapError:
            self._reconciled = False
            raise
