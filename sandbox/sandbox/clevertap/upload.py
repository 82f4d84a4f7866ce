"""Apply validated upload operations to the store (profile merge, event append).

One `UploadBatch` serves one `/1/upload` request: profiles are read once and kept in
memory while the batch's records are applied in order, and every write is sent to
SQLite at the end with one `executemany` per statement.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from sandbox.clevertap.store import dumps, loads
from sandbox.clevertap.validation import (
    MAX_MULTI_VALUES,
    EventOp,
    Identifier,
    Operation,
    ProfileOp,
    RecordError,
    TokenOp,
    event_key,
)

if TYPE_CHECKING:
    import sqlite3

# The profiles column of each identifier field (fixed names, never user input).
_COLUMNS = {
    "identity": "identity",
    "objectId": "object_id",
    "FBID": "fbid",
    "GPID": "gpid",
}
_SELECT_BY = {
    "identity": "SELECT * FROM profiles WHERE identity = ?",
    "objectId": "SELECT * FROM profiles WHERE object_id = ?",
    "FBID": "SELECT * FROM profiles WHERE fbid = ?",
    "GPID": "SELECT * FROM profiles WHERE gpid = ?",
}
# The columns `prefetch_identities` reads, in its order.
# A join rather than `identity IN (SELECT value FROM json_each(?))`: SQLite then
# builds no temporary index of the wanted values; the identities are distinct
# and sorted, so the rows come in the same (identity) order.
_SELECT_IDENTITIES = (
    "SELECT p.id, p.identity, p.object_id, p.fbid, p.gpid, p.created_ts, "
    "p.updated_ts, p.profile_data FROM json_each(?) AS j "
    "JOIN profiles AS p ON p.identity = j.value"
)
_INSERT_PROFILE = (
    "INSERT INTO profiles (object_id, identity, fbid, gpid, profile_data, "
    "created_ts, updated_ts) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# The same without fbid and gpid, which stay NULL (the columns have no default).
_INSERT_PROFILE_BY_IDENTITY = (
    "INSERT INTO profiles (object_id, identity, profile_data, created_ts, "
    "updated_ts) VALUES (?, ?, ?, ?, ?)"
)
_UPDATE_PROFILE = "UPDATE profiles SET profile_data = ?, updated_ts = ? WHERE id = ?"
_INSERT_EVENT = (
    "INSERT INTO events (object_id, identity, evt_name, evt_key, ts, evt_data) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_UPSERT_DEVICE = (
    "INSERT OR REPLACE INTO tokens (object_id, token_id, token_type) VALUES (?, ?, ?)"
)


_ID_BYTES = 16
_POOL_IDS = 256  # objectIds drawn from one `os.urandom` call
_pool: list[str] = []


def new_object_id() -> str:
    """A fresh CleverTap-like objectId: `__` and 32 random hex digits.

    The shape of the objectIds in events-export-page.apperture.json.

    The digits come straight from `os.urandom` (readers treat the id as opaque),
    read for 256 ids at a time: one system call instead of one per new profile.
    """
    while True:  # emulators in threads of one process share the pool
        try:
            return _pool.pop()
        except IndexError:
            digits = os.urandom(_ID_BYTES * _POOL_IDS).hex()
            step = 2 * _ID_BYTES
            _pool.extend(
                "__" + digits[i : i + step] for i in range(0, len(digits), step)
            )


@dataclasses.dataclass(slots=True)
class _Profile:
    """A profile as the batch sees it; `row_id` is None until it is inserted.

    `stored` is the profile_data column as read; it is parsed only when a profile
    record needs it (events only need the identifiers).
    """

    row_id: int | None
    ids: dict[str, str | None]  # identifier field -> value
    created_ts: int
    updated_ts: int
    stored: str = "{}"
    parsed: dict[str, Any] | None = None  # the data, once parsed or changed
    dirty: bool = False

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> _Profile:
        return cls(
            row_id=int(row["id"]),
            ids={field: row[column] for field, column in _COLUMNS.items()},
            created_ts=int(row["created_ts"]),
            updated_ts=int(row["updated_ts"]),
            stored=row["profile_data"],
        )

    def data(self) -> dict[str, Any]:
        """The profile data (parsed on first use)."""
        if self.parsed is None:
            self.parsed = loads(self.stored)
        return self.parsed


def _as_multi(current: object) -> list[str]:
    if current is None:
        return []
    if isinstance(current, list):
        return [str(item) for item in current]
    return [str(current)]


def _apply_operator(data: dict[str, Any], key: str, value: dict[str, Any]) -> None:
    """Apply `{"$op": operand}` to `data[key]`."""
    op, operand = next(iter(value.items()))
    current = data.get(key)
    if op == "$set":
        data[key] = operand
    elif op == "$delete":
        data.pop(key, None)
    elif op == "$add":
        items = _as_multi(current)
        for item in operand:
            if item not in items:
                items.append(item)
        data[key] = items[-MAX_MULTI_VALUES:]
    elif op == "$remove":
        if current is None:
            return
        items = [item for item in _as_multi(current) if item not in operand]
        if items:
            data[key] = items
        else:
            data.pop(key, None)
    else:  # $incr / $decr
        base = 0 if current is None else current
        if isinstance(base, bool) or not isinstance(base, int | float):
            raise RecordError(512, f"{op} on '{key}' whose value is not a number.")
        data[key] = base + operand if op == "$incr" else base - operand


def merge_property(data: dict[str, Any], key: str, value: object) -> None:
    """Apply one normalised profileData entry (plain value or operator) to `data`.

    Raises:
        RecordError: when an operator cannot apply to the stored value.
    """
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) != "$date":
        _apply_operator(data, key, value)
    else:
        data[key] = value


class UploadBatch:
    """Applies one request's operations in order and writes them all at `flush`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        """Work on `conn`, which must be inside a transaction."""
        self._conn = conn
        self._known: dict[tuple[str, str], _Profile] = {}
        self._absent: set[str] = set()  # identities known not to be stored
        self._profiles: list[_Profile] = []  # in the order they were first seen
        self._events: list[tuple[Any, ...]] = []
        self._tokens: list[tuple[str, str, str]] = []

    def _remember(self, profile: _Profile) -> _Profile:
        self._profiles.append(profile)
        for field, value in profile.ids.items():
            if value is not None:
                self._known[field, value] = profile
        return profile

    def prefetch_identities(self, records: list[object]) -> None:
        """Read the profiles of the records' identities with one query.

        Identities asked for and not found are remembered as absent, so that
        applying the records needs no query per record.
        """
        wanted = {
            str(value).strip()
            for record in records
            if isinstance(record, dict)
            and isinstance(value := record.get("identity"), str | int)
            and not isinstance(value, bool)
        }
        wanted.difference_update(
            value for field, value in self._known if field == "identity"
        )
        cursor = self._conn.cursor()
        cursor.row_factory = None  # plain tuples
        known, profiles = self._known, self._profiles
        # a `_Profile` and `_remember`, inlined: one pass per stored row
        for (
            row_id,
            identity,
            object_id,
            fbid,
            gpid,
            created,
            updated,
            stored,
        ) in cursor.execute(_SELECT_IDENTITIES, (dumps(sorted(wanted)),)):
            ids = {
                "identity": identity,
                "objectId": object_id,
                "FBID": fbid,
                "GPID": gpid,
            }
            profile = _Profile(int(row_id), ids, int(created), int(updated), stored)
            profiles.append(profile)
            for field, value in ids.items():
                if value is not None:
                    known[field, value] = profile
        self._absent.update(v for v in wanted if ("identity", v) not in known)

    def _find(self, field: str, value: str) -> _Profile | None:
        profile = self._known.get((field, value))
        if profile is not None or (field == "identity" and value in self._absent):
            return profile
        row = self._conn.execute(_SELECT_BY[field], (value,)).fetchone()
        return None if row is None else self._remember(_Profile.from_row(row))

    def _create(self, who: Identifier, ts: int) -> _Profile:
        ids: dict[str, str | None] = dict.fromkeys(_COLUMNS)
        ids[who.field] = who.value
        if who.field != "objectId":
            ids["objectId"] = new_object_id()
        return self._remember(_Profile(None, ids, ts, ts, parsed={}, dirty=True))

    def apply(self, op: Operation) -> None:
        """Apply one operation; a RecordError leaves the batch as it was.

        Raises:
            RecordError: when the operation cannot be applied (the record is skipped).
        """
        if isinstance(op, ProfileOp):
            self._apply_profile(op)
        elif isinstance(op, EventOp):
            self._apply_event(op)
        else:
            self._apply_token(op)

    def _apply_profile(self, op: ProfileOp) -> None:
        existing = self._find(op.who.field, op.who.value)
        data = {} if existing is None else dict(existing.data())
        if op.plain:  # no operator: every property is set as it is
            if existing is None:  # a new profile: the validated copy as it is
                data = op.properties
            else:
                data.update(op.properties)
        else:
            for key, value in op.properties.items():
                if type(value) is dict:  # an operator (or a date): may raise
                    merge_property(data, key, value)
                else:
                    data[key] = value
        profile = self._create(op.who, op.ts) if existing is None else existing
        profile.parsed = data
        profile.updated_ts = max(op.ts, profile.updated_ts)
        profile.dirty = True

    def _apply_event(self, op: EventOp) -> None:
        profile = self._find(op.who.field, op.who.value)
        ids = (self._create(op.who, op.ts) if profile is None else profile).ids
        self._events.append(
            (
                ids["objectId"],
                ids["identity"],
                op.name,
                event_key(op.name),
                op.ts,
                dumps(op.data),
            )
        )

    def _apply_token(self, op: TokenOp) -> None:
        if self._find("objectId", op.object_id) is None:
            raise RecordError(530, "No profile has this objectId.")
        self._tokens.append((op.object_id, op.token_id, op.token_type))

    def flush(self) -> None:
        """Write every change of the batch (one statement per kind of row)."""
        conn = self._conn
        changed = [p for p in self._profiles if p.dirty]
        new = [p for p in changed if p.row_id is None]
        # the common case has no FBID or GPID: a statement without them binds no
        # None (sqlite3 binds None through its adaptation protocol, which raises
        # and formats an AttributeError)
        plain = all(p.ids["FBID"] is None and p.ids["GPID"] is None for p in new)
        conn.executemany(
            _INSERT_PROFILE_BY_IDENTITY if plain else _INSERT_PROFILE,
            [
                (
                    p.ids["objectId"],
                    p.ids["identity"],
                    *(() if plain else (p.ids["FBID"], p.ids["GPID"])),
                    dumps(p.data()),
                    p.created_ts,
                    p.updated_ts,
                )
                for p in new
            ],
        )
        conn.executemany(
            _UPDATE_PROFILE,
            [
                (dumps(p.data()), p.updated_ts, p.row_id)
                for p in changed
                if p.row_id is not None
            ],
        )
        conn.executemany(_INSERT_EVENT, self._events)
        conn.executemany(_UPSERT_DEVICE, self._tokens)
