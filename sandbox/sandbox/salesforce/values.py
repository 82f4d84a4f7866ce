"""Field values: parsing what clients send, formatting what the API serves."""

from __future__ import annotations

# ruff: noqa: ANN401 - record values are arbitrary JSON
import datetime as dt
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from sandbox.salesforce.schema import Field

UTC = dt.UTC
_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no", ""})


class FieldValueError(ValueError):
    """A value that does not fit its field; carries the Salesforce status code."""

    def __init__(self, code: str, message: str) -> None:
        """Keep the Salesforce error code and message."""
        super().__init__(message)
        self.code = code
        self.message = message


def format_datetime(value: dt.datetime) -> str:
    """Salesforce's date-time form: `2024-01-15T02:33:33.000+0000`."""
    value = value.astimezone(UTC)
    return (
        value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
    )


def now_text() -> str:
    """The current time, formatted as Salesforce serves it."""
    return format_datetime(dt.datetime.now(UTC))


def parse_datetime(text: str) -> dt.datetime:
    """Parse an ISO-8601 date-time (or date) into an aware UTC datetime.

    Raises:
        ValueError: not a date or date-time.
    """
    match = _DATETIME_RE.match(text.strip())
    if not match:
        msg = f"not a date-time: {text!r}"
        raise ValueError(msg)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = UTC
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = dt.timezone(sign * offset)
    value = dt.datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
        tzinfo=tz,
    )
    return value.astimezone(UTC)


def parse_date(text: str) -> dt.date:
    """Parse `YYYY-MM-DD` (a date-time is cut to its date).

    Raises:
        ValueError: not a date.
    """
    return dt.date.fromisoformat(text.strip()[:10])


def _number(field: Field, value: Any) -> float:
    if isinstance(value, bool):
        raise _bad_type(field, value)
    try:
        number = float(value) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise _bad_type(field, value) from None
    if field.type == "int":
        if float(number) != int(number):
            raise _bad_type(field, value)
        return int(number)
    return float(number)


def _boolean(field: Field, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise _bad_type(field, value)


def _datetime(field: Field, value: Any) -> str:
    try:
        return format_datetime(parse_datetime(str(value)))
    except ValueError:
        raise _bad_type(field, value) from None


def _date(field: Field, value: Any) -> str:
    try:
        return parse_date(str(value)).isoformat()
    except ValueError:
        raise _bad_type(field, value) from None


def _text(field: Field, value: Any) -> str | None:
    if isinstance(value, (dict, list)):
        raise _bad_type(field, value)
    text = value if isinstance(value, str) else _plain(value)
    if field.length and len(text) > field.length:
        msg = f"{field.label or field.name}: data value too large: {text[:40]}"
        msg += f" (max length={field.length})"
        raise FieldValueError(code="STRING_TOO_LONG", message=msg)
    if field.type == "email" and text and not _EMAIL_RE.match(text):
        msg = f"{field.name}: invalid email address: {text}"
        raise FieldValueError(code="INVALID_EMAIL_ADDRESS", message=msg)
    if (
        field.type == "picklist"
        and field.restricted_picklist
        and text not in field.picklist
    ):
        msg = f"bad value for restricted picklist field: {text}"
        raise FieldValueError(
            code="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", message=msg
        )
    return text or None


# Field type -> converter; every other type is stored as text.
_CONVERTERS: dict[str, Callable[[Field, Any], Any]] = {
    "double": _number,
    "currency": _number,
    "percent": _number,
    "int": _number,
    "boolean": _boolean,
    "datetime": _datetime,
    "date": _date,
}


def coerce(field: Field, value: Any) -> Any:
    """Turn a client value into the stored form for `field`, or raise.

    Raises:
        FieldValueError: the value cannot be stored in the field.
    """
    if value is None:
        return None
    convert = _CONVERTERS.get(field.type)
    return _text(field, value) if convert is None else convert(field, value)


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _bad_type(field: Field, value: Any) -> FieldValueError:
    shown = str(value)[:60]
    return FieldValueError(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        f"{field.name}: value not of required type: {shown}",
    )


def csv_cell(value: Any) -> str:
    """A stored value as a Bulk API CSV cell (null is empty)."""
    return "" if value is None else _plain(value)
