"""References between records: who each record is about, and deferral.

A record that references a person not known yet (`{ref: WhoId}`) waits in its
sink (deferred) until the person is registered, or the input ends; then it is
settled as `no_person`, `account_without_contacts` or `unresolved_reference`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from target_clevertap.payloads import (
    RecordReject,
    UnresolvedReference,
    record_persons,
    resolve_identities,
    scalar_text,
)
from target_clevertap.refs import WHO_OBJECTS

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from target_clevertap.counters import RunCounters
    from target_clevertap.identity_join import IdentityJoiner
    from target_clevertap.loader import Entry
    from target_clevertap.refs import ComputedReferences
    from target_clevertap.rejects import Rejects
    from target_clevertap.run_context import RunContext

#: objects whose identity-map entries are always kept in memory
_PERSON_OBJECTS = frozenset({"Contact", "Lead"})


class References:
    """Registers records' people in the identity map and resolves references."""

    def __init__(
        self,
        ctx: RunContext,
        counters: RunCounters,
        rejects: Rejects,
        joins: IdentityJoiner,
        referenced: Iterable[str] | None,
    ) -> None:
        """Set up.

        Args:
            ctx: the run context (its state store holds the identity map).
            counters: skip counters and warnings.
            rejects: the rejects file.
            joins: the identity joiner (told of new people at read time).
            referenced: objects some mapping references (`{ref: ...}`); their
                identity-map entries stay in memory, others' only on disk.
                None keeps every entry in memory.
        """
        self.ctx = ctx
        self.counters = counters
        self.rejects = rejects
        self.joins = joins
        self.referenced = None if referenced is None else frozenset(referenced)
        #: identities computed from an Id (refs.py), for references the map has
        #: never seen, in the end-of-input pass only; set by the target
        self.computed: ComputedReferences | None = None
        #: the end-of-input pass is running (no more deferral)
        self.final_pass = False

    def register_identity(self, entry: Entry) -> None:
        """Remember a record's people at read time (Contact/Lead Ids, links).

        Args:
            entry: the record.
        """
        record, mapping = entry.record, entry.mapping
        rec_id = record.get("Id")
        if rec_id is None:
            return
        rec_id = str(rec_id)
        store = self.ctx.store
        if mapping.profile is not None:
            try:
                idents = resolve_identities(
                    record, mapping.profile.identity, store.resolve, entry.identities
                )
            except RecordReject:
                idents = []
            if idents:
                self.joins.note(entry, rec_id)  # before the map has seen it
                store.remember(entry.stream, rec_id, idents)
        if entry.stream == "Contact" and record.get("AccountId"):
            store.remember_account(rec_id, str(record["AccountId"]))
        conv = mapping.conversion_field
        if conv and record.get(conv):
            store.link(entry.stream, rec_id, "Contact", str(record[conv]))

    def prefetch(self, entries: Sequence[Entry]) -> None:
        """Read what a window's references will look up, one query per object.

        Args:
            entries: the window's records.
        """
        wanted: dict[str, set[str]] = {}
        for entry in entries:
            for spec in entry.mapping.ref_specs:
                value = entry.record.get(spec.value)
                if value is None:
                    continue
                ref = str(value).strip()
                if not ref:
                    continue
                obj = spec.ref_object or ""
                for target in WHO_OBJECTS if obj == "Who" else (obj,):
                    wanted.setdefault(target, set()).add(ref)
        wanted.pop("Account", None)  # its contacts are read per account
        if wanted:
            self.ctx.store.prefetch(wanted)

    @staticmethod
    def _record_id(entry: Entry) -> str | None:
        """The Id other records reference this one by (`Id`, else its key)."""
        rec_id = entry.record.get("Id")
        if type(rec_id) is str:  # the common case
            return rec_id
        if rec_id is not None:
            return scalar_text(rec_id)
        return None if entry.key.startswith("sha:") else entry.key

    def register_persons(
        self, entry: Entry, refs: dict[int, list[str]] | None = None
    ) -> None:
        """Remember who a settled record is about, for `{ref: <Stream>Id}`.

        Every mapped stream's records are registered (an empty list means "seen,
        names nobody"), across runs, so references to them can resolve.

        Args:
            entry: the record.
            refs: references found while building it (the identity map has
                not changed since).
        """
        rec_id = self._record_id(entry)
        if rec_id is None:
            return
        store = self.ctx.store
        persons = record_persons(
            entry.record, entry.mapping, store.resolve, entry.identities, refs
        )
        cache = (
            self.referenced is None
            or entry.stream in self.referenced
            or entry.stream in _PERSON_OBJECTS
        )
        if cache and store.known(entry.stream, rec_id) == persons:
            return  # remembered when the record was read (a Contact, a Lead)
        store.remember(entry.stream, rec_id, persons, cache=cache)

    def register_unresolved(self, entries: Sequence[Entry]) -> None:
        """Register records that still wait for a person at the end of the input.

        Before the final pass, so that a record referencing one of them is told
        apart (seen, names nobody: `no_person`) from a reference to a record
        that never came (`unresolved_reference`).

        Args:
            entries: the records still deferred.
        """
        for entry in entries:
            self.register_persons(entry)

    def resolve(self, obj: str, record_id: str) -> list[str]:
        """The people a referenced record names (the payloads' resolver).

        Args:
            obj: the referenced object.
            record_id: its Id.

        Returns:
            The identities.

        Raises:
            UnresolvedReference: when nobody is known (yet).
        """
        found = self.ctx.store.lookup(obj, record_id)
        if found is None and self.final_pass and self.computed is not None:
            found = self.computed.identities(obj, record_id)
        if not found:
            raise UnresolvedReference(obj, obj, record_id, seen=found is not None)
        return found

    def unresolved(self, entry: Entry, exc: UnresolvedReference) -> None:
        """Settle a record whose reference never resolved (end of input).

        Args:
            entry: the record.
            exc: what could not be resolved.
        """
        entry.accounted = True
        if exc.obj == "Account":  # nobody known at this account: no one to update
            self.counters.skip(entry.stream, "account_without_contacts")
            return
        if exc.seen:
            self.counters.skip(entry.stream, "no_person")
            self.counters.warn_once(
                f"no_person:{entry.stream}:{exc.obj}",
                "Stream %s: record %s skipped (no_person): the %s %s it references "
                "was seen but names nobody (e.g. a deal whose account has no "
                "contacts, or a record that was itself skipped or rejected); "
                "further ones are counted in the summary",
                entry.stream,
                entry.key,
                exc.obj,
                exc.value,
            )
            return
        who = "Contact or Lead" if exc.obj == "Who" else exc.obj
        self.rejects.reject(
            entry.stream,
            entry.key,
            code="unresolved_reference",
            message=f"{exc.obj} {exc.value} was never seen (no {who} record with "
            "that Id was loaded, in this run or an earlier one)",
            field_name=None,
            record=entry.record,
        )
