"""SQLite storage of the CleverTap emulator: profiles, events, cursors, logs.

One connection guarded by a lock: the ASGI handlers run on one event loop, the lock
keeps the connection safe if several threads ever share a store.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterator

# an event's columns: the events table, and events not yet visible (lagged_events)
_EVENT_COLUMNS = """\
    object_id TEXT NOT NULL,
    identity TEXT,
    evt_name TEXT NOT NULL,
    evt_key TEXT NOT NULL,
    ts INTEGER NOT NULL,
    evt_data TEXT NOT NULL DEFAULT '{}',
    session_props TEXT NOT NULL DEFAULT '{}',
    source TEXT NOT NULL DEFAULT 'upload'"""
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id TEXT NOT NULL UNIQUE,
    identity TEXT UNIQUE,
    fbid TEXT,
    gpid TEXT,
    profile_data TEXT NOT NULL DEFAULT '{}',
    platform_info TEXT NOT NULL DEFAULT '[]',
    created_ts INTEGER NOT NULL,
    updated_ts INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT 'upload'
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
"""
    + _EVENT_COLUMNS
    + """
);
CREATE INDEX IF NOT EXISTS events_by_key_ts ON events (evt_key, ts);
CREATE INDEX IF NOT EXISTS events_by_object ON events (object_id);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    object_id TEXT NOT NULL,
    token_id TEXT NOT NULL,
    token_type TEXT NOT NULL,
    UNIQUE (object_id, token_id)
);
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY,
    scheduled_day INTEGER NOT NULL,
    target TEXT NOT NULL,
    result TEXT,
    no_result TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    day INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    token TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    query TEXT NOT NULL,
    after_id INTEGER NOT NULL,
    max_id INTEGER NOT NULL,
    batch_size INTEGER NOT NULL,
    fetches INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS count_requests (
    req_id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    result TEXT NOT NULL,
    polls_left INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS lagged_events (
    id INTEGER PRIMARY KEY,
"""
    + _EVENT_COLUMNS
    + """,
    visible_at REAL NOT NULL,
    reads_left INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS request_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL,
    status INTEGER,
    records INTEGER,
    fault TEXT
);
"""
)

_RELEASE = (
    "INSERT INTO events (object_id, identity, evt_name, evt_key, ts, evt_data, "
    "session_props, source) SELECT object_id, identity, evt_name, evt_key, ts, "
    "evt_data, session_props, source FROM lagged_events "
)
_RELEASE_ALL = _RELEASE + "ORDER BY id"
_RELEASE_DUE = _RELEASE + "WHERE visible_at <= ?1 AND reads_left <= 0 ORDER BY id"
_WIPE = (
    "DELETE FROM profiles",
    "DELETE FROM events",
    "DELETE FROM lagged_events",
    "DELETE FROM tokens",
    "DELETE FROM campaigns",
    "DELETE FROM messages",
    "DELETE FROM cursors",
    "DELETE FROM count_requests",
    "DELETE FROM request_log",
)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


def dumps(value: object) -> str:
    """Serialise a value to compact JSON for a TEXT column.

    msgspec does it several times faster than `json`. It writes NaN and infinities
    as `null` and refuses what it cannot encode, so any output holding `null` (rare)
    and any refusal are left to `json.dumps`, which keeps those values as before.
    """
    try:
        text = _ENCODER.encode(value).decode()
    except (TypeError, ValueError, OverflowError):
        text = "null"
    # searched in the text: `b"null" in data` first tries the operand as an int
    # and formats the TypeError that fails, which costs more than the search
    if "null" in text:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text


def loads(text: str | bytes | None) -> Any:  # noqa: ANN401 - a JSON column holds any JSON value; callers rely on it
    """Parse a JSON TEXT column (None stays None).

    msgspec parses it faster; text it refuses (NaN, infinities written by
    `json.dumps`) is parsed by `json.loads`, which also raises as before.
    """
    if text is None:
        return None
    try:
        return _DECODER.decode(text)
    except ValueError:  # msgspec.DecodeError, or text it cannot read as UTF-8
        return json.loads(text)


class Store:
    """The emulator's SQLite database (WAL mode, one connection behind a lock)."""

    def __init__(self, path: str | Path) -> None:
        """Open (and create if needed) the database at `path`."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self, *, rollback: bool = False) -> Iterator[sqlite3.Connection]:
        """A locked transaction; `rollback=True` discards it (dry runs).

        It is rolled back as well when the block raises.

        Yields:
            The connection, inside the transaction.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("ROLLBACK" if rollback else "COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Run a read query under the lock."""
        with self._lock:
            return list(self._conn.execute(sql, params))

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one write statement (autocommit) and return the last row id."""
        with self._lock:
            cur = self._conn.execute(sql, params)
            return int(cur.lastrowid or 0)

    def hold_events(self, after_id: int, visible_at: float, reads: int) -> None:
        """Move events stored after `after_id` out of sight (ingestion lag)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO lagged_events SELECT *, ?, ? FROM events WHERE id > ?",
                (visible_at, reads, after_id),
            )
            conn.execute("DELETE FROM events WHERE id > ?", (after_id,))

    def release_events(self, now: float, *, export_read: bool, everything: bool) -> int:
        """Make held events visible once their time and export reads are up.

        Returns:
            How many events are still held.
        """
        where = "1" if everything else "visible_at <= ?1 AND reads_left <= 0"
        params: tuple[Any, ...] = () if everything else (now,)
        with self.transaction() as conn:
            if export_read:
                conn.execute("UPDATE lagged_events SET reads_left = reads_left - 1")
            conn.execute(_RELEASE_ALL if everything else _RELEASE_DUE, params)
            conn.execute(
                "DELETE FROM lagged_events WHERE " + where,  # noqa: S608 - one of two fixed conditions
                params,
            )
            row = conn.execute("SELECT COUNT(*) FROM lagged_events").fetchone()
        return int(row[0])

    def max_event_id(self) -> int:
        """The highest event row id (0 when there is none)."""
        row = self.query("SELECT COALESCE(MAX(id), 0) AS m FROM events")[0]
        return int(row["m"])

    def wipe(self) -> None:
        """Delete every row of every table."""
        with self.transaction() as conn:
            for statement in _WIPE:
                conn.execute(statement)

    def iter_rows(
        self, sql: str, params: tuple[Any, ...] = (), chunk: int = 2000
    ) -> Iterator[sqlite3.Row]:
        """Yield rows of a query chunk by chunk (the query must end with LIMIT ?).

        The last parameter is the chunk size; the first is the `id >` bound, advanced
        after each chunk.
        """
        after = params[0]
        rest = params[1:]
        while True:
            rows = self.query(sql, (after, *rest, chunk))
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1]["id"]
