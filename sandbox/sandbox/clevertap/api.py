"""CleverTap's read, export, count, campaign and maintenance routes."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import urllib.parse
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.routing import Route

from sandbox.clevertap.emulator import Emulator, parse_yyyymmdd, to_export
from sandbox.clevertap.gate import CONTENT_TYPE, fail_body
from sandbox.clevertap.store import dumps, loads
from sandbox.clevertap.upload import new_object_id
from sandbox.clevertap.validation import event_key

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Awaitable, Callable, Iterator

    from starlette.requests import Request

MAX_BATCH_SIZE = 5000
DEFAULT_BATCH_SIZE = 1000
MAX_MAINTENANCE_VALUES = 100
_SYSTEM_KEYS = {"Name": "name", "Email": "email", "Phone": "phone", "Gender": "gender"}
# Read-API bodies as seen live (tests/fixtures/tap_clevertap/real_api/, README there).
IN_PROGRESS_ERROR = "Request still in progress, please retry later"
IN_PROGRESS_CODE = 2
INCORRECT_USAGE_ERROR = "Incorrect Usage"
INCORRECT_USAGE_CODE = 3


def is_notification_event(name: str) -> bool:
    """Notification events cannot be exported through the API."""
    return event_key(name).startswith("notification")


def json_response(body: object, status: int = 200) -> Response:
    """A JSON response with CleverTap's content type."""
    return Response(
        json.dumps(body, ensure_ascii=False).encode(),
        status_code=status,
        headers={"content-type": CONTENT_TYPE},
    )


def fail(status: int, error: str) -> Response:
    """CleverTap's reply to a request it refuses."""
    return json_response(fail_body(status, error), status)


def _emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.emulator
    return emulator


async def read_json(request: Request) -> object:
    """The request body as JSON, or None when it is not JSON."""
    raw = await request.body()
    try:
        body: object = loads(raw)  # msgspec, or json.loads for what msgspec refuses
    except ValueError:
        return None
    return body


async def _body(request: Request) -> dict[str, Any] | None:
    body = await read_json(request)
    return body if isinstance(body, dict) else None


async def _dated_body(request: Request) -> tuple[dict[str, Any], int, int] | Response:
    """The JSON body and its `from` / `to` days as YYYYMMDD numbers, or a 400 reply."""
    body = await _body(request)
    if body is None:
        return fail(400, "Malformed request")
    try:
        start = parse_day(body.get("from"), "from")
        end = parse_day(body.get("to"), "to")
    except BadQueryError as exc:
        return fail(400, str(exc))
    return body, _day_number(start), _day_number(end)


def _day_number(day: dt.date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


class BadQueryError(ValueError):
    """A query body or parameter is invalid (HTTP 400)."""


def parse_day(value: object, name: str) -> dt.date:
    """A `YYYYMMDD` integer (or digit string) as a date.

    Raises:
        BadQueryError: when it is not one.
    """
    day = parse_yyyymmdd(value)
    if day is None:
        msg = f"{name} must be a date as YYYYMMDD"
        raise BadQueryError(msg)
    return day


def day_bounds(emulator: Emulator, start: dt.date, end: dt.date) -> tuple[int, int]:
    """Epoch seconds [from, to) covering whole days in the account time zone."""
    tz = emulator.tz
    lo = dt.datetime.combine(start, dt.time(), tzinfo=tz)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return int(lo.timestamp()), int(hi.timestamp())


def export_ts(emulator: Emulator, epoch: int) -> int:
    """Epoch seconds as CleverTap's export `yyyyMMddHHmmss` in the account zone."""
    moment = dt.datetime.fromtimestamp(epoch, tz=emulator.tz)
    return int(moment.strftime("%Y%m%d%H%M%S"))


def _query(emulator: Emulator, body: dict[str, Any] | None) -> dict[str, Any]:
    if body is None:
        msg = "Malformed request"
        raise BadQueryError(msg)
    name = body.get("event_name")
    if not isinstance(name, str) or not name:
        msg = "event_name is mandatory"
        raise BadQueryError(msg)
    start = parse_day(body.get("from"), "from")
    end = parse_day(body.get("to"), "to")
    if end < start:
        msg = "to must not be before from"
        raise BadQueryError(msg)
    lo, hi = day_bounds(emulator, start, end)
    filters = body.get("event_properties", [])
    profile_filters = body.get("common_profile_properties", [])
    for group in (filters, profile_filters):
        if not isinstance(group, list) or not all(isinstance(f, dict) for f in group):
            msg = "property filters must be lists of {name, operator, value}"
            raise BadQueryError(msg)
    return {
        "event_name": name,
        "key": event_key(name),
        "lo": lo,
        "hi": hi,
        "filters": filters,
        "profile_filters": profile_filters,
    }


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _matches_one(data: dict[str, Any], flt: dict[str, Any]) -> bool:
    operator = str(flt.get("operator", "equals"))
    actual = data.get(str(flt.get("name", "")))
    if operator in {"exists", "does_not_exist"}:
        return (actual is not None) == (operator == "exists")
    if actual is None:
        return operator in _NEGATED
    if isinstance(actual, bool):
        actual = "True" if actual else "False"
    if operator in _NEGATED:
        return not _holds(_NEGATED[operator], actual, flt.get("value"))
    return _holds(operator, actual, flt.get("value"))


# Operators that are the negation of another one.
_NEGATED = {"not_equals": "equals", "does_not_contain": "contains"}


def _holds(operator: str, actual: object, wanted: object) -> bool:
    """Whether `actual <operator> wanted` (a positive operator, `actual` not None)."""
    if operator == "equals":
        left, right = _number(actual), _number(wanted)
        if left is None or right is None:
            return str(actual) == str(wanted)
        return left == right
    if operator == "contains":
        return str(wanted) in (actual if isinstance(actual, list) else str(actual))
    left, right = _number(actual), _number(wanted)
    if left is None or right is None:
        return False
    return {
        "greater_than": left > right,
        "greater_than_equals": left >= right,
        "less_than": left < right,
        "less_than_equals": left <= right,
    }.get(operator, False)


def matches(data: dict[str, Any], filters: list[dict[str, Any]]) -> bool:
    """Whether a property dict passes every CQL property filter."""
    return all(_matches_one(data, flt) for flt in filters)


# -- record shapes ---------------------------------------------------------------
class _Profiles:
    """Profile lookups and summaries, cached for one page."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._rows: dict[str, sqlite3.Row | None] = {}
        self._summaries: dict[str, dict[str, Any]] = {}
        self.blocks: dict[tuple[str, str | None], dict[str, Any]] = {}

    def row(self, object_id: str) -> sqlite3.Row | None:
        if object_id not in self._rows:
            rows = self.emulator.store.query(
                "SELECT * FROM profiles WHERE object_id = ?", (object_id,)
            )
            self._rows[object_id] = rows[0] if rows else None
        return self._rows[object_id]

    def summary(self, object_id: str) -> dict[str, Any]:
        if object_id not in self._summaries:
            rows = self.emulator.store.query(
                "SELECT evt_name, COUNT(*) AS n, MIN(ts) AS first, MAX(ts) AS last "
                "FROM events WHERE object_id = ? GROUP BY evt_key",
                (object_id,),
            )
            self._summaries[object_id] = {
                row["evt_name"]: {
                    "count": row["n"],
                    "first_seen": row["first"],
                    "last_seen": row["last"],
                }
                for row in rows
            }
        return self._summaries[object_id]


def _split(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    top: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SYSTEM_KEYS:
            top[_SYSTEM_KEYS[key]] = to_export(value)
        else:
            custom[key] = to_export(value)
    return top, custom


def profile_record(
    profiles: _Profiles,
    row: sqlite3.Row,
    *,
    summary: bool = True,
    lift_only: bool = False,
) -> dict[str, Any]:
    """A profile as the profile export and `/1/profile.json` show it.

    Keys with no value are left out, as in the recorded export. With `lift_only`
    (the cursor export), a profile whose devices carry their objectId has it only
    inside ``platformInfo``, as ingestr saw live (`liftProfileObjectID`).
    """
    top, custom = _split(loads(row["profile_data"]))
    devices = loads(row["platform_info"])
    record: dict[str, Any] = _present(
        identity=row["identity"],
        objectId=row["object_id"],
        email=top.get("email"),
        name=top.get("name"),
        phone=top.get("phone"),
        gender=top.get("gender"),
    )
    if lift_only and any(
        isinstance(d, dict) and d.get("objectId") == row["object_id"] for d in devices
    ):
        del record["objectId"]
    record["profileData"] = custom
    if devices:
        record["platformInfo"] = devices
    if summary:
        record["events"] = profiles.summary(row["object_id"])
    return record


def _present(**values: object) -> dict[str, Any]:
    """The keyword arguments that have a value (None and "" left out)."""
    return {key: value for key, value in values.items() if value not in (None, "")}


def _event_profile(
    profiles: _Profiles, row: sqlite3.Row, flags: dict[str, bool]
) -> dict[str, Any]:
    key = (row["object_id"], row["identity"])
    if key not in profiles.blocks:
        profiles.blocks[key] = _build_event_profile(profiles, row, flags)
    return profiles.blocks[key]


def _build_event_profile(
    profiles: _Profiles, row: sqlite3.Row, flags: dict[str, bool]
) -> dict[str, Any]:
    prow = profiles.row(row["object_id"])
    data = loads(prow["profile_data"]) if prow is not None else {}
    top, custom = _split(data)
    platform = loads(prow["platform_info"]) if prow is not None else []
    device = platform[0] if platform else {}
    # As recorded: absent identity/email/name keys are left out, and a profile
    # with no device has no platform (there is no default).
    block: dict[str, Any] = _present(
        objectId=row["object_id"],
        identity=row["identity"],
        email=top.get("email"),
        phone=top.get("phone"),
        name=top.get("name"),
        platform=device.get("platform"),
    )
    if flags["profile"] and custom:
        block["profileData"] = custom
    if flags["events"]:
        block["events"] = profiles.summary(row["object_id"])
    if flags["app"]:
        block.update(
            _present(**{key: device.get(key) for key in _APP_FIELDS}),
        )
    return block


# What `app=true` adds to an exported profile (recorded: os_version, app_version,
# make, model next to platform).
_APP_FIELDS = ("os_version", "app_version", "make", "model")


# -- "still in progress" -------------------------------------------------------
def in_progress_response(params: dict[str, Any]) -> Response:
    """CleverTap's recorded "still in progress" body, at the fault's HTTP status."""
    status = int(params.get("http_status", 200))
    return json_response(
        {"status": "fail", "error": IN_PROGRESS_ERROR, "code": IN_PROGRESS_CODE},
        status,
    )


def in_progress_reply(request: Request) -> Response | None:
    """The in-progress answer when an `in_progress` fault with `requests` is due.

    With ``requests: N`` the fault answers the first N matching read requests of
    any kind (cursor creation, pages, counts, campaign reports...) instead of each
    cursor's first fetches.
    """
    fault = _emulator(request).faults.peek(
        "in_progress", request.method, request.url.path
    )
    if fault is None or "requests" not in fault.params:
        return None
    wanted = fault.params["requests"]
    if isinstance(wanted, bool) or not isinstance(wanted, int):
        return fail(400, "in_progress requests must be an integer")
    if fault.fired >= wanted:
        return None
    fault.fired += 1
    return in_progress_response(fault.params)


def busy_aware(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a read route so an `in_progress` fault with `requests` can answer."""

    async def wrapped(request: Request) -> Response:
        busy = in_progress_reply(request)
        if busy is not None:
            return busy
        return await endpoint(request)

    return wrapped


# -- cursors ---------------------------------------------------------------------
def _new_token(kind: str) -> str:
    """An opaque raw cursor; clients see it percent-encoded (`+`, `/`, `=` inside)."""
    blob = base64.b64encode(secrets.token_bytes(30)).decode()
    return f"{kind[0].upper()}{blob[:20]}+{blob[20:]}/="


def encode_cursor(raw: str) -> str:
    """A raw cursor as the API hands it out: already percent-encoded."""
    return urllib.parse.quote(raw, safe="")


def _flags(request: Request) -> dict[str, bool]:
    params = request.query_params

    def flag(name: str, *, default: bool) -> bool:
        value = params.get(name)
        return default if value is None else value.lower() == "true"

    return {
        "app": flag("app", default=False),
        "events": flag("events", default=True),
        "profile": flag("profile", default=True),
    }


# The newest row a cursor may return, for profiles (False) and events (True).
_MAX_ID = (
    "SELECT COALESCE(MAX(id), 0) AS m FROM profiles",
    "SELECT COALESCE(MAX(id), 0) AS m FROM events",
)


async def _create_cursor(request: Request, kind: str) -> Response:
    emulator = _emulator(request)
    batch = request.query_params.get("batch_size", str(DEFAULT_BATCH_SIZE))
    if not batch.isdigit() or int(batch) < 1:
        return fail(400, "batch_size must be a positive integer")
    if int(batch) > MAX_BATCH_SIZE:
        return fail(400, f"batch_size must be at most {MAX_BATCH_SIZE}")
    try:
        query = _query(emulator, await _body(request))
    except BadQueryError as exc:
        return fail(400, str(exc))
    if is_notification_event(query["event_name"]):
        return fail(400, "Export not allowed for this event")
    query["flags"] = _flags(request)
    max_id = emulator.store.query(_MAX_ID[kind == "events"])
    token = _new_token(kind)
    emulator.store.execute(
        "INSERT INTO cursors (token, kind, query, after_id, max_id, batch_size) "
        "VALUES (?, ?, ?, 0, ?, ?)",
        (token, kind, dumps(query), int(max_id[0]["m"]), int(batch)),
    )
    return json_response({"status": "success", "cursor": encode_cursor(token)})


def _event_rows(emulator: Emulator, cursor: sqlite3.Row) -> Iterator[sqlite3.Row]:
    query = loads(cursor["query"])
    rows = emulator.store.iter_rows(
        "SELECT * FROM events WHERE id > ? AND id <= ? AND evt_key = ? "
        "AND ts >= ? AND ts < ? ORDER BY id LIMIT ?",
        (cursor["after_id"], cursor["max_id"], query["key"], query["lo"], query["hi"]),
    )
    profiles = _Profiles(emulator)
    for row in rows:
        if not matches(loads(row["evt_data"]), query["filters"]):
            continue
        if query["profile_filters"]:
            prow = profiles.row(row["object_id"])
            data = loads(prow["profile_data"]) if prow is not None else {}
            if not matches(data, query["profile_filters"]):
                continue
        yield row


def _profile_rows(emulator: Emulator, cursor: sqlite3.Row) -> Iterator[sqlite3.Row]:
    query = loads(cursor["query"])
    rows = emulator.store.iter_rows(
        "SELECT p.* FROM profiles p WHERE p.id > ? AND p.id <= ? AND EXISTS ("
        "SELECT 1 FROM events e WHERE e.object_id = p.object_id AND e.evt_key = ? "
        "AND e.ts >= ? AND e.ts < ?) ORDER BY p.id LIMIT ?",
        (cursor["after_id"], cursor["max_id"], query["key"], query["lo"], query["hi"]),
    )
    for row in rows:
        if matches(loads(row["profile_data"]), query["profile_filters"]):
            yield row


def _page(
    emulator: Emulator, cursor: sqlite3.Row
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of records and the last id when more remain."""
    query = loads(cursor["query"])
    flags: dict[str, bool] = query["flags"]
    profiles = _Profiles(emulator)
    source = _event_rows if cursor["kind"] == "events" else _profile_rows
    records: list[dict[str, Any]] = []
    last_id: int | None = None
    for row in source(emulator, cursor):
        if len(records) == cursor["batch_size"]:
            return records, last_id
        last_id = int(row["id"])
        if cursor["kind"] == "events":
            records.append(
                {
                    "profile": _event_profile(profiles, row, flags),
                    "ts": export_ts(emulator, int(row["ts"])),
                    "event_props": to_export(loads(row["evt_data"])),
                    "session_props": loads(row["session_props"]),
                }
            )
        else:
            records.append(
                profile_record(profiles, row, summary=flags["events"], lift_only=True)
            )
    return records, None


def _next_token(emulator: Emulator, cursor: sqlite3.Row, last_id: int) -> str:
    """The cursor continuing after `last_id` (the same one on a repeated fetch)."""
    existing = emulator.store.query(
        "SELECT token FROM cursors WHERE kind = ? AND query = ? AND after_id = ? "
        "AND max_id = ? AND batch_size = ? AND token LIKE ?",
        (
            cursor["kind"],
            cursor["query"],
            last_id,
            cursor["max_id"],
            cursor["batch_size"],
            cursor["token"][:1] + "%",
        ),
    )
    if existing:
        return str(existing[0]["token"])
    token = _new_token(cursor["kind"])
    emulator.store.execute(
        "INSERT INTO cursors (token, kind, query, after_id, max_id, batch_size) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            token,
            cursor["kind"],
            cursor["query"],
            last_id,
            cursor["max_id"],
            cursor["batch_size"],
        ),
    )
    return token


def _fetch_page(request: Request, kind: str, token: str) -> Response:
    emulator = _emulator(request)
    rows = emulator.store.query(
        "SELECT * FROM cursors WHERE token = ? AND kind = ?", (token, kind)
    )
    if not rows:
        # The recorded body; its HTTP status is not recorded (400 here).
        return json_response(
            {
                "status": "fail",
                "error": INCORRECT_USAGE_ERROR,
                "code": INCORRECT_USAGE_CODE,
            },
            400,
        )
    cursor = rows[0]
    method, path = request.method, request.url.path
    emulator.store.execute(
        "UPDATE cursors SET fetches = fetches + 1 WHERE token = ?", (token,)
    )
    busy = emulator.faults.peek("in_progress", method, path)
    if (
        busy is not None
        and "requests" not in busy.params
        and cursor["fetches"] < int(busy.params["fetches"])
    ):
        busy.fired += 1
        return in_progress_response(busy.params)
    records, last_id = _page(emulator, cursor)
    body: dict[str, Any] = {"status": "success", "records": records}
    if emulator.faults.take("repeat_cursor", method, path) is not None:
        body["next_cursor"] = encode_cursor(token)
    elif last_id is not None:
        body["next_cursor"] = encode_cursor(_next_token(emulator, cursor, last_id))
    return json_response(body)


async def events_export(request: Request) -> Response:
    """`POST /1/events.json` (make a cursor), `GET /1/events.json?cursor=` (a page)."""
    if request.method == "POST":
        return await _create_cursor(request, "events")
    token = request.query_params.get("cursor")
    if not token:
        return fail(400, "cursor is mandatory")
    return _fetch_page(request, "events", token)


async def profiles_export(request: Request) -> Response:
    """`POST /1/profiles.json` (make a cursor), `GET /1/profiles.json?cursor=`."""
    if request.method == "POST":
        return await _create_cursor(request, "profiles")
    token = request.query_params.get("cursor")
    if not token:
        return fail(400, "cursor is mandatory")
    return _fetch_page(request, "profiles", token)


# `GET /1/profile.json`: the query for each way of naming a profile, in precedence.
_PROFILE_BY = {
    "identity": "SELECT * FROM profiles WHERE identity = ?",
    "objectId": "SELECT * FROM profiles WHERE object_id = ?",
    "email": "SELECT * FROM profiles WHERE json_extract(profile_data, '$.Email') = ?",
}


async def profile_by_id(request: Request) -> Response:
    """`GET /1/profile.json?identity=|email=|objectId=`."""
    emulator = _emulator(request)
    params = request.query_params
    param = next((name for name in _PROFILE_BY if name in params), None)
    if param is None:
        return fail(400, "identity, email or objectId is mandatory")
    rows = emulator.store.query(_PROFILE_BY[param], (params[param],))
    if not rows:
        return fail(404, "Profile not found")
    profiles = _Profiles(emulator)
    if len(rows) > 1:
        # Not documented: how the real API answers an email that several profiles
        # carry (an identity or objectId names one). The sandbox lists them all in
        # `record`, so a client can see the ambiguity (sandbox/README.md).
        records = [profile_record(profiles, row) for row in rows]
        return json_response({"status": "success", "record": records})
    return json_response(
        {"status": "success", "record": profile_record(profiles, rows[0])}
    )


# -- counts ----------------------------------------------------------------------
def _period(day: dt.date, trend: str) -> str:
    if trend == "weekly":
        day -= dt.timedelta(days=day.weekday())
    elif trend == "monthly":
        day = day.replace(day=1)
    return day.strftime("%Y%m%d")


def _count_result(
    emulator: Emulator, kind: str, body: dict[str, Any]
) -> dict[str, Any]:
    query = _query(emulator, body)
    rows = [
        row
        for row in emulator.store.query(
            "SELECT * FROM events WHERE evt_key = ? AND ts >= ? AND ts < ? ORDER BY id",
            (query["key"], query["lo"], query["hi"]),
        )
        if matches(loads(row["evt_data"]), query["filters"])
    ]
    if kind == "events":
        return {"count": len(rows)}
    if kind == "profiles":
        return {"count": len({row["object_id"] for row in rows})}
    groups = body.get("groups")
    if not isinstance(groups, dict) or not groups:
        msg = "groups is mandatory"
        raise BadQueryError(msg)
    result: dict[str, Any] = {}
    profiles = _Profiles(emulator)
    for name, group in groups.items():
        if not isinstance(group, dict):
            msg = f"group {name} must be an object"
            raise BadQueryError(msg)
        if kind == "trends":
            result[name] = _trend(emulator, rows, group, body)
        else:
            result[name] = _top(profiles, rows, group)
    return result


def _trend(
    emulator: Emulator,
    rows: list[sqlite3.Row],
    group: dict[str, Any],
    body: dict[str, Any],
) -> dict[str, Any]:
    trend = str(group.get("trend_type", "daily"))
    if trend not in {"daily", "weekly", "monthly"}:
        msg = "trend_type must be daily, weekly or monthly"
        raise BadQueryError(msg)
    unique = bool(body.get("unique", False))
    prop = body.get("sum_event_prop")
    buckets: dict[str, Any] = {}
    seen: dict[str, set[str]] = {}
    for row in rows:
        day = dt.datetime.fromtimestamp(int(row["ts"]), tz=emulator.tz).date()
        key = _period(day, trend)
        if isinstance(prop, str):
            value = loads(row["evt_data"]).get(prop)
            if isinstance(value, int) and not isinstance(value, bool):
                buckets[key] = buckets.get(key, 0) + value
        elif unique:
            seen.setdefault(key, set()).add(row["object_id"])
            buckets[key] = len(seen[key])
        else:
            buckets[key] = buckets.get(key, 0) + 1
    return dict(sorted(buckets.items()))


def _top(
    profiles: _Profiles, rows: list[sqlite3.Row], group: dict[str, Any]
) -> dict[str, Any]:
    kind = str(group.get("property_type", "event_properties"))
    name = str(group.get("name", ""))
    top_n = int(group.get("top_n", 10))
    order = str(group.get("order", "desc"))
    counts: dict[str, dict[str, int]] = {"STR": {}, "NUM": {}}
    for row in rows:
        if kind == "event_properties":
            data = loads(row["evt_data"])
        elif kind == "session_properties":
            data = loads(row["session_props"])
        else:
            prow = profiles.row(row["object_id"])
            data = loads(prow["profile_data"]) if prow is not None else {}
        value = data.get(name)
        if value is None or isinstance(value, dict | list):
            continue
        bucket = "NUM" if isinstance(value, int | float) else "STR"
        counts[bucket][str(value)] = counts[bucket].get(str(value), 0) + 1
    out: dict[str, Any] = {}
    for bucket, values in counts.items():
        if values:
            ranked = sorted(values.items(), key=lambda kv: (kv[1], kv[0]))
            if order != "asc":
                ranked.reverse()
            out[bucket] = dict(ranked[:top_n])
    return out


def _counts_endpoint(kind: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        emulator = _emulator(request)
        method, path = request.method, request.url.path
        if request.method == "GET":
            return _poll(emulator, request, path)
        body = await _body(request)
        if body is None:
            return fail(400, "Malformed request")
        try:
            result = _count_result(emulator, kind, body)
        except BadQueryError as exc:
            return fail(400, str(exc))
        partial = emulator.faults.take("counts_partial", method, path)
        if partial is None:
            return json_response({"status": "success", **result})
        req_id = secrets.randbits(62)
        emulator.store.execute(
            "INSERT INTO count_requests (req_id, path, result, polls_left) "
            "VALUES (?, ?, ?, ?)",
            (req_id, path, dumps(result), int(partial.params["polls"])),
        )
        return json_response({"status": "partial", "req_id": req_id})

    return endpoint


def _poll(emulator: Emulator, request: Request, path: str) -> Response:
    text = request.query_params.get("req_id", "")
    rows = (
        emulator.store.query(
            "SELECT * FROM count_requests WHERE req_id = ? AND path = ?",
            (int(text), path),
        )
        if text.isdigit()
        else []
    )
    if not rows:
        return fail(400, "Invalid request id")
    row = rows[0]
    if row["polls_left"] > 1:
        emulator.store.execute(
            "UPDATE count_requests SET polls_left = polls_left - 1 WHERE req_id = ?",
            (row["req_id"],),
        )
        return json_response({"status": "partial", "req_id": row["req_id"]})
    return json_response({"status": "success", **loads(row["result"])})


# -- campaigns and reports -------------------------------------------------------
async def targets_list(request: Request) -> Response:
    """`POST /1/targets/list.json` with `{from, to}` (scheduled day, inclusive)."""
    dated = await _dated_body(request)
    if isinstance(dated, Response):
        return dated
    _, start, end = dated
    rows = _emulator(request).store.query(
        "SELECT target FROM campaigns WHERE scheduled_day BETWEEN ? AND ? ORDER BY id",
        (start, end),
    )
    return json_response(
        {"status": "success", "targets": [loads(r["target"]) for r in rows]}
    )


async def targets_result(request: Request) -> Response:
    """`POST /1/targets/result.json` with `{id}`, including the "no result" quirks."""
    body = await _body(request)
    if body is None or "id" not in body:
        return fail(400, "Malformed request")
    row = _campaign(_emulator(request), body)
    if row is None:
        return fail(400, "Invalid target id")
    if row["result"] is not None:
        return json_response({"status": "success", "result": loads(row["result"])})
    quirk = row["no_result"]
    if quirk == "409":
        return fail(409, "This campaign has no report yet")
    if quirk == "200":
        # As seen live (recorded with "code": 200 and no `result`).
        return json_response(
            {
                "status": "success",
                "error": "This target hasn't been completed",
                "code": 200,
            }
        )
    return fail(500, "This target has no result as of yet")


def _campaign(emulator: Emulator, body: dict[str, Any]) -> sqlite3.Row | None:
    """The campaign row of the body's target id (None when it names none)."""
    try:
        target_id = int(body["id"])
    except (TypeError, ValueError):
        return None
    rows = emulator.store.query("SELECT * FROM campaigns WHERE id = ?", (target_id,))
    return rows[0] if rows else None


def _wanted(value: object) -> set[str] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return {str(item) for item in items}


async def message_report(request: Request) -> Response:
    """`POST /1/message/report.json` with `{from, to}` and optional filters."""
    dated = await _dated_body(request)
    if isinstance(dated, Response):
        return dated
    body, start, end = dated
    rows = _emulator(request).store.query(
        "SELECT message FROM messages WHERE day BETWEEN ? AND ? ORDER BY id",
        (start, end),
    )
    filters = {
        key: _wanted(body.get(key))
        for key in ("channel", "delivery", "status", "message_type", "label")
    }
    daily = bool(body.get("daily", False))
    messages = []
    for row in rows:
        message = loads(row["message"])
        if any(
            wanted is not None and str(message.get(key)) not in wanted
            for key, wanted in filters.items()
        ):
            continue
        if not daily:
            message.pop("daily", None)
        messages.append(message)
    return json_response({"status": "success", "messages": messages})


async def get_schema(request: Request) -> Response:
    """`GET /getSchema?type=events|userProperties`."""
    emulator = _emulator(request)
    kind = request.query_params.get("type")
    if kind == "events":
        rows = emulator.store.query(
            "SELECT evt_name FROM events GROUP BY evt_key ORDER BY MIN(id)"
        )
        names = [{"name": row["evt_name"]} for row in rows]
        return json_response({"status": "success", "events": names})
    if kind == "userProperties":
        keys: dict[str, None] = {}
        for row in emulator.store.query("SELECT profile_data FROM profiles"):
            keys.update(dict.fromkeys(loads(row["profile_data"])))
        props = [{"name": key} for key in keys]
        return json_response({"status": "success", "userProperties": props})
    return fail(400, "type must be events or userProperties")


# -- profile maintenance ---------------------------------------------------------
def _values(value: object) -> list[str] | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return [str(v) for v in value]
    return None


_OBJECT_ID_BY = {
    "identity": "SELECT object_id FROM profiles WHERE identity = ?",
    "guid": "SELECT object_id FROM profiles WHERE object_id = ?",
}


async def delete_profiles(request: Request) -> Response:
    """`POST /1/delete/profiles.json` with `{identity}` or `{guid}`, at most 100."""
    emulator = _emulator(request)
    body = await _body(request)
    if body is None:
        return fail(400, "Malformed request")
    if ("identity" in body) == ("guid" in body):
        return fail(400, "Send either identity or guid, not both and not neither")
    field = "identity" if "identity" in body else "guid"
    values = _values(body[field])
    if not values:
        return fail(400, f"{field} must be a string or a list of strings")
    if len(values) > MAX_MAINTENANCE_VALUES:
        # The text CleverTap answered a 1000-identity delete, as reported in
        # rudderlabs/rudder-transformer PR #1720 (2022-12-20); its HTTP status
        # and code were not reported.
        return fail(400, f"Max {MAX_MAINTENANCE_VALUES} are allowed")
    select = _OBJECT_ID_BY[field]
    with emulator.store.transaction() as conn:
        for value in values:
            row = conn.execute(select, (value,)).fetchone()
            if row is None:
                continue
            object_id = row["object_id"]
            conn.execute("DELETE FROM events WHERE object_id = ?", (object_id,))
            conn.execute("DELETE FROM tokens WHERE object_id = ?", (object_id,))
            conn.execute("DELETE FROM profiles WHERE object_id = ?", (object_id,))
    return json_response({"status": "success"})


_MOVE_OBJECT_ID = (
    "UPDATE events SET object_id = ? WHERE object_id = ?",
    "UPDATE tokens SET object_id = ? WHERE object_id = ?",
    "UPDATE profiles SET object_id = ? WHERE object_id = ?",
)


async def demerge_profiles(request: Request) -> Response:
    """`POST /1/demerge/profiles.json` with `{identities: [...]}`, at most 100."""
    emulator = _emulator(request)
    body = await _body(request)
    if body is None:
        return fail(400, "Malformed request")
    values = _values(body.get("identities"))
    if not values:
        return fail(400, "identities must be a list of strings")
    if len(values) > MAX_MAINTENANCE_VALUES:
        return fail(400, f"At most {MAX_MAINTENANCE_VALUES} identities per request")
    with emulator.store.transaction() as conn:
        for value in values:
            row = conn.execute(
                "SELECT object_id FROM profiles WHERE identity = ?", (value,)
            ).fetchone()
            if row is None:
                continue
            fresh = new_object_id()
            for statement in _MOVE_OBJECT_ID:
                conn.execute(statement, (fresh, row["object_id"]))
    return json_response({"status": "success"})


def routes() -> list[Route]:
    """The routes of this module."""
    counts = [
        Route(
            f"/1/counts/{kind}.json",
            busy_aware(_counts_endpoint(kind)),
            methods=["GET", "POST"],
        )
        for kind in ("events", "profiles", "trends", "top")
    ]
    return [
        Route("/1/events.json", busy_aware(events_export), methods=["GET", "POST"]),
        Route("/1/profiles.json", busy_aware(profiles_export), methods=["GET", "POST"]),
        Route("/1/profile.json", busy_aware(profile_by_id), methods=["GET"]),
        *counts,
        Route("/1/targets/list.json", busy_aware(targets_list), methods=["POST"]),
        Route("/1/targets/result.json", busy_aware(targets_result), methods=["POST"]),
        Route("/1/message/report.json", busy_aware(message_report), methods=["POST"]),
        Route("/getSchema", busy_aware(get_schema), methods=["GET"]),
        Route("/1/delete/profiles.json", delete_profiles, methods=["POST"]),
        Route("/1/demerge/profiles.json", demerge_profiles, methods=["POST"]),
    ]
