"""Apply validated upload operations to the store (profile merge, event append)."""

from __future__ import annotations

import uuid
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

_COLUMNS = {
    "identity": "identity",
    "objectId": "object_id",
    "FBID": "fbid",
    "GPID": "gpid",
}


def new_object_id() -> str:
    """A fresh CleverTap-like objectId (GUID)."""
    return "__" + uuid.uuid4().hex


def find_profile(conn: sqlite3.Connection, who: Identifier) -> sqlite3.Row | None:
    """The profile a record names, if it exists."""
    column = _COLUMNS[who.field]
    row: sqlite3.Row | None = conn.execute(
        f"SELECT * FROM profiles WHERE {column} = ?",  # noqa: S608 - fixed column names
        (who.value,),
    ).fetchone()
    return row


def create_profile(
    conn: sqlite3.Connection, who: Identifier, ts: int, data: dict[str, Any]
) -> tuple[str, str | None]:
    """Create the profile a record names; returns its objectId and identity."""
    column = _COLUMNS[who.field]
    object_id = who.value if who.field == "objectId" else new_object_id()
    if column == "object_id":
        conn.execute(
            "INSERT INTO profiles (object_id, profile_data, created_ts, updated_ts) "
            "VALUES (?, ?, ?, ?)",
            (object_id, dumps(data), ts, ts),
        )
    else:
        conn.execute(
            f"INSERT INTO profiles (object_id, {column}, profile_data, "  # noqa: S608 - fixed column names
            "created_ts, updated_ts) VALUES (?, ?, ?, ?, ?)",
            (object_id, who.value, dumps(data), ts, ts),
        )
    return object_id, who.value if column == "identity" else None


def _as_multi(current: Any) -> list[str]:  # noqa: ANN401 - stored JSON value
    if current is None:
        return []
    if isinstance(current, list):
        return [str(item) for item in current]
    return [str(current)]


def merge_property(data: dict[str, Any], key: str, value: Any) -> None:  # noqa: ANN401, C901 - JSON value; one branch per operator
    """Apply one normalised profileData entry (plain value or operator) to `data`."""
    if not (
        isinstance(value, dict) and len(value) == 1 and next(iter(value)) != "$date"
    ):
        data[key] = value
        return
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


def _apply_profile(conn: sqlite3.Connection, op: ProfileOp) -> None:
    row = find_profile(conn, op.who)
    data: dict[str, Any] = {} if row is None else loads(row["profile_data"])
    for key, value in op.properties.items():
        merge_property(data, key, value)  # may raise: nothing is written before
    if row is None:
        create_profile(conn, op.who, op.ts, data)
        return
    conn.execute(
        "UPDATE profiles SET profile_data = ?, updated_ts = ? WHERE id = ?",
        (dumps(data), max(op.ts, int(row["updated_ts"])), row["id"]),
    )


def _apply_event(conn: sqlite3.Connection, op: EventOp) -> None:
    row = find_profile(conn, op.who)
    if row is None:
        object_id, identity = create_profile(conn, op.who, op.ts, {})
    else:
        object_id, identity = row["object_id"], row["identity"]
    conn.execute(
        "INSERT INTO events (object_id, identity, evt_name, evt_key, ts, evt_data) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (object_id, identity, op.name, event_key(op.name), op.ts, dumps(op.data)),
    )


def _apply_token(conn: sqlite3.Connection, op: TokenOp) -> None:
    found = conn.execute(
        "SELECT 1 FROM profiles WHERE object_id = ?", (op.object_id,)
    ).fetchone()
    if found is None:
        raise RecordError(530, "No profile has this objectId.")
    conn.execute(
        "INSERT OR REPLACE INTO tokens (object_id, token_id, token_type) "
        "VALUES (?, ?, ?)",
        (op.object_id, op.token_id, op.token_type),
    )


def apply_operation(conn: sqlite3.Connection, op: Operation) -> None:
    """Apply one operation; a RecordError is raised before anything is written.

    Raises:
        RecordError: when the operation cannot be applied (the record is skipped).
    """
    if isinstance(op, ProfileOp):
        _apply_profile(conn, op)
    elif isinstance(op, EventOp):
        _apply_event(conn, op)
    else:
        _apply_token(conn, op)
