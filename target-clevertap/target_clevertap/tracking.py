"""Change tracking: what a record's tracked fields held when it was last seen."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from target_clevertap.exprlang import tracked_value
from target_clevertap.payloads import epoch_seconds, scalar_text

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from target_clevertap.counters import RunCounters
    from target_clevertap.loader import Entry
    from target_clevertap.run_context import RunContext


@dataclass(frozen=True)
class Tracked:
    """A record version's tracked values, to remember once the record settles."""

    key: str  # the record key, or `<track_key>=<value>`
    version: int | None
    values: dict[str, Any]
    seq: int


class ChangeTracker:
    """Notes previous values at read time; remembers new ones once settled."""

    def __init__(self, ctx: RunContext, counters: RunCounters) -> None:
        """Set up.

        Args:
            ctx: the run context (its state store remembers the values).
            counters: for the once-only warnings.
        """
        self.ctx = ctx
        self.counters = counters
        self._lock = threading.Lock()
        self._tracked_mem: dict[tuple[str, str], Tracked] = {}
        self._track_seq = 0

    def track(self, entry: Entry) -> None:
        """Change tracking at read time: note the previous values of a record.

        Reads what was remembered for (stream, record key), in this run or an
        earlier one, and notes the record's own values for the next version. A
        record older than the remembered version (a replay of old input) sees
        no previous values (so `changed()` is false) and changes nothing.

        Args:
            entry: the record.
        """
        fields = entry.mapping.tracked_fields
        if not fields:
            return
        key = entry.key
        if entry.mapping.track_key:
            value = entry.record.get(entry.mapping.track_key)
            if value is None or not str(value).strip():
                return
            key = f"{entry.mapping.track_key}={scalar_text(value).strip()}"
        if key.startswith("sha:"):
            self.counters.warn_once(
                f"track:{entry.stream}",
                "Stream %s: change tracking needs key properties (or track_key); "
                "records without them never count as changed",
                entry.stream,
            )
            return
        slot = (entry.stream, key)
        prior: tuple[int | None, dict[str, Any]] | None
        with self._lock:
            mem = self._tracked_mem.get(slot)
            prior = (mem.version, mem.values) if mem else None
        if prior is None:
            prior = self.ctx.store.tracked(entry.stream, key)
        version = self._version(entry)
        if prior is not None:
            old_version, old_values = prior
            if (
                version is not None
                and old_version is not None
                and version < old_version
            ):
                return  # stale: an older version than the one remembered
            entry.previous = old_values
        current = {
            name: tracked_value(entry.record[name])
            for name in sorted(fields)
            if name in entry.record
        }
        merged = {**(prior[1] if prior else {}), **current}
        if version is None and prior is not None:
            version = prior[0]
        with self._lock:
            self._track_seq += 1
            tracked = Tracked(key, version, merged, self._track_seq)
            self._tracked_mem[slot] = tracked
        entry.track = tracked

    @staticmethod
    def _version(entry: Entry) -> int | None:
        for name in entry.mapping.version_fields():
            value = entry.record.get(name)
            if value is not None:
                return epoch_seconds(value)
        return None

    def save(self, entries: Sequence[Entry], waiting: set[int]) -> None:
        """Remember tracked values of the settled records (latest versions only).

        What is saved leaves memory (the store answers for it from then on), so
        only the tracked values of unsettled records stay in memory.

        Args:
            entries: the window's records.
            waiting: ids of the records deferred (not settled).
        """
        rows: list[tuple[str, str, int | None, Mapping[str, Any]]] = []
        # a slot with a record still waiting keeps its older memory: a crash now
        # must not make the waiting record look stale on the replay
        held = {
            (e.stream, e.track.key)
            for e in entries
            if e.track is not None and id(e) in waiting
        }
        with self._lock:
            for entry in entries:
                tracked = entry.track
                if tracked is None or (entry.stream, tracked.key) in held:
                    continue
                latest = self._tracked_mem.get((entry.stream, tracked.key))
                if latest is not None and latest.seq == tracked.seq:
                    rows.append(
                        (entry.stream, tracked.key, tracked.version, tracked.values)
                    )
            if rows:
                self.ctx.store.save_tracked(rows)
            for stream, key, _version, _values in rows:
                self._tracked_mem.pop((stream, key), None)
