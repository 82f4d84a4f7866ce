"""Pure record shaping shared by every stream: names, types, values, columns.

Nothing here does I/O. Records are shaped for row stores and Salesforce: flat,
one scalar per column, identity columns present, datetimes as ISO UTC strings.
Event rows are built in `event_records`, profile rows in `profile_records`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import re
import unicodedata
from typing import TYPE_CHECKING, Any, TypeAlias

import msgspec

from tap_clevertap.timeutil import iso_utc, local_midnight, parse_account_ts

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from zoneinfo import ZoneInfo

EVENT_STREAM_PREFIX = "events_"
_NON_WORD = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_DATE_PREFIX = "$D_"
_SUFFIX_HEX = 8

# Column types a CleverTap schema type maps to (JSON-schema type, format).
STRING = "string"
INTEGER = "integer"
NUMBER = "number"
BOOLEAN = "boolean"
DATETIME = "date-time"
_TYPE_ALIASES: dict[str, str] = {
    "string": STRING,
    "str": STRING,
    "text": STRING,
    "integer": INTEGER,
    "int": INTEGER,
    "long": INTEGER,
    "number": NUMBER,
    "float": NUMBER,
    "double": NUMBER,
    "decimal": NUMBER,
    "numeric": NUMBER,
    "boolean": BOOLEAN,
    "bool": BOOLEAN,
    "date": DATETIME,
    "datetime": DATETIME,
    "date-time": DATETIME,
    "timestamp": DATETIME,
}


def snake(text: str) -> str:
    """Lower snake_case of a CleverTap name: ``"Customer Type"`` -> ``customer_type``.

    camelCase boundaries split (``objectId`` -> ``object_id``); accents fold to
    ASCII; every run of other characters becomes one underscore.
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_WORD.sub("_", _CAMEL.sub("_", folded).lower()).strip("_")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_SUFFIX_HEX]


def event_stream_names(event_names: Iterable[str]) -> dict[str, str]:
    """Map each raw event name to a Meltano-selectable stream name.

    ``"Opportunity Won"`` -> ``events_opportunity_won``. A name whose snake form is
    empty, or shared with another name (``"Sign-Up"`` / ``"Sign Up"``), gets
    ``_<first 8 hex digits of sha256(raw name)>`` appended instead, for every name
    in the clash, so a stream name never depends on the order names arrive in.

    Args:
        event_names: raw CleverTap event names.

    Returns:
        raw name -> stream name.
    """
    names = sorted(set(event_names))
    slugs = {name: snake(name) for name in names}
    counts: dict[str, int] = {}
    for slug in slugs.values():
        counts[slug] = counts.get(slug, 0) + 1
    result: dict[str, str] = {}
    for name, slug in slugs.items():
        if not slug:
            result[name] = f"{EVENT_STREAM_PREFIX}{_short_hash(name)}"
        elif counts[slug] > 1:
            result[name] = f"{EVENT_STREAM_PREFIX}{slug}_{_short_hash(name)}"
        else:
            result[name] = f"{EVENT_STREAM_PREFIX}{slug}"
    return result


def normalise_type(raw_type: object) -> str:
    """Map a CleverTap schema type name to a column type; unknown -> string."""
    if isinstance(raw_type, str):
        return _TYPE_ALIASES.get(raw_type.strip().lower(), STRING)
    return STRING


def parse_property_list(raw: object) -> dict[str, str]:
    """Read a property list from a ``/getSchema`` entry into ``{name: type}``.

    Accepts a list of ``{"name", "type"}`` objects, a list of names, or a mapping of
    name to type (or to an object with a ``type``).

    Args:
        raw: the value found in the schema entry.

    Returns:
        Property name -> normalised column type.
    """
    result: dict[str, str] = {}
    if isinstance(raw, dict):
        for name, spec in raw.items():
            kind = spec.get("type") if isinstance(spec, dict) else spec
            result[str(name)] = normalise_type(kind)
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, str):
                result[item] = STRING
            elif isinstance(item, dict) and item.get("name"):
                result[str(item["name"])] = normalise_type(
                    item.get("type", item.get("dataType"))
                )
    return result


def assign_columns(
    prefix: str, property_names: Iterable[str], taken: set[str]
) -> dict[str, str]:
    """Give each raw property a unique column name ``<prefix><snake name>``.

    Clashes (with `taken` or with each other) get ``_2``, ``_3``... in the sorted
    order of raw names. `taken` is updated in place.

    Args:
        prefix: column prefix such as ``prop_``.
        property_names: raw property names.
        taken: column names already used in the stream.

    Returns:
        raw property name -> column name.
    """
    result: dict[str, str] = {}
    for name in sorted(set(property_names)):
        base = f"{prefix}{snake(name) or _short_hash(name)}"
        column = base
        counter = 2
        while column in taken:
            column = f"{base}_{counter}"
            counter += 1
        taken.add(column)
        result[name] = column
    return result


def _to_string(value: object, zone: ZoneInfo) -> str | None:
    del zone
    if type(value) is str:
        return value or None
    if value is None:
        return None
    if isinstance(value, (dict, list, bool)):
        return canonical_json(value)
    return str(value)


def _to_boolean(value: object, zone: ZoneInfo) -> bool | None:
    del zone
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    return {"true": True, "false": False, "1": True, "0": False}.get(text)


def _as_float(value: object) -> float | None:
    """A number or numeric text as a float; None for null, "" and anything else."""
    if value == "" or not isinstance(value, str | int | float):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _to_integer(value: object, zone: ZoneInfo) -> int | None:
    del zone
    if type(value) is int:
        return value
    number = _as_float(value)
    return int(number) if number is not None and number.is_integer() else None


def _to_number(value: object, zone: ZoneInfo) -> float | int | None:
    del zone
    if type(value) is int or type(value) is float:
        return value if math.isfinite(value) else None
    number = _as_float(value)
    return number if number is not None and math.isfinite(number) else None


def _to_datetime(value: object, zone: ZoneInfo) -> str | None:
    if value is None or value == "":
        return None
    return coerce_datetime(value, zone)


_Converter: TypeAlias = "Callable[[object, ZoneInfo], object]"
_CONVERTERS: dict[str, _Converter] = {
    STRING: _to_string,
    BOOLEAN: _to_boolean,
    INTEGER: _to_integer,
    NUMBER: _to_number,
    DATETIME: _to_datetime,
}


def coerce(value: object, kind: str, zone: ZoneInfo) -> object:
    """Convert one CleverTap value to the column's type, or None when it cannot.

    Args:
        value: the exported value.
        kind: the column type (`STRING`, `INTEGER`, `NUMBER`, `BOOLEAN`, `DATETIME`).
        zone: account time zone (for 14-digit local timestamps).

    Returns:
        The converted value; lists, objects and booleans in string columns become
        canonical JSON text.
    """
    return _CONVERTERS.get(kind, _to_string)(value, zone)


def coerce_datetime(value: object, zone: ZoneInfo) -> str | None:
    """Read a CleverTap date value as an ISO UTC string.

    ``$D_<epoch seconds>`` is CleverTap's date syntax; see `ct_date_iso` for
    date-only values. Bare digit strings are read by length: 8 = local
    ``yyyyMMdd``, 12 = local ``yyyyMMddHHmm``, 14 = local ``yyyyMMddHHmmss``,
    13 = epoch milliseconds, otherwise epoch seconds.
    """
    text = str(value).strip()
    if text.startswith(_DATE_PREFIX):
        return ct_date_iso(text.removeprefix(_DATE_PREFIX), zone)
    if not text.isdigit():
        return None
    local = {8: "000000", 12: "00", 14: ""}
    if len(text) in local:
        try:
            return iso_utc(parse_account_ts(text + local[len(text)], zone))
        except ValueError:
            return None
    return _epoch_iso(text, millis=len(text) == _EPOCH_MS_DIGITS)


_EPOCH_MS_DIGITS = 13


@functools.lru_cache(maxsize=65536)  # profile dates repeat on every event row
def ct_date_iso(seconds_text: str, zone: ZoneInfo) -> str | None:
    """A ``$D_`` value's ISO text; date-only values keep their account-local day.

    target-clevertap sends a date-only value (Birthdate, CloseDate...) as
    midnight of its day in the account time zone. Such an instant (exactly the
    start of its local day) is written with the account's UTC offset, e.g.
    ``1990-05-17T00:00:00+05:30``: the same instant as in UTC, but its date
    part is the original date, which is what a date field takes. Any other
    instant is written in UTC as usual.

    Args:
        seconds_text: the digits after ``$D_`` (epoch seconds, maybe negative).
        zone: the account time zone.

    Returns:
        The ISO text, or None when the digits are not an epoch.
    """
    if not seconds_text.lstrip("-").isdigit():
        return None
    try:
        moment = dt.datetime.fromtimestamp(int(seconds_text), tz=dt.UTC)
        local = moment.astimezone(zone)
        if local_midnight(local.date(), zone) == moment:
            return local.isoformat()
    except (OverflowError, OSError, ValueError):
        return None
    return iso_utc(moment)


def _epoch_iso(text: str, *, millis: bool) -> str | None:
    if not text.lstrip("-").isdigit():
        return None
    seconds = int(text) // 1000 if millis else int(text)
    try:
        return iso_utc(dt.datetime.fromtimestamp(seconds, tz=dt.UTC))
    except (OverflowError, OSError, ValueError):
        return None


def lift_object_id(profile: Mapping[str, Any]) -> str | None:
    """The profile's CleverTap objectId, from the top level or ``platformInfo``."""
    direct = profile.get("objectId")
    if direct:
        return str(direct)
    for info in profile.get("platformInfo") or []:
        if isinstance(info, dict) and info.get("objectId"):
            return str(info["objectId"])
    return None


def canonical_json(value: object) -> str:
    """Serialise a JSON value deterministically (the event-key input format).

    msgspec's JSON encoder with ``order="sorted"``: object keys sorted at every
    level, no whitespace, non-ASCII text kept as UTF-8. This is the same text as
    ``json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    except for float exponents, written without ``+`` or leading zeros
    (``1e16``, ``1e-7``). Numbers keep their exported form (``2`` vs ``2.0``).
    """
    return _CANONICAL.encode(value).decode("utf-8")


_CANONICAL = msgspec.json.Encoder(order="sorted", enc_hook=str)


def scalar_str(value: object) -> str | None:
    """A string for identity-like fields (numbers become their decimal text)."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def json_or_none(value: object) -> str | None:
    """Canonical JSON text of a non-empty container, else None."""
    if value in (None, {}, []):
        return None
    return canonical_json(value)


def value_type(value: object) -> str | None:
    """The column type a single exported value suggests (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, str) and value.startswith(_DATE_PREFIX):
        return DATETIME
    return STRING


def infer_types(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Column types for the properties seen in sample `rows`.

    Integers mixed with floats become numbers; any other mix becomes string, as
    does a property only ever seen as null.
    """
    seen: dict[str, set[str]] = {}
    for row in rows:
        for name, value in row.items():
            kinds = seen.setdefault(str(name), set())
            kind = value_type(value)
            if kind is not None:
                kinds.add(kind)
    result: dict[str, str] = {}
    for name, kinds in seen.items():
        if len(kinds) == 1:
            result[name] = next(iter(kinds))
        elif kinds == {INTEGER, NUMBER}:
            result[name] = NUMBER
        else:
            result[name] = STRING
    return result


_DESCRIPTION = re.compile(r'^CleverTap (event property|profile property) (".*")$')


def columns_in_schema(
    properties: Mapping[str, Any], source: str
) -> dict[str, tuple[str, str]]:
    """Recover ``raw name -> (column, type)`` from a catalog schema of this tap.

    Each generated column's description names its raw property (see
    `Columns.schema`), so a catalog saved (and trimmed) by Meltano maps back.
    """
    result: dict[str, tuple[str, str]] = {}
    for column, spec in properties.items():
        if not isinstance(spec, dict):
            continue
        match = _DESCRIPTION.match(str(spec.get("description") or ""))
        if not match or match.group(1) != source:
            continue
        kinds = spec.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
        kind = next((k for k in kinds if k != "null"), STRING)
        if spec.get("format") == "date-time":
            kind = DATETIME
        result[str(json.loads(match.group(2)))] = (str(column), kind)
    return result


# -- JSON schema fragments -------------------------------------------------------


def column_schema(kind: str, description: str | None = None) -> dict[str, Any]:
    """A nullable JSON-schema property for a column type."""
    prop: dict[str, Any]
    if kind == DATETIME:
        prop = {"type": ["string", "null"], "format": "date-time"}
    else:
        prop = {"type": [kind, "null"]}
    if description:
        prop["description"] = description
    return prop


def object_schema(
    properties: Mapping[str, dict[str, Any]], required: Iterable[str] = ()
) -> dict[str, Any]:
    """Wrap properties into an object schema (required ones made non-null)."""
    props = {name: dict(spec) for name, spec in properties.items()}
    for name in required:
        kind = props[name]["type"]
        props[name]["type"] = kind[0] if isinstance(kind, list) else kind
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


@dataclasses.dataclass(frozen=True)
class Columns:
    """Typed columns for one group of CleverTap properties."""

    source: str
    columns: dict[str, tuple[str, str]]  # raw name -> (column, type)

    @classmethod
    def build(
        cls, source: str, prefix: str, types: Mapping[str, str], taken: set[str]
    ) -> Columns:
        """Name columns for `types` (raw name -> type) with `prefix`."""
        names = assign_columns(prefix, types, taken)
        return cls(source, {raw: (names[raw], types[raw]) for raw in names})

    @classmethod
    def from_schema(cls, source: str, schema: Mapping[str, Any]) -> Columns:
        """The columns a catalog schema of this tap declares for `source`."""
        return cls(source, columns_in_schema(schema.get("properties") or {}, source))

    def schema(self) -> dict[str, dict[str, Any]]:
        """JSON-schema properties; each description names the raw property."""
        return {
            column: column_schema(
                kind, f"CleverTap {self.source} {json.dumps(raw, ensure_ascii=False)}"
            )
            for raw, (column, kind) in self.columns.items()
        }

    @functools.cached_property
    def _plan(self) -> tuple[tuple[str, str, _Converter], ...]:
        return tuple(
            (raw, column, _CONVERTERS.get(kind, _to_string))
            for raw, (column, kind) in self.columns.items()
        )

    def fill(
        self, record: dict[str, Any], values: Mapping[str, Any], zone: ZoneInfo
    ) -> None:
        """Write every known column (None when absent) into `record`."""
        get = values.get
        for raw, column, convert in self._plan:
            record[column] = convert(get(raw), zone)
