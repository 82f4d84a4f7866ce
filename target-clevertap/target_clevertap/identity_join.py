"""`identity_lookup: email`: a new CRM person joins the app's profile with that email.

Before the first profile of a CRM person (one the identity map has never seen) is
sent, CleverTap's Get User Profile API is asked for the person's email:

- exactly one profile: the person's profiles, events and every reference to them
  go to that profile (its `identity`; its `objectId` when it has no identity);
- several profiles: the records about the person are rejected
  (`identity_ambiguous`), and the person is looked up again on the next run;
- none: the CRM profile is created as without the setting.

The answer is kept in the identity map (namespace `JOIN_OBJECT`, keyed by the CRM
identity, e.g. `SF_Contact_003...`), through its remember/lookup methods only, so
people seen before are never looked up again and an incremental run costs no lookup.
Upload items are rewritten after they are built: payload building stays pure.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from target_clevertap.client import READ_CONCURRENCY
from target_clevertap.payloads import (
    RecordReject,
    UploadItem,
    normalise_email,
    resolve_identities,
)

if TYPE_CHECKING:
    import re
    from collections.abc import Mapping, Sequence

    from target_clevertap.counters import RunCounters
    from target_clevertap.loader import Entry
    from target_clevertap.rejects import Rejects
    from target_clevertap.run_context import RunContext

#: the identity-map namespace of lookup answers: CRM identity -> [] (none),
#: ["identity", id] or ["objectId", guid] (joined), ["ambiguous", count]
JOIN_OBJECT = "$identity_join"
AMBIGUOUS = "ambiguous"
#: store meta flag: joins exist, so items are rewritten even with the setting off
META_FLAG = "identity_joins"
#: the record field holding the person's email (Salesforce Contact and Lead)
EMAIL_FIELD = "Email"
MODES = ("none", "email")


def join_target(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """The upload key and value that address a profile found by the lookup.

    Its `identity` when it has one: the Upload API finds the profile to update
    by "identity, FBID, GPID, or objectId" (upload-user-profiles-api), and the
    identity is the customer's own, stable id that events and the export join
    on. A profile without one (an app user known by device only) is addressed
    by its CleverTap ID, `objectId`, which the export may carry only inside
    `platformInfo` (clevertap-api.md 3.2).

    Args:
        record: a `record` of the Get User Profile answer.

    Returns:
        (key, value), or None when the record names neither.
    """
    identity = record.get("identity")
    if identity is not None and str(identity).strip():
        return "identity", str(identity).strip()
    object_id = record.get("objectId")
    if not object_id:
        devices = record.get("platformInfo")
        if isinstance(devices, list):
            object_id = next(
                (d.get("objectId") for d in devices if isinstance(d, dict)), None
            )
    if object_id is not None and str(object_id).strip():
        return "objectId", str(object_id).strip()
    return None


class IdentityJoiner:
    """Looks new CRM people up by email and points their uploads at the match."""

    def __init__(
        self, ctx: RunContext, counters: RunCounters, rejects: Rejects
    ) -> None:
        """Set up from the `identity_lookup` setting (`none` or `email`).

        Args:
            ctx: the run context (store, client, settings).
            counters: lookup counters and warnings.
            rejects: the rejects file.
        """
        self.ctx = ctx
        self.counters = counters
        self.rejects = rejects
        mode = str(ctx.config["identity_lookup"])
        # a local dry run sends nothing, so it asks nothing either
        self.enabled = mode == "email" and not ctx.dry_run
        self._fresh: set[str] = set()  # CRM identities first seen in this run
        #: identities of profiles the CRM import makes (`own_identity_patterns`);
        #: set by the target from its mappings
        self.own_patterns: tuple[re.Pattern[str], ...] = ()
        self._active: bool | None = None

    # ------------------------------------------------------------ read time

    def _crm_identity(self, entry: Entry) -> str | None:
        profile = entry.mapping.profile
        if profile is None:
            return None
        spec = profile.identity
        if spec.kind == "ref" or spec.key != "identity":
            return None
        try:
            idents = resolve_identities(
                entry.record, spec, self.ctx.store.resolve, entry.identities
            )
        except RecordReject:
            return None
        return idents[0] if len(idents) == 1 else None

    def note(self, entry: Entry, record_id: str) -> None:
        """At read time, before the identity map remembers the record.

        Args:
            entry: the record.
            record_id: its Id.
        """
        if not self.enabled:
            return
        ident = self._crm_identity(entry)
        if ident is None or ident in self._fresh:
            return
        if self.ctx.store.lookup(entry.stream, record_id) is None:
            self._fresh.add(ident)

    # ---------------------------------------------------------- window time

    def _decision(self, ident: str) -> list[str] | None:
        return self.ctx.store.lookup(JOIN_OBJECT, ident)

    def prepare(self, entries: Sequence[Entry]) -> None:
        """Look up the window's new people (and those still ambiguous).

        Args:
            entries: the window's records.
        """
        if not self.enabled:
            return
        wanted: dict[str, tuple[str, str]] = {}  # CRM identity -> (email, stream)
        for entry in entries:
            ident = self._crm_identity(entry)
            if ident is None or ident in wanted:
                continue
            if ident not in self._fresh:
                known = self._decision(ident)
                if not known or known[0] != AMBIGUOUS:
                    continue
            try:
                raw = entry.record.get(EMAIL_FIELD)
                email = None if raw is None else normalise_email(raw, EMAIL_FIELD)
            except RecordReject:
                email = None
            if email is None:
                self._fresh.discard(ident)  # nothing to look up: created as today
                continue
            wanted[ident] = (email, entry.stream)
        if not wanted:
            return
        emails = sorted({email for email, _ in wanted.values()})
        client = self.ctx.client
        with ThreadPoolExecutor(
            max_workers=READ_CONCURRENCY, thread_name_prefix="clevertap-lookup"
        ) as pool:
            found = dict(
                zip(emails, pool.map(client.profiles_by_email, emails), strict=True)
            )
        for ident, (email, stream) in wanted.items():
            self._decide(ident, stream, self._app_profiles(ident, found[email]))

    def _app_profiles(
        self, ident: str, matches: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The matches that are not profiles the CRM import itself made."""
        kept = []
        for match in matches:
            identity = str(match.get("identity") or "")
            if identity == ident or any(p.match(identity) for p in self.own_patterns):
                continue
            kept.append(match)
        return kept

    def _decide(self, ident: str, stream: str, matches: list[dict[str, Any]]) -> None:
        store = self.ctx.store
        stats = self.counters.stream_stats(stream)
        stats.identity_lookups += 1
        self._fresh.discard(ident)
        target = join_target(matches[0]) if len(matches) == 1 else None
        if len(matches) > 1:
            store.remember(JOIN_OBJECT, ident, [AMBIGUOUS, str(len(matches))])
            self._active = True
            return
        if target is None:
            if matches:
                self.counters.warn_once(
                    "join:no_key",
                    "identity_lookup: a profile found by email has neither identity "
                    "nor objectId; the CRM profile is created as usual",
                )
            store.remember(JOIN_OBJECT, ident, [])
            return
        store.remember(JOIN_OBJECT, ident, list(target))
        store.set_meta(META_FLAG, "1")
        self._active = True
        stats.joined_existing_profiles += 1

    def _is_active(self) -> bool:
        if self._active is None:
            self._active = self.enabled or self.ctx.store.meta(META_FLAG) == "1"
        return self._active

    def apply(
        self, entries: Sequence[Entry], items: list[tuple[int, UploadItem]]
    ) -> list[tuple[int, UploadItem]]:
        """Point uploads of joined people at their profile; hold ambiguous ones.

        A record with an upload for an ambiguous person is rejected (once); its
        uploads for other people still go (a replay resends them harmlessly:
        profiles are upserts, events are kept from going twice by the ledger).

        Args:
            entries: the window's records.
            items: the built uploads, by record position.

        Returns:
            The uploads to send.
        """
        if not items or not self._is_active():
            return items
        out: list[tuple[int, UploadItem]] = []
        held: dict[int, str] = {}
        for idx, item in items:
            ident = item.payload.get("identity")
            known = None if ident is None else self._decision(str(ident))
            if not known:
                out.append((idx, item))
                continue
            if known[0] == AMBIGUOUS:
                held.setdefault(idx, known[1])
                continue
            key, value = known
            payload = {
                (key if name == "identity" else name): (
                    value if name == "identity" else val
                )
                for name, val in item.payload.items()
            }
            out.append((idx, dataclasses.replace(item, payload=payload)))
        for idx, count in held.items():
            entry = entries[idx]
            first = not entry.accounted
            entry.accounted = True
            self.rejects.reject(
                entry.stream,
                entry.key,
                code="identity_ambiguous",
                message=f"{count} CleverTap profiles have this person's email: "
                "nothing is written until one does (identity_lookup: email)",
                field_name=EMAIL_FIELD if EMAIL_FIELD in entry.record else None,
                record=entry.record,
                count_record=first,
            )
        return out
