"""Value typing: CleverTap's forms of dates, numbers, booleans, phones, keys."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from target_clevertap.payload_types import RecordReject
from target_clevertap.phones import quick_e164

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from target_clevertap.payload_types import _Out

#: Salesforce date-only fields that tap-salesforce sends as midnight-UTC date-times
KNOWN_DATE_FIELDS = frozenset({"Birthdate", "CloseDate", "ActivityDate", "DueDate"})
MAX_KEY_BYTES = 120
MAX_VALUE_BYTES = 512
#: text up to this many characters is within MAX_VALUE_BYTES whatever its UTF-8
SHORT_TEXT = MAX_VALUE_BYTES // 4
MAX_MULTI_ITEMS = 100
MAX_IDENTITY_CHARS = 1024
PLACEHOLDER_IDENTITIES = frozenset(
    {
        "",
        "undefined",
        "null",
        "na",
        "n/a",
        "0",
        "nil",
        "-1",
        "inf",
        "nan",
        "empty",
        "none",
        "xxxxxx",
    }
)
_PROHIBITED_KEY_CHARS = re.compile(r"[%><!|&.:;$'\"\\#]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_ADDRESS_KEYS = frozenset(
    {
        "street",
        "city",
        "state",
        "stateCode",
        "postalCode",
        "country",
        "countryCode",
        "latitude",
        "longitude",
        "geocodeAccuracy",
    }
)
_GENDERS = {"m": "M", "male": "M", "f": "F", "female": "F"}
_RESERVED = frozenset({"Email", "Phone", "Gender"})
_ONE_PERSON_REFS = frozenset({"Contact", "Lead", "Who"})
_RECORD_METADATA = "_sdc_"

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DAY: Final = _EPOCH.date().toordinal()
_DAY_SECONDS: Final = 86_400
_ONE_SECOND: Final = dt.timedelta(seconds=1)


def _as_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def parse_datetime(value: object) -> dt.datetime | dt.date | None:
    """Parse an ISO date or date-time string (or pass through date values).

    Args:
        value: a datetime, date or ISO-8601 string.

    Returns:
        The parsed value, or None when it cannot be parsed.
    """
    if isinstance(value, (dt.datetime, dt.date)):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if len(text) == len("2024-01-05"):
            return dt.date.fromisoformat(text)
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


_UTC_NAMES: Final = frozenset({"UTC", "Etc/UTC"})


def account_zone(name: object) -> dt.tzinfo:
    """The account time zone of the `timezone` setting (empty: UTC).

    Raises:
        ValueError: the name is not an IANA time zone.
    """
    text = str(name or "UTC").strip()
    if text in _UTC_NAMES:
        return dt.UTC  # the fast path of `_day_start`
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = (
            f"timezone: unknown IANA time zone {text!r} (use the account's zone "
            "as in the CleverTap dashboard, e.g. 'UTC', 'Asia/Kolkata')"
        )
        raise ValueError(msg) from exc


@functools.lru_cache(maxsize=8192)
def _midnight(ordinal: int, zone: dt.tzinfo) -> int:
    """Epoch seconds of 00:00 on the day `ordinal` in `zone`.

    Where a DST change skips midnight, the first instant of that day (the
    offset before the change applies, as `zoneinfo` does with ``fold=0``).
    """
    day = dt.date.fromordinal(ordinal)
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=zone).timestamp())


def _day_start(ordinal: int, zone: dt.tzinfo | None) -> int:
    if zone is None or zone is dt.UTC:
        return (ordinal - _EPOCH_DAY) * _DAY_SECONDS
    return _midnight(ordinal, zone)


#: distinct date texts whose epoch seconds are kept (dates repeat: birthdays,
#: close dates, activity dates); bounded, so memory does not grow with the input
DATE_CACHE_SIZE: Final = 16_384


def epoch_seconds(
    value: object, *, date_only: bool = False, zone: dt.tzinfo | None = None
) -> int | None:
    """Epoch seconds of a date/date-time value.

    Date-only values become midnight of their calendar day in `zone` (the
    account time zone; UTC when None), whatever the process time zone. A
    date-time flagged date-only (tap-salesforce sends `Birthdate` as
    `1990-05-17T00:00:00.000000Z`) keeps its UTC calendar day. Texts are
    converted once (a bounded cache keyed on the text, `date_only` and `zone`).

    Args:
        value: a datetime, date or ISO string.
        date_only: treat as a calendar date.
        zone: the account time zone for date-only values.

    Returns:
        Epoch seconds, or None when the value is not a date.
    """
    if type(value) is str:
        return _text_epoch(value, date_only, zone)
    return _epoch(value, date_only=date_only, zone=zone)


@functools.lru_cache(maxsize=DATE_CACHE_SIZE)
def _text_epoch(text: str, date_only: bool, zone: dt.tzinfo | None) -> int | None:  # noqa: FBT001 - positional for the cache's speed
    return _epoch(text, date_only=date_only, zone=zone)


def _epoch(value: object, *, date_only: bool, zone: dt.tzinfo | None) -> int | None:
    parsed = parse_datetime(value)
    if parsed is None:
        return None
    if isinstance(parsed, dt.datetime):
        utc = _as_utc(parsed)
        if date_only:
            return _day_start(utc.date().toordinal(), zone)
        return (utc - _EPOCH) // _ONE_SECOND
    return _day_start(parsed.toordinal(), zone)


def ct_date(
    value: object, *, date_only: bool = False, zone: dt.tzinfo | None = None
) -> str | None:
    """CleverTap date syntax `$D_<epoch seconds>`.

    Args:
        value: a datetime, date or ISO string.
        date_only: treat as a calendar date (sent as midnight in `zone`).
        zone: the account time zone for date-only values (None: UTC).

    Returns:
        The `$D_` string, or None when the value is not a date.
    """
    seconds = epoch_seconds(value, date_only=date_only, zone=zone)
    return None if seconds is None else f"$D_{seconds}"


def number(value: object) -> int | float:
    """A JSON number from Decimal/int/float/str.

    Args:
        value: the input.

    Returns:
        int when integral, else float.

    Raises:
        ValueError: when not a finite number.
    """
    if isinstance(value, bool):
        return int(value)
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation as exc:
        msg = "not a number"
        raise ValueError(msg) from exc
    if not dec.is_finite():
        msg = "not a finite number"
        raise ValueError(msg)
    if dec == dec.to_integral_value():
        return int(dec)
    result = float(dec)
    if math.isinf(result):
        msg = "number out of range"
        raise ValueError(msg)
    return result


def boolean(value: object) -> bool:
    """A boolean from bool/number/string.

    Args:
        value: the input.

    Returns:
        The boolean.

    Raises:
        ValueError: when the value is not boolean-like.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Decimal, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"true", "t", "yes", "y", "1"}:
        return True
    if text in {"false", "f", "no", "n", "0", ""}:
        return False
    msg = "not a boolean"
    raise ValueError(msg)


def multi_values(value: object) -> list[str]:
    """A multi-picklist (`a;b;c`) or list as a deduplicated list of strings.

    Args:
        value: the input.

    Returns:
        The items, in first-seen order.
    """
    items: Iterable[Any]
    if isinstance(value, str):
        items = value.split(";")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = [value]
    seen: dict[str, None] = {}
    for item in items:
        if item is None:
            continue
        text = scalar_text(item).strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def scalar_text(value: object) -> str:
    """Text of a scalar (Decimal without exponent, dates as ISO).

    Args:
        value: the input.

    Returns:
        The text.
    """
    if type(value) is str:  # the common case
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Decimal, int, float)):
        num = number(value)
        return str(num)
    if isinstance(value, dt.datetime):
        return _as_utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _e164(text: str, default_country: str | None) -> str:
    region = (default_country or "").upper() or None
    quick = quick_e164(text, region)
    if quick is not None:
        return quick
    return _e164_slow(text, region)


@functools.lru_cache(maxsize=4096)
def _e164_slow(text: str, region: str | None) -> str:
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if region else " (set default_phone_country?)"
        msg = f"Phone is not a valid phone number{hint}"
        raise RecordReject(msg, code="invalid_phone", field_name="Phone") from exc
    if not phonenumbers.is_valid_number(parsed):
        msg = "Phone is not a valid phone number"
        raise RecordReject(msg, code="invalid_phone", field_name="Phone")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def normalise_phone(value: object, default_country: str | None) -> str:
    """A phone number in E.164 (`+14155551234`).

    Args:
        value: the phone number as entered.
        default_country: ISO country for numbers without a `+` prefix.

    Returns:
        The E.164 number.

    Raises:
        RecordReject: when it is not a valid number.
    """
    return _e164(scalar_text(value).strip(), default_country)


def normalise_email(value: object, field_name: str = "Email") -> str:
    """A trimmed, lower-cased, validated email.

    Args:
        value: the email.
        field_name: the field name for the reject.

    Returns:
        The email.

    Raises:
        RecordReject: when it is not a valid email.
    """
    text = scalar_text(value).strip().lower()
    if not _EMAIL.match(text):
        msg = f"{field_name} is not a valid email address"
        raise RecordReject(msg, code="invalid_email", field_name=field_name)
    return text


def sanitise_key(key: str) -> str:
    """Replace characters CleverTap prohibits in property keys with `_`.

    Args:
        key: the key.

    Returns:
        The sanitised key.
    """
    return _PROHIBITED_KEY_CHARS.sub("_", key).strip() or "_"


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _fit(text: str, limit: int, what: str, name: str, out: _Out) -> str:
    if len(text) * 4 <= limit or len(text.encode("utf-8")) <= limit:
        return text
    if out.opts.oversize == "reject":
        msg = f"{what} of {name!r} is over {limit} bytes"
        raise RecordReject(msg, code=f"{what}_too_long", field_name=name)
    out.warns.append(f"{what} of {name!r} truncated to {limit} bytes")
    return _truncate_utf8(text, limit)


def _flatten_address(name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    prefix = name.removesuffix("Address")
    return {f"{prefix}{k[:1].upper()}{k[1:]}": v for k, v in value.items()}


_DATE_HINTS: Final = frozenset({"date", "datetime"})
_SCALAR_HINTS: Final[Mapping[str, Callable[[object], object]]] = {
    "number": number,
    "boolean": boolean,
}


def _convert(
    key: str,
    value: object,
    hint: str | None,
    field_kind: str,
    out: _Out,
) -> object:
    """Convert one value to its CleverTap representation.

    `field_kind` is `date` (calendar date), `datetime`, or empty.
    """
    try:
        if hint == "string":
            return _fit(scalar_text(value), MAX_VALUE_BYTES, "value", key, out)
        if hint in _DATE_HINTS or field_kind:
            return _convert_date(key, value, hint, field_kind, out)
        scalar = _SCALAR_HINTS.get(hint) if hint is not None else None
        if scalar is not None:
            return scalar(value)
        if hint == "multi" or isinstance(value, (list, tuple)):
            return _convert_multi(key, value, out)
        if hint == "json" or isinstance(value, dict):
            return _fit(_json_text(value), MAX_VALUE_BYTES, "value", key, out)
    except ValueError as exc:
        msg = f"{key}: {exc}"
        raise RecordReject(msg, code="invalid_value", field_name=key) from exc
    return _convert_by_type(key, value, field_kind, out)


def _convert_items(key: str, value: object, out: _Out) -> list[dict[str, object]]:
    """A Charged event's `Items`: a list of flat objects (or its JSON text).

    CleverTap accepts an array of objects only as the `Items` of a `Charged` event;
    each item's values are converted like any other property value.
    """
    items = value
    if isinstance(value, str):
        try:
            items = json.loads(value)
        except ValueError:
            items = None
    if not isinstance(items, (list, tuple)) or not all(
        isinstance(item, dict) for item in items
    ):
        msg = f"{key}: items must be a list of objects"
        raise RecordReject(msg, code="invalid_value", field_name=key)
    converted: list[dict[str, object]] = []
    for item in items:
        clean: dict[str, object] = {}
        for raw_key, raw_value in item.items():
            if raw_value is None:
                continue
            item_key = sanitise_key(str(raw_key))
            if isinstance(raw_value, (list, tuple)):
                clean[item_key] = _convert_multi(item_key, raw_value, out)
            elif isinstance(raw_value, dict):
                clean[item_key] = _fit(
                    _json_text(raw_value), MAX_VALUE_BYTES, "value", item_key, out
                )
            else:
                clean[item_key] = _convert_by_type(item_key, raw_value, "", out)
        converted.append(clean)
    return converted


def _json_text(value: object) -> str:
    return json.dumps(value, default=scalar_text, separators=(",", ":"))


def _convert_date(
    key: str, value: object, hint: str | None, field_kind: str, out: _Out
) -> object:
    """A date or datetime value (by hint or by the field's schema format)."""
    converted = ct_date(
        value, date_only=field_kind == "date" or hint == "date", zone=out.opts.zone
    )
    if converted is not None:
        return converted
    if hint in _DATE_HINTS:
        msg = f"{key} is not a date"
        raise RecordReject(msg, code="invalid_value", field_name=key)
    return _fit(str(value), MAX_VALUE_BYTES, "value", key, out)


def _convert_multi(key: str, value: object, out: _Out) -> object:
    """A multi-value: a list of strings (capped), or JSON text when nested."""
    if isinstance(value, (list, tuple)) and any(
        isinstance(v, (dict, list)) for v in value
    ):
        return _fit(_json_text(value), MAX_VALUE_BYTES, "value", key, out)
    items = multi_values(value)
    if len(items) > MAX_MULTI_ITEMS:
        if out.opts.oversize == "reject":
            msg = f"{key} has more than {MAX_MULTI_ITEMS} values"
            raise RecordReject(msg, code="too_many_values", field_name=key)
        out.warns.append(f"{key!r} cut to {MAX_MULTI_ITEMS} values")
        items = items[:MAX_MULTI_ITEMS]
    return [_fit(i, MAX_VALUE_BYTES, "value", key, out) for i in items]


def _convert_by_type(key: str, value: object, field_kind: str, out: _Out) -> object:
    """A value with no type hint: by its Python type."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (Decimal, int, float)):
        try:
            return number(value)
        except ValueError as exc:
            msg = f"{key}: {exc}"
            raise RecordReject(msg, code="invalid_value", field_name=key) from exc
    if isinstance(value, (dt.datetime, dt.date)):
        return ct_date(value, date_only=field_kind == "date", zone=out.opts.zone)
    return _fit(str(value), MAX_VALUE_BYTES, "value", key, out)
