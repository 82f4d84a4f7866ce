"""`profileData` and `evtData` from a record's fields (pure)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from target_clevertap.field_plans import compile_plan
from target_clevertap.payload_types import (
    DROPPED,
    RecordReject,
    SchemaInfo,
)
from target_clevertap.values import (
    _ADDRESS_KEYS,
    _DATE_HINTS,
    _GENDERS,
    _RECORD_METADATA,
    _RESERVED,
    KNOWN_DATE_FIELDS,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    SHORT_TEXT,
    _convert,
    _convert_items,
    _fit,
    _flatten_address,
    boolean,
    ct_date,
    normalise_email,
    normalise_phone,
    sanitise_key,
    scalar_text,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from target_clevertap.field_plans import Fill, General
    from target_clevertap.mapping import PropertySpec
    from target_clevertap.payload_types import _Out

    #: one field's converter, chosen once per stream: (value, out) -> its value
    _Converter = Callable[[object, _Out], object]
    #: (field, output key or "" when it needs the general path, converter or
    #: None for plain text fields: no type hint, no date format, not reserved)
    _PlanItem = tuple[str, str, _Converter | None]


def _contact(key: str, value: object, out: _Out) -> object:
    """A profile's Email or Phone normalised; an invalid Phone is left out.

    CleverTap refuses a whole profile for an invalid Phone (code 516 "Phone
    number is not valid", recorded answers), and phone numbers in CRM data are
    often partial ("555-1234", extensions): rejecting the record would also
    lose its other fields, opt-outs included. So the Phone alone is left out
    (`DROPPED`, with a warning and a count) and the rest of the profile is sent.
    An invalid Email still rejects the record (it may be what names the person).

    Raises:
        RecordReject: for an invalid Email.
    """
    if key == "Email":
        return normalise_email(value)
    try:
        return normalise_phone(value, out.opts.default_phone_country)
    except RecordReject as exc:
        out.warns.append(
            f"{exc.message}: left out of the profile, the rest of it is sent "
            "(counted in dropped_fields)"
        )
        out.dropped.append(key)
        return DROPPED


def _reserved(key: str, value: object, out: _Out) -> object:
    if key in _CONTACT_KEYS:
        return _contact(key, value, out)
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


#: reserved keys whose text values are normalised (as `_reserved` does)
_CONTACT_KEYS = frozenset({"Email", "Phone"})


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
    if out.dropped:
        props = {k: v for k, v in props.items() if v is not DROPPED}
    if spec.invert:
        _add_inverted(props, record, spec)
    if spec.opt_out:
        _add_opt_outs(props, record, spec)
    if profile and spec.derive_name and not props.get("Name"):
        _derive_name(props, record, out)
    _add_previous(props, spec, schema, out, profile=profile)
    for key, value in spec.constant_items:
        props[key] = value
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
    fill = _fill(spec, schema, profile=profile)
    fill(record.get, props, out, out.opts.null_values == "send", spec, schema)
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
        if len(value) > SHORT_TEXT:
            converted = _fit(value, MAX_VALUE_BYTES, "value", out_key, out)
    else:
        converted = _convert(out_key, value, hint, kind, out)
    return _reserved(out_key, converted, out) if reserved else converted


def _converter(
    out_key: str, hint: str | None, kind: str, *, reserved: bool
) -> _Converter | None:
    """The conversion of one field, decided once (same results as `_value`)."""
    if hint is None and not kind and not reserved:
        return None
    if not reserved and (hint in _DATE_HINTS or (hint is None and kind)):
        return _date_converter(out_key, hint, kind)
    if reserved and hint is None and not kind and out_key in _CONTACT_KEYS:
        return _contact_converter(out_key)

    def convert(value: object, out: _Out) -> object:
        return _value(out_key, value, hint, kind, out, reserved=reserved)

    return convert


def _date_converter(out_key: str, hint: str | None, kind: str) -> _Converter:
    """A date or date-time field: its text's epoch seconds come from a cache."""
    date_only = kind == "date" or hint == "date"

    def convert_date(value: object, out: _Out) -> object:
        if type(value) is str:  # the common case: cached by its text
            converted = ct_date(value, date_only=date_only, zone=out.opts.zone)
            if converted is not None:
                return converted
        return _convert(out_key, value, hint, kind, out)

    return convert_date


def _contact_converter(out_key: str) -> _Converter:
    """The profile's Email or Phone: text normalised as `_reserved` does."""

    def convert_contact(value: object, out: _Out) -> object:
        if type(value) is not str:
            return _value(out_key, value, None, "", out, reserved=True)
        if len(value) > SHORT_TEXT:
            value = _fit(value, MAX_VALUE_BYTES, "value", out_key, out)
        return _contact(out_key, value, out)

    return convert_contact


def _plan(spec: PropertySpec, schema: SchemaInfo, *, profile: bool) -> list[_PlanItem]:
    """Per-field decisions of an `include` list (compiled by `_fill`)."""
    plan: list[_PlanItem] = []
    for name in _property_names({}, spec):
        out_key = sanitise_key(spec.rename.get(name, name))
        if len(out_key.encode("utf-8")) > MAX_KEY_BYTES:
            out_key = ""
        hint = spec.types.get(name)
        if profile and out_key == "DOB":
            hint = hint or "date"
        reserved = _is_reserved(out_key, profile=profile)
        kind = _field_kind(name, schema)
        # no output key: the general path (`_put_field` fits the key), no converter
        convert = (
            _converter(out_key, hint, kind, reserved=reserved) if out_key else None
        )
        plan.append((name, out_key, convert))
    return plan


def _fill(spec: PropertySpec, schema: SchemaInfo, *, profile: bool) -> Fill:
    """The field plan of an `include` list as one function, made once per stream."""
    cache_key = (id(schema), profile)
    cached = spec.plans.get(cache_key)
    if cached is not None and cached[0] is schema:
        fill: Fill = cached[1]
        return fill
    # the compiled plan calls it positionally: (props, name, value, spec, schema, out)
    general: General = functools.partial(_put_field, profile=profile)
    fill = compile_plan(_plan(spec, schema, profile=profile), general)
    spec.plans[cache_key] = (schema, fill)
    return fill


def _put_field(  # noqa: PLR0913, PLR0917 - one field's conversion, positional for field plans
    props: dict[str, Any],
    name: str,
    value: object,
    spec: PropertySpec,
    schema: SchemaInfo,
    out: _Out,
    *,
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
        out_key = spec.key_cache.get(raw_key) or _out_key(spec, raw_key, out)
        if raw_value is None:
            if out.opts.null_values == "send":
                props[out_key] = None
            continue
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
