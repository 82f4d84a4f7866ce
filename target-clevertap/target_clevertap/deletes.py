"""Deleted records (`IsDeleted`): ignored, a `<Stream> Deleted` event, or a delete.

The `deleted_records` setting chooses; profile deletes count as done only on a
`"status":"success"` answer, anything else rejects the records that asked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from target_clevertap.payloads import (
    RecordReject,
    build_deleted_event,
    resolve_identities,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from target_clevertap.counters import RunCounters
    from target_clevertap.loader import Entry
    from target_clevertap.payloads import UploadItem
    from target_clevertap.references import References
    from target_clevertap.rejects import Rejects
    from target_clevertap.run_context import RunContext

DELETE_CHUNK = 100


class Deletes:
    """Turns deleted records into events or profile deletes, and sends the deletes."""

    def __init__(
        self,
        ctx: RunContext,
        counters: RunCounters,
        rejects: Rejects,
        refs: References,
    ) -> None:
        """Set up.

        Args:
            ctx: the run context (settings, client).
            counters: skip and delete counters.
            rejects: the rejects file.
            refs: resolves the records' references.
        """
        self.ctx = ctx
        self.counters = counters
        self.rejects = rejects
        self.refs = refs

    def plan(
        self,
        idx: int,
        entry: Entry,
        items: list[tuple[int, UploadItem]],
        deletes: list[tuple[int, str]],
        now: int,
    ) -> None:
        """Add a deleted record's event to `items`, or its deletes to `deletes`.

        Args:
            idx: the record's position in the window.
            entry: the record.
            items: the window's upload items.
            deletes: the window's profile deletes (position, identity).
            now: current epoch seconds.

        Raises:
            RecordReject: when the record has no identity.
        """
        mode = self.ctx.deleted_records
        mapping = entry.mapping
        spec = (
            mapping.profile.identity
            if mapping.profile
            else (mapping.events[0].identity if mapping.events else None)
        )
        if mode == "ignore" or spec is None:
            self.counters.skip(entry.stream, "deleted")
            entry.accounted = True
            return
        if mode == "delete_profile" and (
            mapping.profile is None or spec.key != "identity"
        ):
            self.counters.skip(entry.stream, "deleted_not_a_profile")
            entry.accounted = True
            return
        identities = resolve_identities(entry.record, spec, self.refs.resolve)
        if not identities:
            msg = f"deleted record has no identity ({spec.fields[0]} is empty)"
            raise RecordReject(msg, code="missing_identity", field_name=spec.fields[0])
        if mode == "delete_profile":
            deletes.extend((idx, ident) for ident in identities)
            return
        for ident in identities:
            item = build_deleted_event(
                entry.record,
                stream=entry.stream,
                key=entry.key,
                identity=ident,
                id_key=spec.key,
                opts=self.ctx.options,
                now=now,
            )
            items.append((idx, item))

    def send(self, entries: Sequence[Entry], deletes: list[tuple[int, str]]) -> None:
        """Delete profiles; only a `"status":"success"` body counts as done.

        Args:
            entries: the window's records.
            deletes: (position, identity) pairs.
        """
        if not deletes:
            return
        unique = list(dict.fromkeys(ident for _, ident in deletes))
        for i in range(0, len(unique), DELETE_CHUNK):
            chunk = unique[i : i + DELETE_CHUNK]
            problem = self.ctx.client.delete_profiles(chunk)
            if problem is None:
                self.counters.bump(entries[0].stream, "profiles_deleted", len(chunk))
                continue
            wanted = set(chunk)
            for idx in dict.fromkeys(n for n, ident in deletes if ident in wanted):
                self.rejects.reject_entry(entries[idx], "delete_not_confirmed", problem)
