"""Where the state store's tables live: SQLite in `state_dir`, or PostgreSQL.

`StateStore` (ledger.py) and the caps counters speak to one small interface, a
backend, and every SQL difference between the two databases lives here:
placeholders (`?` is written everywhere; PostgreSQL gets `%s`), upserts, "key in
this list" queries, column types and schema creation. psycopg is imported only
when a `state_url` is configured, so SQLite runs never load it.

PostgreSQL keeps each store in a schema of its own (the namespace), so several
jobs can share one database; a session advisory lock keeps two runs from using
the same namespace at once (it is released when the run ends, or dies).
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import zlib
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from target_clevertap.client import CleverTapError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from contextlib import AbstractContextManager
    from pathlib import Path

#: the tables; `{int}` and `{real}` are the database's 64-bit integer and float,
#: `{keyed}` what makes a table one B-tree on its primary key (SQLite's WITHOUT
#: ROWID: an identity-map row is written once, not to a table and its key index;
#: stores made before keep their tables, which answer the same queries)
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    evt_name TEXT NOT NULL,
    ts {int} NOT NULL,
    stream TEXT NOT NULL,
    updated_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS events_status ON events(status);
CREATE TABLE IF NOT EXISTS identities (
    obj TEXT NOT NULL,
    id TEXT NOT NULL,
    idents TEXT NOT NULL,
    PRIMARY KEY (obj, id)
){keyed};
CREATE TABLE IF NOT EXISTS contact_account (
    contact_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL
){keyed};
CREATE INDEX IF NOT EXISTS contact_account_acc ON contact_account(account_id);
CREATE TABLE IF NOT EXISTS links (
    obj TEXT NOT NULL,
    id TEXT NOT NULL,
    to_obj TEXT NOT NULL,
    to_id TEXT NOT NULL,
    PRIMARY KEY (obj, id)
){keyed};
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tracked (
    stream TEXT NOT NULL,
    key TEXT NOT NULL,
    version {int},
    vals TEXT NOT NULL,
    PRIMARY KEY (stream, key)
);
CREATE TABLE IF NOT EXISTS sent_names (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
"""

TRACKED_DRY = """
CREATE TEMP TABLE IF NOT EXISTS tracked_dry (
    stream TEXT NOT NULL,
    key TEXT NOT NULL,
    version {int},
    vals TEXT NOT NULL,
    PRIMARY KEY (stream, key)
)
"""

#: a namespace is a PostgreSQL schema name (quoted) and part of a file name
NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$")


class StoreError(CleverTapError):
    """The state store cannot be opened or used (the message holds no secret)."""


class Cursor(Protocol):
    """What a query returns."""

    def fetchone(self) -> Any:  # noqa: ANN401 - a row of any columns, or None
        """The next row."""

    def fetchall(self) -> list[Any]:
        """The remaining rows."""


class Backend(Protocol):
    """One database connection holding a store's tables."""

    #: the store, for messages: a file path, or a URL without its password
    name: str
    #: `key IN (...)` against one parameter made by `keys_param`
    in_keys: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement (`?` placeholders)."""

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> object:
        """Run one statement per row."""

    def transaction(self) -> AbstractContextManager[Any]:
        """Commit on success, roll back on an exception."""

    def keys_param(self, keys: Sequence[str]) -> object:
        """The parameter for `in_keys`."""

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """INSERT of `columns` that replaces the row with the same `key`."""

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        """INSERT that leaves an existing row alone."""

    def has_table(self, table: str) -> bool:
        """Whether the store already has the table."""

    def close(self) -> None:
        """Close the connection."""


def default_namespace(account_id: str) -> str:
    """The namespace of an account's store when `state_namespace` is not set.

    Args:
        account_id: the CleverTap account.

    Returns:
        The account id with characters outside [A-Za-z0-9_-] made `_`.
    """
    return re.sub(r"[^A-Za-z0-9_-]", "_", account_id)[:63] or "account"


def check_namespace(namespace: str) -> str:
    """The namespace, or a StoreError naming the rule it breaks.

    Args:
        namespace: the configured `state_namespace`.

    Returns:
        The namespace.

    Raises:
        StoreError: when it is not 1-63 letters, digits, `_` or `-`.
    """
    if not NAMESPACE_PATTERN.match(namespace):
        msg = (
            f"state_namespace {namespace!r} must be 1-63 letters, digits, '_' or "
            "'-' (not starting with '-')"
        )
        raise StoreError(msg)
    return namespace


def redact_url(url: str) -> str:
    """A database URL fit for logs: no password, no query parameters.

    Args:
        url: e.g. `postgresql://user:secret@host:5432/db?sslmode=require`.

    Returns:
        e.g. `postgresql://user@host:5432/db`.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "postgresql://(unparsable URL)"
    netloc = host if ":" not in host else f"[{host}]"
    if port:
        netloc = f"{netloc}:{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class SQLiteBackend:
    """The store as one SQLite file (mode 0600 is the caller's job)."""

    in_keys = "IN (SELECT value FROM json_each(?))"

    def __init__(self, path: Path) -> None:
        """Open the file.

        Args:
            path: the database file.
        """
        self.name = str(path)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA synchronous=FULL")
        # the connection's own methods: no wrapper on the hot paths
        self.execute = self._db.execute
        self.executemany = self._db.executemany

    def transaction(self) -> sqlite3.Connection:
        """The connection as a context manager (commit, or roll back)."""
        return self._db

    @staticmethod
    def keys_param(keys: Sequence[str]) -> str:
        """All keys as one JSON array (no limit on bound variables applies)."""
        return json.dumps(list(keys))

    @staticmethod
    def upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """`INSERT OR REPLACE` (the key columns are the table's primary key)."""
        del key
        marks = ", ".join("?" for _ in columns)
        return f"INSERT OR REPLACE INTO {table}({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 - fixed table and column names

    @staticmethod
    def insert_ignore(table: str, columns: Sequence[str]) -> str:
        """`INSERT OR IGNORE`."""
        marks = ", ".join("?" for _ in columns)
        return f"INSERT OR IGNORE INTO {table}({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 - fixed table and column names

    def has_table(self, table: str) -> bool:
        """Whether the file already has the table."""
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)
        ).fetchone()
        return row is not None

    def create(self, *, temp_tracked: bool) -> None:
        """Create the tables (and the dry run's temporary table).

        In one transaction: a new file is synced once, not once per table.
        """
        script = SCHEMA.format(int="INTEGER", real="REAL", keyed=" WITHOUT ROWID")
        try:
            self._db.executescript(f"BEGIN;\n{script}\nCOMMIT;")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.rollback()
            raise
        if temp_tracked:
            self._db.execute(TRACKED_DRY.format(int="INTEGER"))
        self._db.commit()

    def close(self) -> None:
        """Close the file."""
        self._db.close()


@functools.lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (the store's SQL has no other `?`/`%`)."""
    return sql.replace("?", "%s")


class PostgresBackend:
    """The store as one schema (the namespace) of a PostgreSQL database."""

    in_keys = "= ANY(?)"

    def __init__(self, url: str, namespace: str) -> None:
        """Connect, make the schema, take the namespace's run lock.

        Args:
            url: `postgresql://user:password@host:port/database`.
            namespace: the schema holding this store's tables.

        Raises:
            StoreError: when the server cannot be reached or used, or another
                run holds the namespace.
        """
        import psycopg  # noqa: PLC0415 - only runs with a state_url load it
        from psycopg import sql  # noqa: PLC0415

        self._psycopg = psycopg
        self._secret = urlsplit(url).password or ""
        self.name = f"{redact_url(url)} (schema {namespace})"
        self.namespace = namespace
        try:
            self._db = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=15,
                application_name="target-clevertap",
            )
        except psycopg.Error as exc:
            raise self._error(_CONNECT, exc) from None
        schema = sql.Identifier(namespace)
        try:
            with self._db.transaction():
                # one DDL at a time: jobs starting together do not race
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_DDL,))
                self._db.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema)
                )
            self._db.execute(sql.SQL("SET search_path TO {}").format(schema))
            row = self._db.execute(
                "SELECT pg_try_advisory_lock(%s, %s)",
                (_LOCK_RUN, zlib.crc32(namespace.encode()) - 2**31),
            ).fetchone()
        except psycopg.Error as exc:
            self._db.close()
            raise self._error(_PREPARE, exc) from None
        if not row or not row[0]:
            self._db.close()
            msg = (
                f"another target-clevertap run is using the state store {self.name}; "
                "runs sharing a state_namespace must not overlap (give each job "
                "its own state_namespace, or wait for the other run to end)"
            )
            raise StoreError(msg)

    def _error(self, what: str, exc: Exception) -> StoreError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
        text = str(text)
        if self._secret:
            text = text.replace(self._secret, "***")
        return StoreError(f"state store: {what} {self.name}: {text}")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement.

        Raises:
            StoreError: on a database error.
        """
        try:
            return self._db.execute(_pg_sql(sql), params)
        except self._psycopg.Error as exc:
            raise self._error(_QUERY, exc) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement per row (psycopg pipelines them).

        Raises:
            StoreError: on a database error.
        """
        try:
            with self._db.cursor() as cur:
                cur.executemany(_pg_sql(sql), list(rows))
        except self._psycopg.Error as exc:
            raise self._error(_WRITE, exc) from None

    def transaction(self) -> AbstractContextManager[Any]:
        """A database transaction (commit, or roll back on an exception)."""
        return _PgTransaction(self)

    @staticmethod
    def keys_param(keys: Sequence[str]) -> list[str]:
        """The keys as a text array."""
        return list(keys)

    @staticmethod
    def upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """`INSERT ... ON CONFLICT (key) DO UPDATE` of the other columns."""
        marks = ", ".join("?" for _ in columns)
        rest = [c for c in columns if c not in key]
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
        return (
            f"INSERT INTO {table}({', '.join(columns)}) VALUES ({marks}) "  # noqa: S608 - fixed table and column names
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
        )

    @staticmethod
    def insert_ignore(table: str, columns: Sequence[str]) -> str:
        """`INSERT ... ON CONFLICT DO NOTHING`."""
        marks = ", ".join("?" for _ in columns)
        return (
            f"INSERT INTO {table}({', '.join(columns)}) VALUES ({marks}) "  # noqa: S608 - fixed table and column names
            "ON CONFLICT DO NOTHING"
        )

    def has_table(self, table: str) -> bool:
        """Whether the namespace already has the table."""
        row = self.execute(
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            (self.namespace, table),
        ).fetchone()
        return row is not None

    def create(self, *, temp_tracked: bool) -> None:
        """Create the tables (and the dry run's temporary table)."""
        ddl = SCHEMA.format(int="BIGINT", real="DOUBLE PRECISION", keyed="")
        with self.transaction():
            self.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_DDL,))
            for statement in _statements(ddl):
                self.execute(statement)
        if temp_tracked:
            self.execute(TRACKED_DRY.format(int="BIGINT"))

    def close(self) -> None:
        """Close the connection (which releases the namespace's run lock)."""
        self._db.close()


_CONNECT = "cannot connect to"
_PREPARE = "cannot prepare"
_QUERY = "query failed on"
_WRITE = "write failed on"
_BEGIN = "transaction failed on"
_COMMIT = "commit failed on"

#: advisory lock keys: schema creation (all namespaces), and runs (per namespace)
_LOCK_DDL = 0x7C1E_5701
_LOCK_RUN = 0x7C1E


def _statements(script: str) -> Iterator[str]:
    for statement in script.split(";"):
        if statement.strip():
            yield statement.strip()


class _PgTransaction:
    """psycopg's transaction block, its errors turned into StoreError."""

    def __init__(self, backend: PostgresBackend) -> None:
        self._backend = backend
        self._block: Any = None

    def __enter__(self) -> object:
        self._block = self._backend._db.transaction()  # noqa: SLF001 - the backend's own helper
        try:
            return self._block.__enter__()
        except self._backend._psycopg.Error as exc:  # noqa: SLF001
            raise self._backend._error(_BEGIN, exc) from None  # noqa: SLF001

    def __exit__(self, *exc_info: object) -> bool:
        try:
            return bool(self._block.__exit__(*exc_info))
        except self._backend._psycopg.Error as exc:  # noqa: SLF001
            raise self._backend._error(_COMMIT, exc) from None  # noqa: SLF001
