"""Pure functions from Singer records to CleverTap upload records (no I/O)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from target_clevertap.exprlang import ExpressionError
from target_clevertap.phones import quick_e164

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from target_clevertap.exprlang import Expression
    from target_clevertap.mapping import (
        EventSpec,
        IdentitySpec,
        PropertySpec,
        StreamMapping,
    )

    Resolver = Callable[[str, str], list[str]]

#: Salesforce date-only fields that tap-salesforce sends as midnight-UTC date-times
KNOWN_DATE_FIELDS = frozenset({"Birthdate", "CloseDate", "ActivityDate", "DueDate"})
MAX_KEY_BYTES = 120
MAX_VALUE_BYTES = 512
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


class RecordReject(Exception):  # noqa: N818 - a record outcome, not an error
    """A record that cannot become a valid upload record."""

    def __init__(
        self, message: str, *, code: str, field_name: str | None = None
    ) -> None:
        """Create it.

        Args:
            message: a human-readable reason (no record values).
            code: a short machine-readable reason.
            field_name: the field at fault, if any.
        """
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field_name


class UnresolvedReference(Exception):  # noqa: N818 - a record outcome
    """A reference (WhoId, ContactId, ...) whose person is not known yet."""

    def __init__(
        self, obj: str, ref_field: str, value: str, *, seen: bool = False
    ) -> None:
        """Create it.

        Args:
            obj: the referenced object.
            ref_field: the reference field.
            value: the referenced Id.
            seen: the referenced record was seen and names nobody (as opposed
                to never seen).
        """
        super().__init__(f"{ref_field} {value} ({obj}) is not a known person")
        self.obj = obj
        self.field = ref_field
        self.value = value
        self.seen = seen


@dataclass(frozen=True)
class PayloadOptions:
    """Settings that shape payloads."""

    null_values: Literal["skip", "send"] = "skip"
    oversize: Literal["truncate", "reject"] = "truncate"
    default_phone_country: str | None = None
    event_key_property: str = "ct_event_key"
    max_event_properties: int = 100
    #: the account time zone (`timezone` setting): date-only values are sent as
    #: midnight of their day in it
    zone: dt.tzinfo = dt.UTC
    #: what `config` names in `when:` conditions (`stream_map_config`, as for stream
    #: maps)
    map_config: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Out:
    """Options plus the warnings collected while building one record."""

    opts: PayloadOptions
    warns: list[str]
    #: remembered values of the record's tracked fields (change tracking)
    previous: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SchemaInfo:
    """What the stream schema says about fields."""

    fields: frozenset[str] = frozenset()
    date_fields: frozenset[str] = frozenset()
    datetime_fields: frozenset[str] = frozenset()

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any]) -> SchemaInfo:
        """Read formats from a JSON schema.

        Args:
            schema: the stream's JSON schema.

        Returns:
            The info.
        """
        props: Mapping[str, Any] = schema.get("properties") or {}
        dates: set[str] = set()
        datetimes: set[str] = set()
        for name, prop in props.items():
            formats = _formats(prop)
            if "date" in formats:
                dates.add(name)
            elif "date-time" in formats:
                datetimes.add(name)
        return cls(frozenset(props), frozenset(dates), frozenset(datetimes))


def _formats(prop: object) -> set[str]:
    if not isinstance(prop, dict):
        return set()
    found = {prop["format"]} if isinstance(prop.get("format"), str) else set()
    for key in ("anyOf", "oneOf"):
        for sub in prop.get(key) or []:
            found |= _formats(sub)
    return found


@dataclass
class UploadItem:
    """One CleverTap upload record plus what the target needs to track it."""

    kind: Literal["profile", "event"]
    payload: dict[str, Any]
    event_key: str | None = None
    event_name: str | None = None
    ts: int | None = None


@dataclass
class BuildResult:
    """What one input record becomes."""

    items: list[UploadItem] = field(default_factory=list)
    skipped: str | None = None
    warnings: list[str] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ value typing


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


def epoch_seconds(
    value: object, *, date_only: bool = False, zone: dt.tzinfo | None = None
) -> int | None:
    """Epoch seconds of a date/date-time value.

    Date-only values become midnight of their calendar day in `zone` (the
    account time zone; UTC when None), whatever the process time zone. A
    date-time flagged date-only (tap-salesforce sends `Birthdate` as
    `1990-05-17T00:00:00.000000Z`) keeps its UTC calendar day.

    Args:
        value: a datetime, date or ISO string.
        date_only: treat as a calendar date.
        zone: the account time zone for date-only values.

    Returns:
        Epoch seconds, or None when the value is not a date.
    """
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


def _reserved(key: str, value: object, opts: PayloadOptions) -> object:
    if key == "Email":
        return normalise_email(value)
    if key == "Phone":
        return normalise_phone(value, opts.default_phone_country)
    if key == "Gender":
        gender = _GENDERS.get(scalar_text(value).strip().lower())
        if gender is None:
            msg = "Gender must be M or F (or Male/Female)"
            raise RecordReject(msg, code="invalid_gender", field_name="Gender")
        return gender
    if key.startswith("MSG-"):
        try:
            return boolean(value)
        except ValueError as exc:
            msg = f"{key} is not a boolean"
            raise RecordReject(msg, code="invalid_value", field_name=key) from exc
    return value


def _out_key(spec: PropertySpec, raw_key: str, out: _Out) -> str:
    out_key = sanitise_key(spec.rename.get(raw_key, raw_key))
    if len(out_key.encode("utf-8")) <= MAX_KEY_BYTES:
        spec.key_cache[raw_key] = out_key
        return out_key
    return _fit(out_key, MAX_KEY_BYTES, "key", raw_key, out)


def _field_kind(name: str, schema: SchemaInfo) -> str:
    if name in schema.date_fields or name in KNOWN_DATE_FIELDS:
        return "date"
    if name in schema.datetime_fields:
        return "datetime"
    return ""


def build_properties(
    record: Mapping[str, Any],
    spec: PropertySpec,
    schema: SchemaInfo,
    out: _Out,
    *,
    profile: bool,
) -> dict[str, Any]:
    """Build `profileData` / `evtData` from a record.

    Args:
        record: the input record (SDK-parsed: Decimal, datetime values).
        spec: the property spec.
        schema: the stream's schema info.
        out: payload options, and the list receiving truncation warnings.
        profile: whether this is profileData (reserved keys, Name derivation).

    Returns:
        The properties.

    Raises:
        RecordReject: when a value is invalid.
    """
    props = _record_values(record, spec, schema, out, profile=profile)
    if spec.invert:
        _add_inverted(props, record, spec)
    if spec.opt_out:
        _add_opt_outs(props, record, spec)
    if profile and spec.derive_name and not props.get("Name"):
        _derive_name(props, record, out)
    _add_previous(props, spec, schema, out, profile=profile)
    for key, value in spec.constants.items():
        props[sanitise_key(str(key))] = value
    return props


def _property_names(record: Mapping[str, Any], spec: PropertySpec) -> list[str]:
    """The record fields that become properties (inverted ones are added apart)."""
    if spec.include is None:
        return [
            n
            for n in record
            if n not in spec.exclude
            and n not in spec.invert
            and n not in spec.opt_out
            and not n.startswith(_RECORD_METADATA)
        ]
    return [n for n in spec.include if n not in spec.exclude]


def _record_values(
    record: Mapping[str, Any],
    spec: PropertySpec,
    schema: SchemaInfo,
    out: _Out,
    *,
    profile: bool,
) -> dict[str, Any]:
    """The converted values of the record's fields (addresses flattened)."""
    props: dict[str, Any] = {}
    if spec.include is None:
        for name in _property_names(record, spec):
            _put_field(
                props,
                name,
                record.get(name),
                spec=spec,
                schema=schema,
                out=out,
                profile=profile,
            )
        return props
    send_nulls = out.opts.null_values == "send"
    for name, out_key, hint, kind, reserved in _plan(spec, schema, profile=profile):
        value = record.get(name)
        if value is None:
            if send_nulls:
                props[out_key] = None
            continue
        if not out_key or type(value) is dict:  # long keys, addresses
            _put_field(
                props, name, value, spec=spec, schema=schema, out=out, profile=profile
            )
            continue
        props[out_key] = _value(out_key, value, hint, kind, out, reserved=reserved)
    return props


def _is_reserved(out_key: str, *, profile: bool) -> bool:
    """Whether a profile key gets CleverTap's reserved-key treatment."""
    return profile and (out_key in _RESERVED or out_key.startswith("MSG-"))


def _value(  # noqa: PLR0913 - one field's decisions, made by the caller
    out_key: str,
    value: object,
    hint: str | None,
    kind: str,
    out: _Out,
    *,
    reserved: bool,
) -> object:
    """One non-null value in its CleverTap form (plain text passes as it is)."""
    converted: object
    if hint == "items":
        converted = _convert_items(out_key, value, out)
    elif hint is None and not kind and type(value) is str:
        converted = value
        if len(value) * 4 > MAX_VALUE_BYTES:
            converted = _fit(value, MAX_VALUE_BYTES, "value", out_key, out)
    else:
        converted = _convert(out_key, value, hint, kind, out)
    return _reserved(out_key, converted, out.opts) if reserved else converted


#: (field, output key or "" when it needs the general path, hint, kind, reserved)
_PlanItem = tuple[str, str, str | None, str, bool]


def _plan(spec: PropertySpec, schema: SchemaInfo, *, profile: bool) -> list[_PlanItem]:
    """Per-field decisions of an `include` list, made once per stream."""
    cache_key = (id(schema), profile)
    cached = spec.plans.get(cache_key)
    if cached is not None and cached[0] is schema:
        return cached[1]
    plan: list[_PlanItem] = []
    for name in _property_names({}, spec):
        out_key = sanitise_key(spec.rename.get(name, name))
        if len(out_key.encode("utf-8")) > MAX_KEY_BYTES:
            out_key = ""
        hint = spec.types.get(name)
        if profile and out_key == "DOB":
            hint = hint or "date"
        reserved = _is_reserved(out_key, profile=profile)
        plan.append((name, out_key, hint, _field_kind(name, schema), reserved))
    spec.plans[cache_key] = (schema, plan)
    return plan


def _put_field(  # noqa: PLR0913 - the pieces of one field's conversion
    props: dict[str, Any],
    name: str,
    value: object,
    *,
    spec: PropertySpec,
    schema: SchemaInfo,
    out: _Out,
    profile: bool,
) -> None:
    """Convert one field (flattening an address) into `props`."""
    hint = spec.types.get(name)
    parts: Iterable[tuple[str, Any]]
    if (
        isinstance(value, dict)
        and spec.flatten_addresses
        and hint is None
        and (set(value) <= _ADDRESS_KEYS or name.endswith("Address"))
    ):
        parts = _flatten_address(name, value).items()
    else:
        parts = ((name, value),)
    for raw_key, raw_value in parts:
        if raw_value is None:
            if out.opts.null_values == "send":
                out_key = spec.rename.get(raw_key, raw_key)
                props[sanitise_key(out_key)] = None
            continue
        out_key = spec.key_cache.get(raw_key) or _out_key(spec, raw_key, out)
        if profile and out_key == "DOB":
            hint = hint or "date"
        kind = _field_kind(raw_key, schema)
        reserved = _is_reserved(out_key, profile=profile)
        props[out_key] = _value(out_key, raw_value, hint, kind, out, reserved=reserved)


def _add_inverted(
    props: dict[str, Any], record: Mapping[str, Any], spec: PropertySpec
) -> None:
    """Add `properties.invert`: each target gets the negated source boolean."""
    for src, targets in spec.invert.items():
        value = record.get(src)
        if value is None:
            continue
        try:
            flag = not boolean(value)
        except ValueError as exc:
            msg = f"{src} is not a boolean"
            raise RecordReject(msg, code="invalid_value", field_name=src) from exc
        for target in targets:
            props[target] = flag


def _add_opt_outs(
    props: dict[str, Any], record: Mapping[str, Any], spec: PropertySpec
) -> None:
    """Add `properties.opt_out`: a true opt-out sets its keys to false.

    False or null sends nothing, so a sync never turns a subscription back on
    (consent: the most restrictive choice wins; see the README).
    """
    for src, targets in spec.opt_out.items():
        value = record.get(src)
        if value is None:
            continue
        try:
            opted_out = boolean(value)
        except ValueError as exc:
            msg = f"{src} is not a boolean"
            raise RecordReject(msg, code="invalid_value", field_name=src) from exc
        if opted_out:
            for target in targets:
                props[target] = False


def _derive_name(props: dict[str, Any], record: Mapping[str, Any], out: _Out) -> None:
    """Name from FirstName and LastName, when the profile has none."""
    first, last = record.get("FirstName"), record.get("LastName")
    full = " ".join(str(p).strip() for p in (first, last) if p)
    if full:
        props["Name"] = _fit(full, MAX_VALUE_BYTES, "value", "Name", out)


def _add_previous(
    props: dict[str, Any],
    spec: PropertySpec,
    schema: SchemaInfo,
    out: _Out,
    *,
    profile: bool,
) -> None:
    """Add `properties.previous`: remembered values, typed like their fields."""
    for src, key in spec.previous.items():
        out_key = sanitise_key(key)
        value = None if out.previous is None else out.previous.get(src)
        if value is None:
            if out.opts.null_values == "send":
                props[out_key] = None
            continue
        hint, kind = spec.types.get(src), _field_kind(src, schema)
        reserved = _is_reserved(out_key, profile=profile)
        props[out_key] = _value(out_key, value, hint, kind, out, reserved=reserved)


# --------------------------------------------------------------------- identity


def identity_text(value: object, field_name: str) -> str | None:
    """Normalise an identity value; None when missing or a placeholder.

    Args:
        value: the raw value.
        field_name: the field it came from (emails are lower-cased).

    Returns:
        The identity, or None.

    Raises:
        RecordReject: when the value is too long or an invalid email.
    """
    if value is None:
        return None
    text = scalar_text(value).strip()
    if text.lower() in PLACEHOLDER_IDENTITIES:
        return None
    if field_name.lower().endswith("email"):
        text = normalise_email(text, field_name)
    if len(text) >= MAX_IDENTITY_CHARS:
        msg = f"identity from {field_name} is {MAX_IDENTITY_CHARS} chars or more"
        raise RecordReject(msg, code="identity_too_long", field_name=field_name)
    return text


def render_template(
    template_text: str, fields: Iterable[str], record: Mapping[str, Any]
) -> str:
    """Fill `{Field}` placeholders.

    Args:
        template_text: the template.
        fields: the placeholders in it.
        record: the input record.

    Returns:
        The filled text.

    Raises:
        RecordReject: when a placeholder field is empty.
    """
    text = template_text
    for name in fields:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            msg = f"{name} is empty (needed by {template_text!r})"
            raise RecordReject(msg, code="missing_field", field_name=name)
        text = text.replace("{" + name + "}", scalar_text(value).strip())
    return text


def resolve_identities(
    record: Mapping[str, Any],
    spec: IdentitySpec,
    resolve: Resolver,
    memo: dict[int, list[str]] | None = None,
    refs: dict[int, list[str]] | None = None,
) -> list[str]:
    """The identities (usually one) a profile or event belongs to.

    Args:
        record: the input record.
        spec: the identity spec.
        resolve: looks up (object, Id) in the identity map.
        memo: the record's identities by spec (id), for specs that depend on
            the record alone (field, template); references are looked up
            each time, since the identity map changes.
        refs: found references by spec (id), shared by calls made while the
            identity map cannot change (building a record, then registering it).

    Returns:
        Identities; empty when the record names nobody.

    Raises:
        RecordReject: when the identity is invalid.
    """
    if spec.kind == "ref":
        if refs is None:
            return _resolve_ref(record, spec, resolve)
        known = refs.get(id(spec))
        if known is None:
            known = refs[id(spec)] = _resolve_ref(record, spec, resolve)
        return known
    if memo is not None:
        known = memo.get(id(spec))
        if known is not None:
            return known
    if spec.kind == "field":
        ident = identity_text(record.get(spec.value), spec.value)
    elif spec.template is not None:
        text = render_template(spec.value, spec.template.fields, record)
        ident = identity_text(text, spec.value)
    else:
        return _resolve_ref(record, spec, resolve)
    found = [ident] if ident else []
    if memo is not None:
        memo[id(spec)] = found
    return found


def _resolve_ref(
    record: Mapping[str, Any], spec: IdentitySpec, resolve: Resolver
) -> list[str]:
    ref = record.get(spec.value)
    if ref is None or not str(ref).strip():
        return []
    return resolve(spec.ref_object or "", str(ref).strip())


# ----------------------------------------------------------------------- events


def event_key(stream: str, record_key: str, name: str, ts: int, extra: str = "") -> str:
    """The deterministic key stored in every event (stream, record, name, ts).

    Args:
        stream: the stream.
        record_key: the record's key property values.
        name: the event name.
        ts: the event time (epoch seconds).
        extra: disambiguates events fanned out to several people.

    Returns:
        A 20-hex-digit key.
    """
    raw = "\x1f".join((stream, record_key, name, str(ts), extra))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:20]


def record_key(record: Mapping[str, Any], key_properties: Iterable[str]) -> str:
    """A stable key for a record: its key properties, else a content hash.

    Args:
        record: the record.
        key_properties: the stream's key properties.

    Returns:
        The key.
    """
    keys = list(key_properties)
    if len(keys) == 1:  # the common case, `Id`
        value = record.get(keys[0])
        if type(value) is str:
            return value
    if keys and all(record.get(k) is not None for k in keys):
        return "|".join(scalar_text(record[k]) for k in keys)
    blob = json.dumps(record, sort_keys=True, default=scalar_text)
    return "sha:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def event_time(record: Mapping[str, Any], time_spec: str, now: int) -> int:
    """The event's epoch seconds.

    Args:
        record: the record.
        time_spec: `auto` (CreatedDate, else SystemModstamp), a field, or `now`.
        now: the current time, used only for `now`.

    Returns:
        Epoch seconds.

    Raises:
        RecordReject: when the time field is missing or not a date.
    """
    if time_spec == "now":
        return now
    if time_spec == "auto":
        candidates = ["CreatedDate", "SystemModstamp"]
    elif time_spec == "modified":  # change events: when the record was modified
        candidates = ["SystemModstamp", "LastModifiedDate"]
    else:
        candidates = [time_spec]
    for name in candidates:
        value = record.get(name)
        if value is None:
            continue
        seconds = epoch_seconds(value)
        if seconds is None:
            msg = f"{name} is not a date-time"
            raise RecordReject(msg, code="invalid_time", field_name=name)
        return seconds
    msg = f"no event time: {' / '.join(candidates)} is empty"
    raise RecordReject(msg, code="missing_time", field_name=candidates[0])


def event_name(record: Mapping[str, Any], spec: EventSpec) -> str:
    """The event name for a record.

    Args:
        record: the record.
        spec: the event spec.

    Returns:
        The name.

    Raises:
        RecordReject: when the name is empty.
    """
    if spec.name is not None:
        name = render_template(spec.name.text, spec.name.fields, record)
    else:
        value = record.get(spec.name_field or "")
        name = "" if value is None else scalar_text(value)
    name = _PROHIBITED_KEY_CHARS.sub(" ", name).strip()
    if not name:
        msg = f"event name from {spec.name_field or spec.label()!r} is empty"
        raise RecordReject(msg, code="missing_event_name", field_name=spec.name_field)
    return name


def _cap_event_properties(
    data: dict[str, Any], name: str, opts: PayloadOptions, warns: list[str]
) -> dict[str, Any]:
    """Keep an event within the per-event property cap (one slot for the key)."""
    room = max(opts.max_event_properties - 1, 0)
    if len(data) <= room:
        return data
    if opts.oversize == "reject":
        msg = f"event {name!r} has {len(data) + 1} properties, over the cap of "
        msg += f"{opts.max_event_properties} (list them with properties.include)"
        raise RecordReject(msg, code="too_many_properties")
    warns.append(
        f"event {name!r} cut to {opts.max_event_properties} properties "
        "(list the ones you need with properties.include)"
    )
    return dict(list(data.items())[:room])


# ---------------------------------------------------------------------- records


def _id_field(spec: IdentitySpec) -> str:
    return spec.key


def _holds(
    when: Expression | None,
    record: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    opts: PayloadOptions,
) -> bool:
    """Whether a `when:` condition lets the record through (no condition: yes).

    Raises:
        RecordReject: a condition that cannot be evaluated on this record (the
            message names the condition, not the record's values).
    """
    if when is None:
        return True
    try:
        return when(record, previous, opts.map_config)
    except ExpressionError:
        msg = f"condition {when.text!r} cannot be evaluated on this record"
        raise RecordReject(msg, code="bad_condition") from None


def build_uploads(  # noqa: PLR0913 - keyword-only inputs
    record: Mapping[str, Any],
    *,
    stream: str,
    key: str,
    mapping: StreamMapping,
    schema: SchemaInfo,
    opts: PayloadOptions,
    resolve: Resolver,
    now: int,
    previous: Mapping[str, Any] | None = None,
    memo: dict[int, list[str]] | None = None,
    refs: dict[int, list[str]] | None = None,
) -> BuildResult:
    """Every upload record one input record becomes.

    Args:
        record: the input record.
        stream: its stream.
        key: its record key.
        mapping: the stream mapping.
        schema: the stream schema info.
        opts: payload options.
        resolve: the identity-map lookup for references.
        now: the current epoch seconds (for `time: now`).
        previous: the values remembered for this record's tracked fields (None
            on its first sighting): read by `changed()`, `previous()` and
            `properties.previous`.
        memo: the record's own identities by spec (see resolve_identities).
        refs: references found, by spec (see resolve_identities).

    Returns:
        The upload items (profile first), or a skip reason.

    Raises:
        RecordReject: when the record cannot be mapped.
    """
    result = BuildResult()
    profile = mapping.profile
    if profile is not None and _holds(profile.when, record, previous, opts):
        identities = resolve_identities(record, profile.identity, resolve, memo, refs)
        if not identities:
            field_name = profile.identity.fields[0]
            msg = f"no identity: {field_name} is empty"
            raise RecordReject(msg, code="missing_identity", field_name=field_name)
        data = build_properties(
            record,
            profile.properties,
            schema,
            _Out(opts, result.warnings, previous),
            profile=True,
        )
        base: dict[str, Any] = {"type": "profile"}
        if profile.time:
            base["ts"] = event_time(record, profile.time, now)
        for ident in identities:
            payload = {_id_field(profile.identity): ident, **base, "profileData": data}
            result.items.append(UploadItem("profile", payload))
        result.identities = identities
    for spec in mapping.events:
        if not _holds(spec.when, record, previous, opts):
            continue
        identities = resolve_identities(record, spec.identity, resolve, memo, refs)
        if not identities:
            field_name = spec.identity.fields[0]
            msg = f"no identity for event {spec.label()!r}: {field_name} is empty"
            raise RecordReject(msg, code="missing_identity", field_name=field_name)
        name = event_name(record, spec)
        ts = event_time(record, spec.time, now)
        data = build_properties(
            record,
            spec.properties,
            schema,
            _Out(opts, result.warnings, previous),
            profile=False,
        )
        data = _cap_event_properties(data, name, opts, result.warnings)
        # a reference that may name several people (an Account's contacts, an
        # Opportunity shared by them) keys each person's event apart; one-person
        # references (Contact, Lead, Who) do not, so a Lead conversion that moves
        # the person to another identity never makes an event look new
        fan_out = (
            spec.identity.kind == "ref"
            and spec.identity.ref_object not in _ONE_PERSON_REFS
        )
        for ident in identities:
            ekey = event_key(stream, key, name, ts, ident if fan_out else "")
            payload = {
                _id_field(spec.identity): ident,
                "type": "event",
                "evtName": name,
                "ts": ts,
                "evtData": {**data, opts.event_key_property: ekey},
            }
            result.items.append(UploadItem("event", payload, ekey, name, ts))
    if not result.items:
        result.skipped = "condition_false"
    return result


def record_persons(
    record: Mapping[str, Any],
    mapping: StreamMapping,
    resolve: Resolver,
    memo: dict[int, list[str]] | None = None,
    refs: dict[int, list[str]] | None = None,
) -> list[str]:
    """Everyone a record is about, whatever its conditions say.

    The union of what the profile's and every event's identity resolve to; an
    identity that is empty, invalid or not resolvable adds nobody. Other streams
    reference the record through this (`{ref: CaseId}`).

    Args:
        record: the input record.
        mapping: its stream mapping.
        resolve: the identity-map lookup (returns [] for unknown references).
        memo: the record's own identities by spec (see resolve_identities).
        refs: references found, by spec (see resolve_identities).

    Returns:
        The identities, in first-seen order (may be empty).
    """
    specs: list[IdentitySpec] = []
    if mapping.profile is not None:
        specs.append(mapping.profile.identity)
    for event in mapping.events:
        if event.identity not in specs:
            specs.append(event.identity)
    found: dict[str, None] = {}
    for spec in specs:
        if spec.key != "identity":
            continue
        try:
            idents = resolve_identities(record, spec, resolve, memo, refs)
        except (RecordReject, UnresolvedReference):
            continue
        found.update(dict.fromkeys(idents))
    return list(found)


def build_deleted_event(  # noqa: PLR0913 - keyword-only inputs
    record: Mapping[str, Any],
    *,
    stream: str,
    key: str,
    identity: str,
    id_key: str,
    opts: PayloadOptions,
    now: int,
) -> UploadItem:
    """The `<stream> Deleted` event for an `IsDeleted` row.

    Args:
        record: the deleted record.
        stream: its stream.
        key: its record key.
        identity: the person.
        id_key: `identity` or `objectId`.
        opts: payload options.
        now: current epoch seconds (used only when the row has no time at all).

    Returns:
        The upload item.
    """
    name = f"{sanitise_key(stream)} Deleted"
    try:
        ts = event_time(record, "SystemModstamp", now)
    except RecordReject:
        ts = event_time(record, "auto", now)
    ekey = event_key(stream, key, name, ts)
    payload = {
        id_key: identity,
        "type": "event",
        "evtName": name,
        "ts": ts,
        "evtData": {"Record Id": key, opts.event_key_property: ekey},
    }
    return UploadItem("event", payload, ekey, name, ts)
