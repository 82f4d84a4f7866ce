"""The store's database and the event ledger: no event is sent twice.

The store is opened here (SQLite in `state_dir`, or PostgreSQL with `state_url`;
store_sql.py holds every SQL difference); `ledger.StateStore` adds the identity map
and change tracking on top. Every method is safe across threads.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from target_clevertap import store_sql

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from target_clevertap.store_sql import Backend

PENDING = "pending"
IN_DOUBT = "in_doubt"
ACCEPTED = "accepted"
REJECTED = "rejected"


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


def new_store_warning(store: EventLedger) -> str:
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


class EventLedger:
    """The store's database, its metadata and the event ledger."""

    def __init__(
        self,
        state_dir: str | Path,
        account_id: str,
        *,
        dry_run: bool = False,
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
        """Close the database."""
        with self._lock:
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
