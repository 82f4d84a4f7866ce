"""Durable state: the event ledger, the identity map, change tracking, caps.

By default one SQLite file per account in `state_dir` (created with mode 0600);
with `state_url`, a schema of a PostgreSQL database (store_sql.py holds every SQL
difference). Every method is safe across threads.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from target_clevertap import store_sql

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from target_clevertap.store_sql import Backend

K = TypeVar("K")
V = TypeVar("V")

PENDING = "pending"
IN_DOUBT = "in_doubt"
ACCEPTED = "accepted"
REJECTED = "rejected"

_ENCODER = msgspec.json.Encoder()
#: identity-map entries (and Lead links) kept in memory at most; the rest are
#: read back from the database, so memory does not grow with the input
IDENTITY_CACHE_SIZE = 30_000


def create_private_file(path: Path) -> None:
    """Create (or tighten) a file with mode 0600.

    Only regular files are tightened: a path such as /dev/null keeps its mode.

    Args:
        path: the file.
    """
    fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


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

    def pop(self, key: K) -> None:
        self._data.pop(key, None)


def open_backend(
    state_dir: str | Path,
    namespace: str,
    *,
    url: str | None = None,
    dry_run: bool = False,
) -> tuple[Backend, bool]:
    """Open (creating) a store's tables: PostgreSQL with `url`, else SQLite.

    Args:
        state_dir: the SQLite directory.
        namespace: the store's name: the PostgreSQL schema, or the SQLite file
            `target-clevertap-<namespace>.sqlite`.
        url: a `postgresql://` URL, or None.
        dry_run: add the dry run's temporary table of tracked values.

    Returns:
        The backend, and whether the store was new (it had no events table).

    Raises:
        StoreError: when the URL is not a PostgreSQL one.
    """
    backend: store_sql.PostgresBackend | store_sql.SQLiteBackend
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            msg = "state_url must be a postgresql:// URL"
            raise store_sql.StoreError(msg)
        backend = store_sql.PostgresBackend(url, namespace)
    else:
        directory = Path(state_dir).expanduser()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / f"target-clevertap-{namespace}.sqlite"
        create_private_file(path)
        backend = store_sql.SQLiteBackend(path)
    existed = backend.has_table("events")
    backend.create(temp_tracked=dry_run)
    return backend, not existed


def new_store_warning(store: StateStore) -> str:
    """The one line saying a store starts empty, and what that means.

    Args:
        store: a store whose `created` is true.

    Returns:
        The line (it names the store: a path, or a URL without its password).
    """
    return (
        f"state store {store.name} is new and empty (namespace {store.namespace}): "
        "duplicate protection covers only events sent from now on; events sent "
        "before with a store that was lost may be sent again, and references to "
        "records loaded before resolve only where the identity can be computed. "
        "Keep the store between runs (state_dir on persistent storage, or "
        "state_url); see the README's 'State store' section"
    )


class StateStore:
    """The event ledger, identity map, change tracking and caps of one account."""

    def __init__(  # noqa: PLR0913 - keyword-only options
        self,
        state_dir: str | Path,
        account_id: str,
        *,
        dry_run: bool = False,
        cache_size: int = IDENTITY_CACHE_SIZE,
        url: str | None = None,
        namespace: str | None = None,
    ) -> None:
        """Open (creating) the store.

        Args:
            state_dir: the directory (SQLite).
            account_id: the CleverTap account (one store per account, unless
                `namespace` names another).
            dry_run: tracked values saved in this run only live in a temporary
                table (gone when the store closes), never in the store.
            cache_size: identity-map entries (and links) kept in memory at most.
            url: `state_url`: keep the store in this PostgreSQL database.
            namespace: `state_namespace`: the store's name (default: the
                account id): jobs with different namespaces never share state.
        """
        self.namespace = (
            store_sql.check_namespace(namespace)
            if namespace
            else store_sql.default_namespace(account_id)
        )
        self._sql, fresh = open_backend(
            state_dir, self.namespace, url=url, dry_run=dry_run
        )
        in_keys = self._sql.in_keys  # a fixed fragment of the backend
        self._statuses_sql = f"SELECT key, status FROM events WHERE key {in_keys}"  # noqa: S608 - fixed fragments
        self._times_sql = f"SELECT key, updated_at FROM events WHERE key {in_keys}"  # noqa: S608 - fixed fragments
        #: where the store lives, for messages (a path, or a URL without password)
        self.name = self._sql.name
        self.path = None if url else Path(self._sql.name)
        self._lock = threading.RLock()
        self.dry_run = dry_run
        #: the store holds no history: duplicate protection starts now
        self.created = fresh or (
            self.meta("created_at") is None
            and self._sql.execute("SELECT 1 FROM events LIMIT 1").fetchone() is None
        )
        if self.meta("created_at") is None:
            self.set_meta("created_at", str(int(time.time())))
        # memory is bounded: the caches by their size, the pending changes by
        # what was remembered since the last flush (one batch window)
        self._ident_cache: _LRU[tuple[str, str], list[str]] = _LRU(cache_size)
        self._link_cache: _LRU[tuple[str, str], tuple[str, str]] = _LRU(cache_size)
        #: references known to be absent from the identity map (a `Who` that is
        #: a Lead is first looked up as a Contact); remember() clears an entry
        self._absent: _LRU[tuple[str, ...], bool] = _LRU(cache_size)
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

    @property
    def backend(self) -> Backend:
        """The database (for the caps table; use it under `lock`)."""
        return self._sql

    @property
    def lock(self) -> threading.RLock:
        """The lock guarding the connection."""
        return self._lock

    def meta(self, name: str) -> str | None:
        """A remembered flag or value.

        Args:
            name: its name.

        Returns:
            The value, or None.
        """
        with self._lock:
            row = self._sql.execute(
                "SELECT value FROM meta WHERE name=?", (name,)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        """Remember a flag or value (not in a dry run).

        Args:
            name: its name.
            value: the value.
        """
        if self.dry_run:
            return
        with self._lock, self._sql.transaction():
            self._sql.execute(
                self._sql.upsert("meta", ("name", "value"), ("name",)), (name, value)
            )

    def sent_times(self, keys: Sequence[str]) -> dict[str, float]:
        """When event keys last changed status (pending = when they were sent).

        Args:
            keys: event keys.

        Returns:
            key -> epoch seconds.
        """
        with self._lock:
            rows = self._sql.execute(
                f"SELECT key, updated_at FROM events WHERE key {self._sql.in_keys}",  # noqa: S608 - a fixed fragment
                (self._sql.keys_param(keys),),
            ).fetchall()
        return {str(k): float(t) for k, t in rows}

    def close(self) -> None:
        """Flush and close the database."""
        with self._lock:
            self.flush_identities()
            self._sql.close()

    # ------------------------------------------------------------------ ledger

    def event_statuses(self, keys: Sequence[str]) -> dict[str, str]:
        """Current ledger status of event keys (absent keys are not returned).

        Args:
            keys: event keys.

        Returns:
            key -> status.
        """
        if not keys:
            return {}
        with self._lock:
            # all keys travel as one JSON array parameter (no SQL is built and
            # no limit on the number of bound variables applies)
            rows = self._sql.execute(
                f"SELECT key, status FROM events WHERE key {self._sql.in_keys}",  # noqa: S608 - a fixed fragment
                (self._sql.keys_param(keys),),
            ).fetchall()
        return dict(rows)

    def mark_pending(self, rows: Iterable[tuple[str, str, int, str]]) -> None:
        """Record events as pending, durably, before they are sent.

        Args:
            rows: (key, event name, ts, stream).
        """
        now = time.time()
        with self._lock, self._sql.transaction():
            self._sql.executemany(
                "INSERT INTO events(key, status, evt_name, ts, stream, updated_at) "
                "VALUES (?, 'pending', ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "status='pending', updated_at=excluded.updated_at",
                [(k, n, ts, s, now) for k, n, ts, s in rows],
            )

    def restore_accepted(self, rows: Sequence[tuple[str, str, int]]) -> int:
        """Record events found in CleverTap as accepted (a ledger rebuild).

        Args:
            rows: (key, event name, ts).

        Returns:
            How many rows were written.
        """
        now = time.time()
        with self._lock, self._sql.transaction():
            self._sql.executemany(
                "INSERT INTO events(key, status, evt_name, ts, stream, updated_at) "
                "VALUES (?, 'accepted', ?, ?, '(rebuilt)', ?) ON CONFLICT(key) DO "
                "UPDATE SET status='accepted', updated_at=excluded.updated_at",
                [(k, n, ts, now) for k, n, ts in rows],
            )
        return len(rows)

    def mark(self, keys: Iterable[str], status: str) -> None:
        """Set the status of event keys.

        Args:
            keys: event keys.
            status: the new status.
        """
        now = time.time()
        with self._lock, self._sql.transaction():
            self._sql.executemany(
                "UPDATE events SET status=?, updated_at=? WHERE key=?",
                [(status, now, k) for k in keys],
            )

    def forget(self, keys: Iterable[str]) -> None:
        """Drop keys that were checked and did not land (they may be sent again).

        Args:
            keys: event keys.
        """
        with self._lock, self._sql.transaction():
            self._sql.executemany(
                "DELETE FROM events WHERE key=?", [(k,) for k in keys]
            )

    def unsettled(self) -> list[tuple[str, str, int, str]]:
        """Events left pending or in doubt (by a crash or a lost reply).

        Returns:
            (key, event name, ts, status) rows.
        """
        with self._lock:
            rows = self._sql.execute(
                "SELECT key, evt_name, ts, status FROM events "
                "WHERE status IN ('pending', 'in_doubt') ORDER BY evt_name, ts"
            )
            return [(r[0], r[1], int(r[2]), r[3]) for r in rows.fetchall()]

    def count(self, status: str) -> int:
        """How many ledger keys have a status.

        Args:
            status: the status.

        Returns:
            The count.
        """
        with self._lock:
            row = self._sql.execute(
                "SELECT COUNT(*) FROM events WHERE status=?", (status,)
            ).fetchone()
        return int(row[0])

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

    def pending(self, obj: str, record_id: str) -> list[str] | None:
        """What was remembered for a record since the last flush, if anything.

        Args:
            obj: the object (stream) name.
            record_id: the record Id.

        Returns:
            The identities, or None.
        """
        with self._lock:
            return self._pending_idents.get((obj, record_id))

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
