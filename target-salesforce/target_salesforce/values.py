"""Pure record values: reading paths, type conversion, templates, reject codes.

Nothing here does I/O. `payloads` turns records into request items with these.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import quote

import msgspec

from target_salesforce.mapping import PLACEHOLDER

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

# Local reject codes (Salesforce's own codes come through unchanged).
CODE_MISSING_KEY: Final = "MISSING_KEY"
CODE_DUPLICATE_KEY: Final = "DUPLICATE_KEY_IN_BATCH"
CODE_CONVERSION: Final = "INVALID_TYPE_CONVERSION"
CODE_RESTRICTED_PICKLIST: Final = "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
CODE_STRING_TOO_LONG: Final = "STRING_TOO_LONG"
CODE_LOCK_ROW: Final = "UNABLE_TO_LOCK_ROW"
CODE_APEX_RESULTS_MISMATCH: Final = "APEX_RESULTS_MISMATCH"

JsonValue: TypeAlias = Any
"""A record or payload value: JSON data, plus Decimal and datetime from the SDK."""

_EPOCH_MS_FLOOR: Final = 100_000_000_000
_COMPACT_DATETIME: Final = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$")
_COMPACT_DATE: Final = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
# JSON with Decimals as numbers with all their digits (the SDK reads JSON numbers
# with a fraction as Decimal; Number and Currency fields hold up to 18 digits,
# which a float cannot): `1234567890123456.78` stays that, never
# `1234567890123456.8`. The standard json module cannot write a Decimal at all.
_JSON: Final = msgspec.json.Encoder(decimal_format="number")
_TRUE: Final = frozenset({"true", "t", "yes", "y", "1"})
_FALSE: Final = frozenset({"false", "f", "no", "n", "0"})


class _Missing:
    """No value at all: the field is left out (unlike None, which is null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class RecordError(Exception):
    """A record cannot be sent; it becomes a reject with this code."""

    def __init__(self, code: str, message: str, fields: Sequence[str] = ()) -> None:
        """Keep the reject details."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = list(fields)


def get_path(record: Mapping[str, Any], path: str) -> JsonValue:
    """Read a dotted path (`profile.email`) from a record; MISSING if absent."""
    node: Any = record
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return MISSING
    return node


def _format_datetime(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def exact_number(number: decimal.Decimal) -> int | decimal.Decimal:
    """A whole Decimal as int; any other stays the Decimal, every digit kept."""
    if number == number.to_integral_value():
        return int(number)
    return number


def decimal_text(number: decimal.Decimal) -> str:
    """A Decimal as plain text, never in exponent form (`0.0000001`, not `1E-7`)."""
    return format(number, "f")


def json_safe(value: JsonValue) -> JsonValue:
    """Make a record value JSON-serialisable (datetime, date, time).

    A Decimal with a fraction stays a Decimal (`encode_json` writes it with all
    its digits); a whole one becomes an int.
    """
    if isinstance(value, decimal.Decimal):
        return exact_number(value)
    if isinstance(value, dt.datetime):
        return _format_datetime(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def encode_json(value: JsonValue) -> bytes:
    """Compact UTF-8 JSON of a record value or request body, Decimals exact."""
    return _JSON.encode(json_safe(value))


def dumps(value: JsonValue) -> str:
    """Compact JSON of a record value (as text)."""
    return encode_json(value).decode("utf-8")


def _from_epoch(number: decimal.Decimal | float) -> dt.datetime:
    seconds = float(number)
    if abs(seconds) >= _EPOCH_MS_FLOOR:
        seconds /= 1000
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def to_datetime(value: JsonValue) -> dt.datetime:
    """Parse a datetime from datetime, date, ISO text, epoch or yyyymmddHHMMSS.

    Raises:
        ValueError: when the value is not a recognisable point in time.
    """
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, int | float | decimal.Decimal):
        return _compact(str(value)) or _from_epoch(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("$D_"):
            return _from_epoch(decimal.Decimal(text[3:]))
        compact = _compact(text)
        if compact:
            return compact
        parsed = dt.datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise TypeError(value)


def _compact(text: str) -> dt.datetime | None:
    """Parse CleverTap-style `yyyymmddHHMMSS` or `yyyymmdd` numbers and strings."""
    match = _COMPACT_DATETIME.match(text) or _COMPACT_DATE.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second = (
        [int(p) for p in match.groups()] + [0] * 3
    )[:6]
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


def _to_number(value: JsonValue) -> int | float | decimal.Decimal:
    """A number; a Decimal or numeric text keeps all its digits (no float)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value
    number = decimal.Decimal(str(value).strip())
    if not number.is_finite():
        raise ValueError(value)
    return exact_number(number)


def _to_bool(value: JsonValue) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | decimal.Decimal):
        if value in {0, 1}:
            return bool(value)
        raise ValueError(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(value)


def _to_date(value: JsonValue) -> str:
    return to_datetime(value).date().isoformat()


def _to_datetime_text(value: JsonValue) -> str:
    return _format_datetime(to_datetime(value))


def _to_integer(value: JsonValue) -> int:
    number = _to_number(value)
    if not isinstance(number, int):
        raise TypeError(value)
    return number


def _to_multipicklist(value: JsonValue) -> str:
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    return str(value)


def _to_text(value: JsonValue) -> str:
    if isinstance(value, dict | list):
        return dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    safe = json_safe(value)
    return decimal_text(safe) if isinstance(safe, decimal.Decimal) else str(safe)


# field kind -> converter; any other kind is only made JSON-safe
_CONVERTERS: Final[dict[str, Callable[[JsonValue], JsonValue]]] = {
    "date": _to_date,
    "datetime": _to_datetime_text,
    "boolean": _to_bool,
    "number": _to_number,
    "integer": _to_integer,
    "multipicklist": _to_multipicklist,
    "json": dumps,
    "string": _to_text,
    "picklist": _to_text,
}


def convert(value: JsonValue, kind: str) -> JsonValue:
    """Convert one value to what Salesforce expects for a field kind.

    None stays None. Raises ValueError (or TypeError) on values that do not fit.
    """
    if value is None:
        return None
    return _CONVERTERS.get(kind, json_safe)(value)


def render_template(template: str, record: Mapping[str, Any]) -> JsonValue:
    """Fill `{path}` placeholders from the record.

    A template that is exactly one placeholder returns the raw (JSON-safe) value,
    so `"{score}"` stays a number; otherwise the result is a string, with absent
    or null values rendered empty.
    """
    whole = PLACEHOLDER.fullmatch(template)
    if whole:
        value = get_path(record, whole.group(1))
        return None if value is MISSING else json_safe(value)

    def fill(match: re.Match[str]) -> str:
        value = get_path(record, match.group(1))
        if value is MISSING or value is None:
            return ""
        safe = json_safe(value)
        return safe if isinstance(safe, str) else dumps(safe)

    return PLACEHOLDER.sub(fill, template)


def render_payload(template: JsonValue, record: Mapping[str, Any]) -> JsonValue:
    """Render an Apex payload template: strings are templates, containers recurse."""
    if isinstance(template, str):
        return render_template(template, record)
    if isinstance(template, dict):
        return {str(k): render_payload(v, record) for k, v in template.items()}
    if isinstance(template, list):
        return [render_payload(v, record) for v in template]
    return template


def render_path(template: str, record: Mapping[str, Any]) -> str:
    """Fill placeholders in an Apex path, URL-quoting each value as one segment."""

    def fill(match: re.Match[str]) -> str:
        value = get_path(record, match.group(1))
        if value is MISSING or value is None:
            msg = f"the Apex path needs {match.group(1)!r}, which the record lacks"
            raise RecordError(CODE_MISSING_KEY, msg, [match.group(1)])
        safe = json_safe(value)
        return quote(safe if isinstance(safe, str) else dumps(safe), safe="")

    return PLACEHOLDER.sub(fill, template)
