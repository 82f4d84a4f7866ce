"""Durable state: the event ledger, the identity map, change tracking, caps.

By default one SQLite file per account in `state_dir` (created with mode 0600);
with `state_url`, a schema of a PostgreSQL database (store_sql.py holds every SQL
difference). `event_ledger.EventLedger` opens the store and keeps the ledger;
`StateStore` adds the identity map and change tracking. Every method is safe
across threads.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from target_clevertap.event_ledger import (
    ACCEPTED,
    IN_DOUBT,
    PENDING,
    REJECTED,
    EventLedger,
    create_private_file,
    new_store_warning,
    open_backend,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

__all__ = [
    "ACCEPTED",
    "IDENTITY_CACHE_SIZE",
    "IN_DOUBT",
    "LINK_CACHE_SIZE",
    "PENDING",
    "REJECTED",
    "StateStore",
    "create_private_file",
    "new_store_warning",
    "open_backend",
]

K = TypeVar("K")
V = TypeVar("V")

_ENCODER = msgspec.json.Encoder()
#: identity-map entries kept in memory at most (about 375 bytes each with their
#: keys: some 30 MB when full); the rest are read back from the database, so
#: memory does not grow with the input. Sized for a run's people: 40k Contacts,
#: 25k Leads and the 15k Opportunities their history references stay in memory
IDENTITY_CACHE_SIZE = 80_000
#: Lead links and references known to be absent kept in memory at most
LINK_CACHE_SIZE = 30_000


class _LRU(Generic[K, V]):
    """A mapping holding at most `size` entries, dropping the least recently used."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.size:
            self._data.popitem(last=False)

    def peek(self, key: K) -> V | None:
        """The value, leaving the order of use as it is."""
        return self._data.get(key)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data


class StateStore(EventLedger):
    """The event ledger, identity map, change tracking and caps of one account."""

    def __init__(  # noqa: PLR0913 - keyword-only options
        self,
        state_dir: str | Path,
        account_id: str,
        *,
        cache_size: int = IDENTITY_CACHE_SIZE,
        dry_run: bool = False,
        url: str | None = None,
        namespace: str | None = None,
    ) -> None:
        """Open (creating) the store; the arguments are `EventLedger`'s.

        `cache_size` bounds the identity-map entries kept in memory (links and
        references known absent: at most `LINK_CACHE_SIZE` of each).
        """
        super().__init__(
            state_dir, account_id, dry_run=dry_run, url=url, namespace=namespace
        )
        # memory is bounded: the caches by their size, the pending changes by
        # what was remembered since the last flush (one batch window)
        self._ident_cache: _LRU[tuple[str, str], list[str]] = _LRU(cache_size)
        small = min(cache_size, LINK_CACHE_SIZE)
        self._link_cache: _LRU[tuple[str, str], tuple[str, str]] = _LRU(small)
        #: references known to be absent from the identity map (a `Who` that is
        #: a Lead is first looked up as a Contact); remember() clears an entry
        self._absent: _LRU[tuple[str, ...], bool] = _LRU(small)
        self._pending_idents: dict[tuple[str, str], list[str]] = {}
        self._pending_accts: dict[str, str] = {}
        #: account -> contacts among the pending account changes (the database
        #: answers for the flushed ones, through its index on account_id)
        self._pending_by_acct: dict[str, set[str]] = {}
        self._pending_links: dict[tuple[str, str], tuple[str, str]] = {}
        #: objects that have links at all (only converted Leads do): lookups of
        #: other objects skip the links table
        self._linked_objs = {
            str(r[0])
            for r in self._sql.execute("SELECT DISTINCT obj FROM links").fetchall()
        }

    def close(self) -> None:
        """Flush the identity map and close the database."""
        with self._lock:
            self.flush_identities()
            super().close()

    # ------------------------------------------------------------ identity map

    def remember(
        self, obj: str, record_id: str, identities: list[str], *, cache: bool = True
    ) -> None:
        """Remember who a record (Contact, Lead, Opportunity, Case...) is about.

        An empty list records that the record was seen and names nobody.

        Args:
            obj: the object (stream) name.
            record_id: the record Id.
            identities: its CleverTap identities (may be empty).
            cache: also keep it in memory (for objects references point to);
                otherwise it is only written to the database.
        """
        with self._lock:
            if cache:
                self._ident_cache.put((obj, record_id), identities)
            else:
                self._ident_cache.pop((obj, record_id))
            self._absent.pop((obj, record_id))
            self._pending_idents[(obj, record_id)] = identities

    def known(self, obj: str, record_id: str) -> list[str] | None:
        """What the map holds for a record, as far as memory tells (no query).

        The pending change, else the cached entry: a cached entry that is not
        pending was written by an earlier flush or read from the database, so
        remembering the same again would write nothing new.

        Args:
            obj: the object (stream) name.
            record_id: the record Id.

        Returns:
            The identities, or None when memory does not know.
        """
        with self._lock:
            pending = self._pending_idents.get((obj, record_id))
            if pending is not None:
                return pending
            return self._ident_cache.peek((obj, record_id))

    def remember_account(self, contact_id: str, account_id: str) -> None:
        """Remember a Contact's Account (for AccountId references).

        Args:
            contact_id: the Contact Id.
            account_id: the Account Id.
        """
        with self._lock:
            old = self._pending_accts.get(contact_id)
            if old is not None and old != account_id:
                self._pending_by_acct[old].discard(contact_id)
            self._pending_accts[contact_id] = account_id
            self._pending_by_acct.setdefault(account_id, set()).add(contact_id)

    def link(self, obj: str, record_id: str, to_obj: str, to_id: str) -> None:
        """Link a record to another (a converted Lead to its Contact).

        Args:
            obj: the object.
            record_id: its Id.
            to_obj: the target object.
            to_id: the target Id.
        """
        with self._lock:
            self._absent.pop(("link", obj, record_id))
            self._link_cache.put((obj, record_id), (to_obj, to_id))
            self._pending_links[(obj, record_id)] = (to_obj, to_id)
            self._linked_objs.add(obj)

    def flush_identities(self) -> None:
        """Write the identity-map changes remembered since the last flush."""
        with self._lock, self._sql.transaction():
            self._sql.executemany(
                self._sql.upsert("identities", ("obj", "id", "idents"), ("obj", "id")),
                [
                    (o, i, _ENCODER.encode(v).decode("utf-8"))
                    for (o, i), v in self._pending_idents.items()
                ],
            )
            self._sql.executemany(
                self._sql.upsert(
                    "contact_account", ("contact_id", "account_id"), ("contact_id",)
                ),
                list(self._pending_accts.items()),
            )
            self._sql.executemany(
                self._sql.upsert(
                    "links", ("obj", "id", "to_obj", "to_id"), ("obj", "id")
                ),
                [(o, i, *v) for (o, i), v in self._pending_links.items()],
            )
            self._pending_idents.clear()
            self._pending_accts.clear()
            self._pending_by_acct.clear()
            self._pending_links.clear()

    def prefetch(self, wanted: Mapping[str, Iterable[str]]) -> None:
        """Read the identity-map rows a window's references will look up.

        One query per object (and one for its links) instead of one per miss;
        what is found goes to the caches, what is not is noted absent, as the
        lookups themselves would do. Rows already cached, pending or known
        absent are not read.

        Args:
            wanted: object -> the Ids references to it name.
        """
        with self._lock:
            for obj, ids in wanted.items():
                todo = [
                    i
                    for i in ids
                    if (obj, i) not in self._ident_cache
                    and (obj, i) not in self._pending_idents
                    and (obj, i) not in self._absent
                ]
                if todo:
                    self._prefetch_identities(obj, todo)
                if obj in self._linked_objs:
                    todo = [
                        i
                        for i in ids
                        if (obj, i) not in self._pending_links
                        and (obj, i) not in self._link_cache
                        and ("link", obj, i) not in self._absent
                    ]
                    if todo:
                        self._prefetch_links(obj, todo)

    def _prefetch_identities(self, obj: str, ids: list[str]) -> None:
        self._prefetch_rows(
            "SELECT id, idents FROM identities WHERE obj=? AND id ",
            obj,
            ids,
            lambda row: json.loads(row[1]),
            self._ident_cache,
            lambda record_id: (obj, record_id),
        )

    def _prefetch_links(self, obj: str, ids: list[str]) -> None:
        self._prefetch_rows(
            "SELECT id, to_obj, to_id FROM links WHERE obj=? AND id ",
            obj,
            ids,
            lambda row: (str(row[1]), str(row[2])),
            self._link_cache,
            lambda record_id: ("link", obj, record_id),
        )

    def _prefetch_rows(  # noqa: PLR0913, PLR0917 - one query's pieces, positional
        self,
        query: str,
        obj: str,
        ids: list[str],
        decode: Callable[[Any], V],
        cache: _LRU[tuple[str, str], V],
        absent_key: Callable[[str], tuple[str, ...]],
    ) -> None:
        """One query for `ids` of `obj`: rows found go to `cache`, the rest absent."""
        rows = self._sql.execute(
            query + self._sql.in_keys, (obj, self._sql.keys_param(ids))
        ).fetchall()
        found = {str(row[0]): row for row in rows}
        for record_id in ids:
            row = found.get(record_id)
            if row is None:
                self._absent.put(absent_key(record_id), value=True)
            else:
                cache.put((obj, record_id), decode(row))

    def _identities(self, obj: str, record_id: str) -> list[str] | None:
        cached = self._ident_cache.get((obj, record_id))
        if cached is not None:
            return cached
        pending = self._pending_idents.get((obj, record_id))
        if pending is not None:
            return pending
        if self._absent.get((obj, record_id)):
            return None
        row = self._sql.execute(
            "SELECT idents FROM identities WHERE obj=? AND id=?", (obj, record_id)
        ).fetchone()
        if row is None:
            self._absent.put((obj, record_id), value=True)
            return None
        found: list[str] = json.loads(row[0])
        self._ident_cache.put((obj, record_id), found)
        return found

    def _linked(self, obj: str, record_id: str) -> tuple[str, str] | None:
        if obj not in self._linked_objs:
            return None
        hit = self._pending_links.get((obj, record_id)) or self._link_cache.get(
            (obj, record_id)
        )
        if hit is not None:
            return hit
        if self._absent.get(("link", obj, record_id)):
            return None
        row = self._sql.execute(
            "SELECT to_obj, to_id FROM links WHERE obj=? AND id=?", (obj, record_id)
        ).fetchone()
        if row is None:
            self._absent.put(("link", obj, record_id), value=True)
            return None
        found = (str(row[0]), str(row[1]))
        self._link_cache.put((obj, record_id), found)
        return found

    def _account_contacts(self, account_id: str) -> set[str]:
        """The Contacts whose latest known Account is `account_id` (indexed)."""
        contacts = set(self._pending_by_acct.get(account_id, ()))
        contacts |= {
            str(r[0])
            for r in self._sql.execute(
                "SELECT contact_id FROM contact_account WHERE account_id=?",
                (account_id,),
            ).fetchall()
            if self._pending_accts.get(str(r[0]), account_id) == account_id
        }
        return contacts

    def resolve(self, obj: str, record_id: str) -> list[str]:
        """The CleverTap identities a reference points to (empty when none).

        Args:
            obj: Contact | Lead | Who | Account | Opportunity | any stream name.
            record_id: the referenced Id.

        Returns:
            The identities (empty when unknown or when the record names nobody).
        """
        return self.lookup(obj, record_id) or []

    def lookup(self, obj: str, record_id: str) -> list[str] | None:
        """The identities a reference points to, telling unseen from nobody.

        `Who` tries Contact then Lead; a converted Lead resolves to its Contact
        (when the Contact is known); `Account` fans out to the account's contacts.

        Args:
            obj: Contact | Lead | Who | Account | Opportunity | any stream name.
            record_id: the referenced Id.

        Returns:
            The identities; an empty list when the record was seen (in this run
            or an earlier one) and names nobody; None when it was never seen.
        """
        with self._lock:
            if obj == "Who":
                contact = self.lookup("Contact", record_id)
                if contact:
                    return contact
                lead = self.lookup("Lead", record_id)
                if lead:
                    return lead
                return None if contact is None and lead is None else []
            link = self._linked(obj, record_id)
            if link is not None:
                linked = self.lookup(*link)
                if linked:
                    return linked
            if obj != "Account":
                return self._identities(obj, record_id)
            result: list[str] = []
            for contact_id in sorted(self._account_contacts(record_id)):
                for ident in self.resolve("Contact", contact_id):
                    if ident not in result:
                        result.append(ident)
            return result or None

    # --------------------------------------------------------- change tracking

    def tracked(
        self, stream: str, key: str
    ) -> tuple[int | None, dict[str, Any]] | None:
        """The last remembered values of a record's tracked fields.

        Args:
            stream: the stream.
            key: the record key.

        Returns:
            (version, field -> value), or None when the record was never tracked.
        """
        with self._lock:
            row = None
            if self.dry_run:
                row = self._sql.execute(
                    "SELECT version, vals FROM tracked_dry WHERE stream=? AND key=?",
                    (stream, key),
                ).fetchone()
            if row is None:
                row = self._sql.execute(
                    "SELECT version, vals FROM tracked WHERE stream=? AND key=?",
                    (stream, key),
                ).fetchone()
        if row is None:
            return None
        values: dict[str, Any] = json.loads(row[1])
        return (None if row[0] is None else int(row[0])), values

    def save_tracked(
        self, rows: Iterable[tuple[str, str, int | None, Mapping[str, Any]]]
    ) -> None:
        """Durably remember tracked values (after their records were settled).

        In a dry run they go to a temporary table: later records of this run
        see them, the file (and so the next run) does not.

        Args:
            rows: (stream, record key, version, field -> value).
        """
        table = "tracked_dry" if self.dry_run else "tracked"
        with self._lock, self._sql.transaction():
            self._sql.executemany(
                self._sql.upsert(
                    table, ("stream", "key", "version", "vals"), ("stream", "key")
                ),
                [(s, k, v, json.dumps(dict(vals))) for s, k, v, vals in rows],
            )
