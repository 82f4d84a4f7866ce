"""SQLite storage of the emulated org, with an in-memory mirror of the records.

Every record lives in the `records` table as JSON (the source of truth on disk) and in
a dict per sObject (what queries scan). Logs, Apex calls, bulk jobs and counters get
their own tables. All access goes through one lock: the ASGI app and test threads
share the store.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

Record = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY, sobject TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_sobject ON records (sobject, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS requests (seq INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT);
CREATE TABLE IF NOT EXISTS apex_calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT
);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, kind TEXT, data TEXT);
CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, data BLOB);
"""
# Fixed statements per table: no SQL is ever assembled from a name at run time.
_CLEAR = (
    "DELETE FROM records",
    "DELETE FROM counters",
    "DELETE FROM requests",
    "DELETE FROM apex_calls",
    "DELETE FROM jobs",
)
_LOG_INSERT = {
    "requests": "INSERT INTO requests (data) VALUES (?)",
    "apex_calls": "INSERT INTO apex_calls (data) VALUES (?)",
}
_LOG_SELECT = {
    "requests": "SELECT data FROM requests ORDER BY seq",
    "apex_calls": "SELECT data FROM apex_calls ORDER BY seq",
}


def _log_statement(statements: dict[str, str], table: str) -> str:
    statement = statements.get(table)
    if statement is None:
        msg = f"unknown log table {table}"
        raise ValueError(msg)
    return statement


class Store:
    """Records by sObject and Id, plus logs and counters, in one SQLite file."""

    def __init__(self, db_path: Path | str | None) -> None:
        """Open (or create) the database; `None` keeps everything in memory."""
        self.lock = threading.RLock()
        self._db = sqlite3.connect(
            ":memory:" if db_path is None else str(db_path),
            check_same_thread=False,
            isolation_level=None,
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._rows: dict[str, dict[str, Record]] = {}
        self._seq: dict[str, int] = {}
        self._where: dict[str, str] = {}
        self._next_seq = 1
        self._counters: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._load()

    def _load(self) -> None:
        self._rows.clear()
        self._where.clear()
        cursor = self._db.execute(
            "SELECT id, sobject, seq, data FROM records ORDER BY seq"
        )
        for record_id, sobject, seq, data in cursor:
            self._rows.setdefault(sobject, {})[record_id] = json.loads(data)
            self._seq[record_id] = seq
            self._where[record_id] = sobject
            self._next_seq = max(self._next_seq, seq + 1)
        for name, value in self._db.execute("SELECT name, value FROM counters"):
            self._counters[name] = int(value)

    def close(self) -> None:
        """Write pending counters and close the database."""
        with self.lock:
            self._flush_counters()
            self._db.close()

    # --- records -------------------------------------------------------------

    def is_empty(self) -> bool:
        """Whether no record is stored."""
        with self.lock:
            return not self._where

    def rows(self, sobject: str) -> list[Record]:
        """The stored records of one type, in insertion order (live dicts)."""
        with self.lock:
            return list(self._rows.get(sobject, {}).values())

    def get(self, record_id: str) -> tuple[str, Record] | None:
        """The sObject type and record for an Id, deleted ones included."""
        with self.lock:
            sobject = self._where.get(record_id)
            if sobject is None:
                return None
            return sobject, self._rows[sobject][record_id]

    def put_many(self, items: list[tuple[str, Record]]) -> None:
        """Insert or replace records, in one SQLite transaction."""
        with self.lock:
            params = []
            for sobject, record in items:
                record_id = record["Id"]
                seq = self._seq.get(record_id)
                if seq is None:
                    seq = self._next_seq
                    self._next_seq += 1
                    self._seq[record_id] = seq
                self._rows.setdefault(sobject, {})[record_id] = record
                self._where[record_id] = sobject
                params.append((record_id, sobject, seq, json.dumps(record)))
            with self._transaction():
                self._db.executemany(
                    "INSERT OR REPLACE INTO records (id, sobject, seq, data) "
                    "VALUES (?, ?, ?, ?)",
                    params,
                )
                self._flush_counters()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT, rolled back on error so the connection stays usable."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def clear(self) -> None:
        """Drop every record, log, job and counter."""
        with self.lock:
            with self._transaction():
                for statement in _CLEAR:
                    self._db.execute(statement)
            self._rows.clear()
            self._seq.clear()
            self._where.clear()
            self._counters.clear()
            self._dirty.clear()
            self._next_seq = 1

    # --- counters ------------------------------------------------------------

    def next_value(self, name: str) -> int:
        """Increment and return a named counter (Ids, auto-numbers, jobs).

        Counters live in memory and reach SQLite with the next write (records,
        jobs, logs), so seeding thousands of records stays one transaction.
        """
        with self.lock:
            value = self._counters.get(name, 0) + 1
            self._counters[name] = value
            self._dirty.add(name)
            return value

    def counter(self, name: str) -> int:
        """The current value of a counter (0 when unset)."""
        with self.lock:
            return self._counters.get(name, 0)

    def set_counter(self, name: str, value: int) -> None:
        """Set a counter (written at once)."""
        with self.lock:
            self._counters[name] = value
            self._dirty.add(name)
            self._flush_counters()

    def _flush_counters(self) -> None:
        if self._dirty:
            self._db.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [(name, self._counters[name]) for name in sorted(self._dirty)],
            )
            self._dirty.clear()

    # --- logs and jobs ---------------------------------------------------------

    def append(self, table: str, entry: dict[str, Any]) -> None:
        """Append a JSON entry to `requests` or `apex_calls`."""
        statement = _log_statement(_LOG_INSERT, table)
        with self.lock:
            self._db.execute(statement, (json.dumps(entry, default=str),))
            self._flush_counters()

    def entries(self, table: str) -> list[dict[str, Any]]:
        """Every entry of a log table, oldest first."""
        statement = _log_statement(_LOG_SELECT, table)
        with self.lock:
            cursor = self._db.execute(statement)
            return [json.loads(row[0]) for row in cursor]

    def save_job(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        """Store a bulk job's state."""
        with self.lock:
            self._db.execute(
                "INSERT OR REPLACE INTO jobs (id, kind, data) VALUES (?, ?, ?)",
                (job_id, kind, json.dumps(data)),
            )
            self._flush_counters()

    def load_job(self, job_id: str, kind: str) -> dict[str, Any] | None:
        """A stored bulk job, or None."""
        with self.lock:
            row = self._db.execute(
                "SELECT data FROM jobs WHERE id = ? AND kind = ?", (job_id, kind)
            ).fetchone()
            return json.loads(row[0]) if row else None

    def jobs(self, kind: str) -> list[dict[str, Any]]:
        """Every stored job of one kind."""
        with self.lock:
            cursor = self._db.execute("SELECT data FROM jobs WHERE kind = ?", (kind,))
            return [json.loads(row[0]) for row in cursor]
