"""The emulated org: records, credentials, faults, logs and options in one object."""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import TYPE_CHECKING, Any

from sandbox.salesforce import seed as seeding
from sandbox.salesforce.apex import ApexRegistry
from sandbox.salesforce.auth import Auth, KeyPair, generate_key_pair
from sandbox.salesforce.dml import Transaction, render
from sandbox.salesforce.faults import Faults
from sandbox.salesforce.schema import OBJECTS, find_object
from sandbox.salesforce.store import Store

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_API_LIMIT = 100_000


@functools.cache
def _default_key_pair() -> KeyPair:
    """One generated JWT key pair per process (RSA generation is slow)."""
    return generate_key_pair()


DEFAULT_BULK_BATCH_LIMIT = 15_000
DEFAULT_PAGE_SIZE = 2000
# Open query cursors kept; older ones answer INVALID_QUERY_LOCATOR.
MAX_CURSORS = 100


@dataclasses.dataclass
class Options:
    """Tunable behaviour of one emulator."""

    instance_url: str | None = None
    query_page_size: int = DEFAULT_PAGE_SIZE
    api_limit: int = DEFAULT_API_LIMIT
    bulk_batch_limit: int = DEFAULT_BULK_BATCH_LIMIT


class Emulator:
    """Everything one emulated org holds; the ASGI app and test handles share it."""

    def __init__(
        self,
        *,
        db_path: Path | str | None = None,
        seed: str | None = "small",
        options: Options | None = None,
        jwt_certificate_pem: bytes | None = None,
    ) -> None:
        """Open the store, seed it when empty, and register the connected app.

        Args:
            db_path: SQLite file; None keeps the org in memory.
            seed: "small", "demo" or None (an empty org). An existing non-empty
                database is kept as it is.
            options: instance URL, page size and API limits.
            jwt_certificate_pem: the certificate registered for JWT bearer; a fresh
                key pair is generated when None (see `jwt_private_key_pem`).
        """
        self.options = options or Options()
        self.store = Store(db_path)
        self.faults = Faults()
        self.apex = ApexRegistry()
        self.jwt_private_key_pem: bytes | None = None
        if jwt_certificate_pem is None:
            pair = _default_key_pair()
            jwt_certificate_pem = pair.certificate_pem
            self.jwt_private_key_pem = pair.private_key_pem
        self.auth = Auth(jwt_certificate_pem=jwt_certificate_pem)
        self.cursors: dict[str, list[dict[str, Any]]] = {}
        self._cursor_lock = threading.Lock()
        if seed and self.store.is_empty():
            seeding.seed(self.store, seed)

    # --- records -----------------------------------------------------------------

    def transaction(self) -> Transaction:
        """A new write transaction, wired to the `lock_row` fault."""
        return Transaction(
            self.store, lock_fault=lambda: self.faults.take("lock_row") is not None
        )

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Every stored row of one type (deleted ones too), as the API renders them.

        Raises:
            KeyError: unknown sObject type.
        """
        found = find_object(sobject)
        if found is None:
            raise KeyError(sobject)
        return [render(found, row) for row in self.store.rows(found.name)]

    def counts(self) -> dict[str, int]:
        """Stored rows per sObject type."""
        return {name: len(self.store.rows(name)) for name in OBJECTS}

    def reset(self) -> None:
        """Empty the org and every log, job, counter and fault."""
        self.store.clear()
        self.faults.clear()
        with self._cursor_lock:
            self.cursors.clear()

    def reseed(self, size: str) -> int:
        """Replace the org by the deterministic sample org of `size`.

        Returns:
            The number of records written.
        """
        if size not in seeding.SIZES:
            msg = f"unknown seed size {size!r}; use one of {sorted(seeding.SIZES)}"
            raise ValueError(msg)
        self.reset()
        return seeding.seed(self.store, size)

    # --- API usage -----------------------------------------------------------------

    def api_usage(self) -> tuple[int, int]:
        """(used, limit) of the daily API allocation."""
        limit = self.store.counter("api_limit") or self.options.api_limit
        return self.store.counter("api_used"), limit

    def set_api_usage(self, used: int | None, limit: int | None) -> None:
        """Set the used count and/or the limit."""
        if used is not None:
            self.store.set_counter("api_used", used)
        if limit is not None:
            self.store.set_counter("api_limit", limit)

    def count_api_call(self) -> tuple[int, int]:
        """Count one API call; returns (used, limit) after it."""
        used = self.store.next_value("api_used")
        return used, self.api_usage()[1]

    def bulk_batches_used(self) -> int:
        """Bulk batches (1.0 batches and 2.0 ingest jobs) used today."""
        return self.store.counter("bulk_batches")

    # --- query cursors -------------------------------------------------------------

    def save_cursor(self, rows: list[dict[str, Any]]) -> str:
        """Keep the remaining rows of a query for `nextRecordsUrl`."""
        number = self.store.next_value("cursor")
        cursor = f"01gSB{number:010d}"
        with self._cursor_lock:
            self.cursors[cursor] = rows
            while len(self.cursors) > MAX_CURSORS:
                del self.cursors[next(iter(self.cursors))]
        return cursor

    def take_cursor(self, cursor: str) -> list[dict[str, Any]] | None:
        """The rows saved under a cursor, or None."""
        with self._cursor_lock:
            return self.cursors.get(cursor)

    # --- logs ---------------------------------------------------------------------

    def requests_log(self) -> list[dict[str, Any]]:
        """Every logged API request, oldest first."""
        return self.store.entries("requests")

    def apex_calls(self) -> list[dict[str, Any]]:
        """Every recorded Apex REST call, oldest first."""
        return self.store.entries("apex_calls")
