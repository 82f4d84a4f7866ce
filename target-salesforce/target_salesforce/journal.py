"""The insert journal: which `action: insert` rows Salesforce already stored.

Salesforce has no idempotency key for inserts, and STATE is written only once
records are settled, so after a kill -9 the tap replays every record read after
the last STATE and an insert would store them twice. The journal (a small
SQLite file, mode 0600) remembers, per row stored: its stream and object, a
digest of the cells sent (`row_digest`), its Id, the run and the input line
(sequence number) it came from; and per Bulk 2.0 insert job whose results were
not read yet: its id, stream, object and columns. A later run that finds rows
of an earlier one skips records with the same stream, object and digest (one
per row) instead of inserting them again (`AlreadyInserted`): a row is only
ever matched by a record of the stream that stored it.

Rows leave the journal once a STATE covers them (`forget_covered`), or, rows of
earlier runs, when a run that read their stream ends normally
(`forget_earlier_runs`). Only one run may use a journal at a time:
`InsertJournal` holds an exclusive lock on `<path>.lock` while open.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Final

from target_salesforce.bulk import row_cells
from target_salesforce.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from target_salesforce.payloads import Prepared

DEFAULT_JOURNAL_PATH: Final = ".target-salesforce/insert-journal.sqlite3"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS rows (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    sobject TEXT NOT NULL,
    digest TEXT NOT NULL,
    sf_id TEXT,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_by_run ON rows (run_id, seq);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    sobject TEXT NOT NULL,
    columns TEXT NOT NULL,
    run_id TEXT NOT NULL
);
"""


# ------------------------------------------------------------------ pure helpers


def row_digest(columns: Sequence[str], cells: Sequence[str]) -> str:
    """The identity of one inserted row: sha256 of its non-empty cells by name.

    The cells are the Bulk CSV cells (`bulk.row_cells`); an empty cell means the
    field was not sent, so it is left out, and the names are sorted: the same
    record gives the same digest whatever other records shared its batch (and
    so its columns), through Collections or Bulk 2.0 alike.
    """
    parts = sorted(
        f"{len(c)}:{c}{len(v)}:{v}" for c, v in zip(columns, cells, strict=True) if v
    )
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


def item_digest(item: Prepared) -> str:
    """`row_digest` of a prepared insert item (its payload's own fields)."""
    columns = list(item.payload)
    return row_digest(columns, row_cells(columns, item))


def result_row_digest(columns: Sequence[str], row: Mapping[str, str]) -> str:
    """`row_digest` of a Bulk 2.0 result row, over the columns the job sent."""
    return row_digest(columns, [row.get(c, "") for c in columns])


@dataclasses.dataclass(frozen=True)
class JournalRow:
    """One stored row to remember: its digest, Id and input line."""

    digest: str
    sf_id: str | None
    seq: int


@dataclasses.dataclass(frozen=True)
class Scope:
    """Whose rows: the stream that stored them and its object."""

    stream: str
    sobject: str


class AlreadyInserted:
    """Rows earlier runs stored, by (stream, object, digest); each taken once."""

    def __init__(self, rows: Iterable[tuple[int, str, str, str, str | None]]) -> None:
        """Index rows given as (row id, stream, object, digest, Salesforce Id)."""
        self._rows: dict[
            tuple[Scope, str], collections.deque[tuple[int, str | None]]
        ] = collections.defaultdict(collections.deque)
        self._left = 0
        for rowid, stream, sobject, digest, sf_id in rows:
            self._rows[Scope(stream, sobject), digest].append((rowid, sf_id))
            self._left += 1

    def __len__(self) -> int:
        """Rows not taken yet."""
        return self._left

    def take(self, scope: Scope, digest: str) -> tuple[int, str | None] | None:
        """Take one row of (scope, digest): (row id, Id), or None if none is left."""
        queue = self._rows.get((scope, digest))
        if not queue:
            return None
        self._left -= 1
        return queue.popleft()


# ------------------------------------------------------------------ the file


class InsertJournal:
    """The journal file of one run (thread-safe; Bulk workers write to it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (or create) the journal and lock it for this run.

        Raises:
            ConfigurationError: when another run holds the journal, or the
                file cannot be opened as a journal.
        """
        self.path = Path(path)
        self.run_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            msg = f"insert journal {self.path} cannot be created: {exc}"
            raise ConfigurationError(msg) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            msg = (
                f"insert journal {self.path} is in use by another run of "
                "target-salesforce; runs that insert must not share one "
                "journal (set insert_journal_path per run)"
            )
            raise ConfigurationError(msg) from None
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None
            )
            # WAL with NORMAL sync: a commit survives a killed process
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._add_stream_columns()
        except (sqlite3.Error, OSError) as exc:
            self._unlock()
            msg = f"insert journal {self.path} cannot be used: {exc}"
            raise ConfigurationError(msg) from None

    def _add_stream_columns(self) -> None:
        """Journals written before rows were kept per stream get the column.

        Their rows and jobs get stream "" (matched by no stream: a record
        that matched one of them is inserted again, as without a journal).
        """
        for table in ("rows", "jobs"):
            columns = {
                str(c[1]) for c in self._db.execute(f"PRAGMA table_info({table})")
            }
            if "stream" not in columns:
                self._db.execute(
                    f"ALTER TABLE {table} ADD COLUMN stream TEXT NOT NULL DEFAULT ''"
                )

    def _unlock(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

    def close(self) -> None:
        """Close the file and release the lock."""
        with self._lock:
            self._db.close()
            self._unlock()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---------------------------------------------------------------- rows

    def add_rows(self, scope: Scope, rows: Iterable[JournalRow]) -> None:
        """Remember rows this run stored (one transaction)."""
        with self._transaction() as db:
            self._insert_rows(db, scope, rows, self.run_id)

    def _insert_rows(
        self,
        db: sqlite3.Connection,
        scope: Scope,
        rows: Iterable[JournalRow],
        run_id: str,
    ) -> None:
        db.executemany(
            "INSERT INTO rows (stream, sobject, digest, sf_id, run_id, seq) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (scope.stream, scope.sobject, r.digest, r.sf_id, run_id, r.seq)
                for r in rows
            ],
        )

    def adopt(self, rowids: Sequence[tuple[int, int]]) -> None:
        """Earlier rows met again in this run: (row id, seq) now belong to it."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE rows SET run_id = ?, seq = ? WHERE id = ?",
                [(self.run_id, seq, rowid) for rowid, seq in rowids],
            )

    def earlier_rows(self) -> AlreadyInserted:
        """The rows earlier runs left (their records may come again)."""
        with self._lock:
            found = self._db.execute(
                "SELECT id, stream, sobject, digest, sf_id FROM rows "
                "WHERE run_id != ? ORDER BY id",
                (self.run_id,),
            ).fetchall()
        return AlreadyInserted(found)

    def forget_covered(self, seq: int) -> None:
        """A STATE read at input line `seq` was written: drop this run's rows before."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM rows WHERE run_id = ? AND seq < ?", (self.run_id, seq)
            )

    def forget_earlier_runs(self, streams: Iterable[str]) -> None:
        """The run read `streams` to their end: their earlier rows had their chance.

        Rows of other streams (another pipeline sharing the file, or a stream
        this run's tap did not send) stay for the run that reads them.
        """
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM rows WHERE run_id != ? AND stream = ?",
                [(self.run_id, stream) for stream in streams],
            )

    def forget_this_run(self) -> None:
        """Drop this run's rows (a run without any STATE ended normally)."""
        with self._transaction() as db:
            db.execute("DELETE FROM rows WHERE run_id = ?", (self.run_id,))

    def count_rows(self) -> int:
        """Rows in the journal (for logs and tests)."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM rows").fetchone()
        return int(count)

    # ---------------------------------------------------------------- jobs

    def add_job(self, job_id: str, scope: Scope, columns: Sequence[str]) -> None:
        """A Bulk insert job was created; its upload is not complete yet."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO jobs "
                "(job_id, stream, sobject, columns, run_id) VALUES (?, ?, ?, ?, ?)",
                (
                    job_id,
                    scope.stream,
                    scope.sobject,
                    json.dumps(list(columns)),
                    self.run_id,
                ),
            )

    def finish_job(
        self,
        job_id: str,
        scope: Scope,
        rows: Iterable[JournalRow],
        *,
        run_id: str | None = None,
    ) -> None:
        """The job's results were read (or it stored nothing): its rows in, it out."""
        with self._transaction() as db:
            self._insert_rows(db, scope, rows, run_id or self.run_id)
            db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def open_jobs(self) -> list[OpenJob]:
        """Earlier runs' jobs whose results were not read."""
        with self._lock:
            found = self._db.execute(
                "SELECT job_id, stream, sobject, columns, run_id FROM jobs "
                "WHERE run_id != ? ORDER BY rowid",
                (self.run_id,),
            ).fetchall()
        return [
            OpenJob(j, Scope(t, s), list(json.loads(c)), r) for j, t, s, c, r in found
        ]

    def count_jobs(self) -> int:
        """Jobs in the journal (for logs and tests)."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()
        return int(count)


@dataclasses.dataclass(frozen=True)
class OpenJob:
    """A Bulk insert job an earlier run created and never read the results of."""

    job_id: str
    scope: Scope
    columns: list[str]
    run_id: str
