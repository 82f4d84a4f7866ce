"""Pure payload building: field mapping, type conversion, dedup, CSV, result mapping.

Nothing here does I/O. The sink calls these functions with records, a parsed
`StreamMapping` and the object's describe; the client sends what they return.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import decimal
import io
import json
import re
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import quote

from target_salesforce.exprlang import ExpressionError
from target_salesforce.mapping import (
    PLACEHOLDER,
    MappingError,
    StreamMapping,
    map_key,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from target_salesforce.mapping import FieldSpec

BULK_NULL: Final = "#N/A"

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

_STRING_TYPES: Final = frozenset(
    {
        "string",
        "textarea",
        "email",
        "phone",
        "url",
        "id",
        "reference",
        "encryptedstring",
        "combobox",
    }
)
_SF_TO_KIND: Final = {
    "date": "date",
    "datetime": "datetime",
    "boolean": "boolean",
    "double": "number",
    "currency": "number",
    "percent": "number",
    "int": "integer",
    "long": "integer",
    "picklist": "picklist",
    "multipicklist": "multipicklist",
}
_EPOCH_MS_FLOOR: Final = 100_000_000_000
_COMPACT_DATETIME: Final = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$")
_COMPACT_DATE: Final = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
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


# --------------------------------------------------------------------------- describe


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """What the target needs from one field of an sObject describe."""

    name: str
    type: str
    createable: bool
    updateable: bool
    external_id: bool
    length: int = 0
    restricted_values: frozenset[str] | None = None
    id_lookup: bool = False
    relationship_name: str | None = None
    reference_to: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """The conversion kind derived from the Salesforce type."""
        if self.type in _SF_TO_KIND:
            return _SF_TO_KIND[self.type]
        return "string" if self.type in _STRING_TYPES else "any"


def parse_describe(describe: Mapping[str, Any]) -> dict[str, FieldInfo]:
    """Turn an sObject describe into FieldInfo by field name."""
    out: dict[str, FieldInfo] = {}
    for raw in describe.get("fields", []):
        restricted = None
        if raw.get("restrictedPicklist"):
            restricted = frozenset(
                str(p.get("value"))
                for p in raw.get("picklistValues") or []
                if p.get("active", True)
            )
        out[raw["name"]] = FieldInfo(
            name=raw["name"],
            type=str(raw.get("type", "string")),
            createable=bool(raw.get("createable")),
            updateable=bool(raw.get("updateable")),
            external_id=bool(raw.get("externalId")),
            length=int(raw.get("length") or 0),
            restricted_values=restricted,
            id_lookup=bool(raw.get("idLookup")),
            relationship_name=raw.get("relationshipName"),
            reference_to=tuple(raw.get("referenceTo") or ()),
        )
    return out


def split_relationship(name: str) -> tuple[str, str] | None:
    """`Contact__r.CleverTap_Id__c` -> (`Contact__r`, `CleverTap_Id__c`), else None.

    A polymorphic lookup keeps its type: `Contact:Who.Ext__c` -> (`Contact:Who`,
    `Ext__c`); `split_type` takes it apart.
    """
    relationship, dot, field = name.partition(".")
    return (relationship, field) if dot and relationship and field else None


def split_type(relationship: str) -> tuple[str | None, str]:
    """`Contact:Who` -> (`Contact`, `Who`); `Account` -> (None, `Account`).

    `ObjectType:RelationshipName.IndexedFieldName` is Salesforce's syntax for a
    polymorphic parent in a Bulk CSV header ("Relationship Fields in a Header
    Row (2.0)", Bulk API 2.0 developer guide); the target uses it in mappings too.
    """
    typed, colon, name = relationship.partition(":")
    return (typed, name) if colon and typed and name else (None, relationship)


def _check_relationship(
    mapping: StreamMapping,
    name: str,
    fields: Mapping[str, FieldInfo],
    related: Callable[[str], Mapping[str, FieldInfo]] | None,
) -> None:
    """A foreign-key upsert by the parent's External ID (`Rel__r.Ext__c`)."""
    typed_relationship, ext = split_relationship(name) or ("", "")
    parent_type, relationship = split_type(typed_relationship)
    where = f"stream {mapping.stream}: {name!r} on {mapping.sobject}"
    ref = next(
        (
            f
            for f in fields.values()
            if f.relationship_name
            and f.relationship_name.lower() == relationship.lower()
        ),
        None,
    )
    if ref is None:
        msg = f"{where}: no relationship named {relationship!r}"
        raise MappingError(msg, ("fields", name))
    if not _needs_write(ref, mapping.action):
        msg = f"{where}: {ref.name!r} is not writable for {mapping.action}"
        raise MappingError(msg, ("fields", name))
    polymorphic = len(ref.reference_to) > 1
    if polymorphic and parent_type is None:
        types = " or ".join(ref.reference_to)
        msg = (
            f"{where}: {ref.name} is polymorphic ({types}); name the parent's type "
            f"as Type:{relationship}.{ext}, e.g. {ref.reference_to[0]}:"
            f"{relationship}.{ext}"
        )
        raise MappingError(msg, ("fields", name))
    if parent_type is not None and parent_type not in ref.reference_to:
        msg = (
            f"{where}: {parent_type!r} is not a type {ref.name} can point to "
            f"({', '.join(ref.reference_to)})"
        )
        raise MappingError(msg, ("fields", name))
    if parent_type is not None and not polymorphic:
        msg = (
            f"{where}: {ref.name} is not polymorphic; write {relationship}.{ext} "
            "without a type"
        )
        raise MappingError(msg, ("fields", name))
    if related is None:
        return
    parent = parent_type or ref.reference_to[0]
    info = related(parent).get(ext)
    if info is None or not (info.external_id or info.id_lookup):
        msg = (
            f"{where}: {ext!r} is not an External ID field of {parent} (nor an "
            "idLookup field)"
        )
        raise MappingError(msg, ("fields", name))


def _needs_write(info: FieldInfo, action: str) -> bool:
    if action == "insert":
        return info.createable
    if action == "update":
        return info.updateable
    return info.createable and info.updateable


def check_mapping_against_describe(
    mapping: StreamMapping,
    fields: Mapping[str, FieldInfo],
    schema_properties: Iterable[str],
    related: Callable[[str], Mapping[str, FieldInfo]] | None = None,
) -> None:
    """Fail before any write when the mapping does not fit the object.

    Args:
        mapping: the stream's mapping (sobject mode).
        fields: the object's describe, by field name.
        schema_properties: the stream's schema properties (for pass_through).
        related: describes a parent object, for `Rel__r.Ext__c` targets.

    Raises:
        MappingError: naming the field and object for an unknown or non-writable
            field, or an upsert key that is not an External ID; for a mapping
            from `mappings_file`, the message ends with the file and line.
    """
    try:
        _check_describe(mapping, fields, schema_properties, related)
    except MappingError as exc:
        keys = exc.keys
        target = keys[1] if len(keys) > 1 and keys[0] == "fields" else None
        if keys[:1] == ("external_id_field",):
            target = str(mapping.external_id_field)
        located = mapping.located(target)
        if not located:
            raise
        msg = f"{exc}{located}"
        raise MappingError(msg, keys) from None


def _check_describe(
    mapping: StreamMapping,
    fields: Mapping[str, FieldInfo],
    schema_properties: Iterable[str],
    related: Callable[[str], Mapping[str, FieldInfo]] | None = None,
) -> None:
    """`check_mapping_against_describe` without the mappings-file location."""
    if mapping.action == "delete":
        if "Id" not in {f.target for f in mapping.fields} and not mapping.pass_through:
            msg = (
                f"stream {mapping.stream}: delete on {mapping.sobject} needs an "
                "`Id` field"
            )
            raise MappingError(msg)
        return
    targets = _written_fields(mapping, schema_properties)
    for name in targets:
        if name == "Id" and mapping.action == "update":
            continue
        if split_relationship(name):
            _check_relationship(mapping, name, fields, related)
        else:
            _check_field(mapping, name, fields)
    if mapping.action == "upsert":
        _check_upsert_key(mapping, fields, targets)


def _written_fields(
    mapping: StreamMapping, schema_properties: Iterable[str]
) -> list[str]:
    """The fields a record of this mapping can write."""
    targets = [f.target for f in mapping.fields]
    if mapping.pass_through:
        used = mapping.used_roots
        targets += [
            p for p in schema_properties if p not in used and not p.startswith("_sdc_")
        ]
    if mapping.pack_unmapped_into:
        targets.append(mapping.pack_unmapped_into)
    return targets


def _check_field(
    mapping: StreamMapping, name: str, fields: Mapping[str, FieldInfo]
) -> None:
    sobject = mapping.sobject
    info = fields.get(name)
    if info is None:
        msg = (
            f"stream {mapping.stream}: field {name!r} does not exist on "
            f"{sobject} (or is not visible to this user)"
        )
        raise MappingError(msg, ("fields", name))
    if not _needs_write(info, mapping.action):
        msg = (
            f"stream {mapping.stream}: field {name!r} on {sobject} is not "
            f"writable for {mapping.action}"
        )
        raise MappingError(msg, ("fields", name))


def _check_upsert_key(
    mapping: StreamMapping, fields: Mapping[str, FieldInfo], targets: list[str]
) -> None:
    sobject = mapping.sobject
    ext = str(mapping.external_id_field)
    info = fields.get(ext)
    if info is None:
        msg = (
            f"stream {mapping.stream}: external_id_field {ext!r} does not exist "
            f"on {sobject}"
        )
        raise MappingError(msg, ("external_id_field",))
    if not info.external_id and ext != "Id":
        msg = (
            f"stream {mapping.stream}: external_id_field {ext!r} on {sobject} "
            "is not flagged External ID"
        )
        raise MappingError(msg, ("external_id_field",))
    if ext not in targets:
        msg = (
            f"stream {mapping.stream}: the upsert key {ext!r} is not produced by "
            "the field mapping"
        )
        raise MappingError(msg, ("external_id_field",))


# --------------------------------------------------------------------------- values


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


def json_safe(value: JsonValue) -> JsonValue:
    """Make a record value JSON-serialisable (Decimal, datetime, date, time)."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        return _format_datetime(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def dumps(value: JsonValue) -> str:
    """Compact JSON of a record value."""
    return json.dumps(json_safe(value), separators=(",", ":"), ensure_ascii=False)


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


def _to_number(value: JsonValue) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value
    number = decimal.Decimal(str(value).strip())
    if not number.is_finite():
        raise ValueError(value)
    return int(number) if number == number.to_integral_value() else float(number)


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
    if isinstance(number, float):
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
    return str(json_safe(value))


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


# --------------------------------------------------------------------------- payloads


def _translate(spec: FieldSpec, value: JsonValue) -> JsonValue:
    """Apply the field's value `map` (element-wise to lists)."""
    table = spec.value_map
    if table is None or value is None or value is MISSING:
        return value
    if isinstance(value, list | tuple):
        return [_translate(spec, v) for v in value]
    key = map_key(json_safe(value))
    if key in table:
        return table[key]
    return spec.map_default if spec.has_map_default else value


def _field_value(
    spec: FieldSpec, record: Mapping[str, Any], now: dt.datetime
) -> JsonValue:
    if spec.has_value:
        return spec.value
    if spec.now:
        return now
    if spec.expr is not None:
        try:
            value: JsonValue = spec.expr.number(record)
        except ExpressionError as exc:
            msg = f"field {spec.target!r}: {exc}"
            raise RecordError(CODE_CONVERSION, msg, [spec.target]) from None
    elif spec.template is not None:
        value = render_template(spec.template, record)
    else:
        value = get_path(record, str(spec.source))
    if (value is MISSING or value is None) and spec.default is not None:
        return spec.default
    return _translate(spec, value)


def _convert_field(
    name: str, value: JsonValue, kind: str | None, info: FieldInfo | None
) -> JsonValue:
    use = kind or (info.kind if info else "any")
    try:
        result = convert(value, use)
    except (ValueError, TypeError, ArithmeticError) as exc:
        msg = f"field {name!r}: cannot convert {value!r} to {use}"
        raise RecordError(CODE_CONVERSION, msg, [name]) from exc
    if info is not None and isinstance(result, str):
        if (
            info.restricted_values is not None
            and info.kind == "picklist"
            and result not in info.restricted_values
        ):
            msg = (
                f"field {name!r}: {result!r} is not a value of the restricted picklist"
            )
            raise RecordError(CODE_RESTRICTED_PICKLIST, msg, [name])
        if info.length and info.kind == "string" and len(result) > info.length:
            msg = f"field {name!r}: {len(result)} characters, at most {info.length}"
            raise RecordError(CODE_STRING_TOO_LONG, msg, [name])
    return result


def build_sobject_payload(
    record: Mapping[str, Any],
    mapping: StreamMapping,
    fields: Mapping[str, FieldInfo],
    null_policy: str,
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Build the field values for one record.

    Args:
        record: the Singer record (values may be Decimal or datetime).
        mapping: the stream's mapping.
        fields: the object's describe.
        null_policy: `skip` leaves null values out (field unchanged); `set_null`
            sends them as null (Bulk: `#N/A`).
        now: the run's start time, for `now: true` fields (default: this call's).

    Returns:
        Salesforce field name -> value.

    Raises:
        RecordError: when a value cannot be converted or the key is missing.
    """
    payload: dict[str, Any] = {}
    started = now or dt.datetime.now(dt.UTC)
    for spec in mapping.fields:
        value = _field_value(spec, record, started)
        if value is MISSING:
            continue
        if split_relationship(spec.target):
            # A blank foreign key fails the row in Salesforce: leave it out.
            if value is not None and value != "":
                payload[spec.target] = str(json_safe(value))
            continue
        payload[spec.target] = empty_is_null(
            _convert_field(spec.target, value, spec.type, fields.get(spec.target))
        )
    used = mapping.used_roots
    leftovers = {
        k: v
        for k, v in record.items()
        if k not in used and k not in payload and not k.startswith("_sdc_")
    }
    if mapping.pass_through:
        for name, value in leftovers.items():
            payload[name] = empty_is_null(
                _convert_field(name, value, None, fields.get(name))
            )
    elif mapping.pack_unmapped_into and leftovers:
        target = mapping.pack_unmapped_into
        payload[target] = _convert_field(
            target, dumps(leftovers), None, fields.get(target)
        )
    if null_policy == "skip":
        payload = {k: v for k, v in payload.items() if v is not None}
    key = mapping.key_field
    if key is not None and payload.get(key) in {None, ""}:
        msg = f"the key field {key!r} has no value"
        raise RecordError(CODE_MISSING_KEY, msg, [key])
    return payload


def empty_is_null(value: JsonValue) -> JsonValue:
    """An empty string is null, whichever API carries it.

    Salesforce stores no empty text: `""` through Collections clears a field,
    while an empty Bulk CSV cell leaves it unchanged ("An empty value is
    ignored on update", Bulk API 2.0 "Valid Record Rows"). Turning `""` into
    None before either is built makes both follow `null_policy` the same way:
    `skip` leaves the field as it is, `set_null` clears it (`#N/A` in Bulk).
    """
    return None if value == "" else value


@dataclasses.dataclass
class Prepared:
    """One request item: its payload and the input records it stands for."""

    inputs: list[int]
    payload: Any
    key: str | None = None


@dataclasses.dataclass(frozen=True)
class LocalReject:
    """An input record refused before sending."""

    index: int
    code: str
    message: str
    fields: list[str]
    key: str | None = None


def prepare_batch(  # noqa: PLR0913 - the run's clock is a keyword-only input
    records: Sequence[Mapping[str, Any]],
    mapping: StreamMapping,
    fields: Mapping[str, FieldInfo],
    null_policy: str,
    duplicate_policy: str,
    *,
    now: dt.datetime | None = None,
) -> tuple[list[Prepared], list[LocalReject]]:
    """Build payloads for a batch and resolve duplicate keys.

    With `merge`, a later record with the same key is merged over the earlier one
    (later values win) and both inputs share the result. With `reject`, every
    record of a duplicated key is rejected before sending. `now` is the run's
    start time for `now: true` fields (default: one time for the whole batch).

    Returns:
        The request items in input order, and the records refused locally.
    """
    items: list[Prepared] = []
    rejects: list[LocalReject] = []
    by_key: dict[str, Prepared] = {}
    dup_keys: set[str] = set()
    key_field = mapping.key_field
    started = now or dt.datetime.now(dt.UTC)
    for index, record in enumerate(records):
        try:
            payload = build_sobject_payload(
                record, mapping, fields, null_policy, now=started
            )
        except RecordError as exc:
            rejects.append(LocalReject(index, exc.code, exc.message, exc.fields))
            continue
        key = None if key_field is None else str(payload[key_field])
        if key is not None and key in by_key:
            existing = by_key[key]
            if duplicate_policy == "merge":
                existing.payload.update(payload)
                existing.inputs.append(index)
            else:
                dup_keys.add(key)
                existing.inputs.append(index)
            continue
        item = Prepared(inputs=[index], payload=payload, key=key)
        items.append(item)
        if key is not None:
            by_key[key] = item
    if dup_keys:
        kept = []
        for item in items:
            if item.key in dup_keys:
                msg = f"key {item.key!r} appears {len(item.inputs)} times in one batch"
                rejects.extend(
                    LocalReject(i, CODE_DUPLICATE_KEY, msg, [str(key_field)], item.key)
                    for i in item.inputs
                )
            else:
                kept.append(item)
        items = kept
    return items, rejects


def prepare_apex_batch(
    records: Sequence[Mapping[str, Any]], mapping: StreamMapping
) -> tuple[list[Prepared], list[LocalReject]]:
    """Render the Apex payload (and path) of each record."""
    apex = mapping.apex
    if apex is None:  # pragma: no cover - parse_stream_mapping guarantees it
        msg = f"stream {mapping.stream} has no apex settings"
        raise MappingError(msg)
    items: list[Prepared] = []
    rejects: list[LocalReject] = []
    for index, record in enumerate(records):
        try:
            path = render_path(apex.path, record)
            payload = render_payload(apex.payload, record)
        except RecordError as exc:
            rejects.append(LocalReject(index, exc.code, exc.message, exc.fields))
            continue
        items.append(Prepared(inputs=[index], payload=payload, key=path))
    return items, rejects


def apex_calls(
    items: Sequence[Prepared], mapping: StreamMapping
) -> Iterator[tuple[str, Any, list[Prepared]]]:
    """Group rendered Apex items into calls: (path, body, items in the call)."""
    apex = mapping.apex
    if apex is None:  # pragma: no cover
        return
    if apex.batching == "record":
        for item in items:
            yield str(item.key), item.payload, [item]
        return
    by_path: dict[str, list[Prepared]] = defaultdict(list)
    for item in items:
        by_path[str(item.key)].append(item)
    for path, group in by_path.items():
        for chunk in chunked(group, apex.max_records_per_call):
            body: Any = [i.payload for i in chunk]
            if apex.list_key:
                body = {apex.list_key: body}
            yield path, body, chunk


def chunked(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """Split a sequence into lists of at most `size` items."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# --------------------------------------------------------------------------- requests


def collections_request(
    action: str, sobject: str, external_id_field: str | None, items: Sequence[Prepared]
) -> tuple[str, str, dict[str, Any]]:
    """Build an sObject Collections call: (HTTP method, path, requests kwargs).

    The path is relative to /services/data/vXX.X/. Values travel in the body, so
    only the object and field names appear in the path (quoted all the same).
    """
    if action == "delete":
        ids = ",".join(str(i.payload["Id"]) for i in items)
        return (
            "DELETE",
            "composite/sobjects",
            {"params": {"ids": ids, "allOrNone": "false"}},
        )
    records = [{"attributes": {"type": sobject}, **nest(i.payload)} for i in items]
    body = {"allOrNone": False, "records": records}
    if action == "upsert":
        path = f"composite/sobjects/{quote(sobject, safe='')}/" + quote(
            str(external_id_field), safe=""
        )
        return "PATCH", path, {"json": body}
    if action == "update":
        return "PATCH", "composite/sobjects", {"json": body}
    return "POST", "composite/sobjects", {"json": body}


def nest(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Collections JSON: `Rel__r.Ext__c` becomes `{"Rel__r": {"Ext__c": value}}`.

    A polymorphic `Contact:Who.Ext__c` becomes `{"Who": {"attributes": {"type":
    "Contact"}, "Ext__c": value}}`: the sObject's type goes in `attributes`.
    """
    out: dict[str, Any] = {}
    for name, value in payload.items():
        split = split_relationship(name)
        if split:
            parent_type, relationship = split_type(split[0])
            parent = out.setdefault(relationship, {})
            if parent_type is not None:
                parent["attributes"] = {"type": parent_type}
            parent[split[1]] = value
        else:
            out[name] = value
    return out


def csv_cell(value: JsonValue) -> str:
    """One Bulk 2.0 CSV cell: null is `#N/A` (sets null), floats in plain notation."""
    if value is None:
        return BULK_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(decimal.Decimal(repr(value)), "f")
    return str(value)


def bulk_columns(
    action: str, key_field: str | None, items: Sequence[Prepared]
) -> list[str]:
    """CSV header: the key first, then every other field in first-seen order."""
    if action == "delete":
        return ["Id"]
    columns: dict[str, None] = {}
    if key_field:
        columns[key_field] = None
    for item in items:
        for name in item.payload:
            columns.setdefault(name, None)
    return list(columns)


def build_csv(columns: Sequence[str], items: Sequence[Prepared]) -> str:
    """Bulk 2.0 CSV with CRLF line endings.

    A field absent from a payload is an empty cell (left unchanged); a null value
    is `#N/A` (set to null). `prepare_batch` has already applied the null policy.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for item in items:
        writer.writerow(
            [csv_cell(item.payload[c]) if c in item.payload else "" for c in columns]
        )
    return buffer.getvalue()


def parse_csv(text: str) -> list[dict[str, str]]:
    """Parse a Bulk 2.0 result CSV into rows."""
    if not text.strip():
        return []
    return list(csv.DictReader(io.StringIO(text)))


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """The outcome of one request item."""

    success: bool
    record_id: str | None = None
    created: bool | None = None
    code: str | None = None
    message: str | None = None
    fields: tuple[str, ...] = ()
    matches: tuple[str, ...] = ()


def duplicate_matches(error: Mapping[str, Any]) -> tuple[str, ...]:
    """The Ids of the existing records a duplicate rule matched, in order.

    A DUPLICATES_DETECTED error carries `duplicateResult.matchResults[]
    .matchRecords[].record.Id` (Collections item errors; the SOAP API's
    DuplicateResult/MatchResult/MatchRecord). The single-record REST reply
    spells the key `duplicateResut`, as real orgs answer; both are read.
    """
    result = error.get("duplicateResult") or error.get("duplicateResut")
    if not isinstance(result, dict):
        return ()
    ids: list[str] = []
    for match in result.get("matchResults") or []:
        for found in (match or {}).get("matchRecords") or []:
            record = (found or {}).get("record") or {}
            record_id = record.get("Id") if isinstance(record, dict) else None
            if record_id and str(record_id) not in ids:
                ids.append(str(record_id))
    return tuple(ids)


def collections_results(payload: JsonValue, count: int) -> list[ItemResult]:
    """Map a Collections response array (request order) to item results.

    Raises:
        ValueError: when the response does not have one entry per item.
    """
    if (
        not isinstance(payload, list)
        or len(payload) != count
        or not all(isinstance(entry, dict) for entry in payload)
    ):
        msg = f"expected {count} Collections results, got {payload!r:.200}"
        raise ValueError(msg)
    out = []
    for entry in payload:
        if entry.get("success"):
            out.append(
                ItemResult(
                    success=True,
                    record_id=entry.get("id"),
                    created=entry.get("created"),
                )
            )
            continue
        errors = entry.get("errors") or [{}]
        first = errors[0]
        fields = tuple(f for e in errors for f in e.get("fields") or [])
        message = "; ".join(str(e.get("message", "")) for e in errors)
        matches = tuple(i for e in errors for i in duplicate_matches(e))
        if matches:
            message += f" (matched records: {', '.join(matches)})"
        out.append(
            ItemResult(
                success=False,
                record_id=entry.get("id"),
                code=str(first.get("statusCode") or "UNKNOWN_ERROR"),
                message=message,
                fields=fields,
                matches=matches,
            )
        )
    return out


def apex_results(response: JsonValue, count: int) -> list[ItemResult]:
    """Per-record results of a successful (2xx) Apex call.

    When the handler answers with one result object per record (a list of the
    same length, or a single object for a one-record call) carrying `success`,
    each record gets its own outcome: `success` other than true rejects the
    record with the result's `errorCode` (CleverTapNpsService answers a refused
    save as `{"success": false, "errorCode": <DML status code>, ...}`). Results
    that report failures but cannot be matched to the records (another count, or
    one failed object for a list call) reject every record of the call with
    APEX_RESULTS_MISMATCH: which records were written is unknown, so none counts
    as accepted. Any other 2xx body means all succeeded.
    """
    if isinstance(response, dict) and "success" in response:
        response = [response]
    if not (
        isinstance(response, list)
        and response
        and all(isinstance(e, dict) and "success" in e for e in response)
    ):
        return [ItemResult(success=True)] * count
    out = [_apex_result(entry) for entry in response]
    if len(out) == count:
        return out
    failed = [r for r in out if not r.success]
    if not failed:
        return [ItemResult(success=True)] * count
    message = (
        f"the Apex class answered {len(out)} results for {count} records, "
        f"{len(failed)} failed ({failed[0].code}: {failed[0].message}); which "
        "records were written is unknown: replay them"
    )
    return [error_result(CODE_APEX_RESULTS_MISMATCH, message)] * count


def _apex_result(entry: Mapping[str, Any]) -> ItemResult:
    """One Apex result object: `success`, else `errorCode`/`message` (or `errors`)."""
    if entry.get("success") is True:
        return ItemResult(success=True, record_id=entry.get("id"))
    errors = entry.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else {}
    if not isinstance(first, dict):
        first = {"message": str(first)}
    # UNKNOWN_ERROR as for Collections: never APEX_ERROR, which means the whole
    # call was rolled back (HTTP 500) and would trigger `isolate_errors`.
    code = entry.get("errorCode") or first.get("statusCode") or "UNKNOWN_ERROR"
    message = entry.get("message") or first.get("message") or ""
    return ItemResult(
        success=False,
        record_id=entry.get("id"),
        code=str(code),
        message=str(message),
    )


def error_result(code: str, message: str, fields: Sequence[str] = ()) -> ItemResult:
    """A failure result for every item of a call that failed as a whole."""
    return ItemResult(success=False, code=code, message=message, fields=tuple(fields))


def split_bulk_error(text: str) -> tuple[str, str]:
    """Split `sf__Error` (`CODE:message`) into code and message."""
    code, message, _ = parse_bulk_error(text)
    return code, message


def parse_bulk_error(text: str) -> tuple[str, str, tuple[str, ...]]:
    """Split `sf__Error` into (code, message, fields).

    Salesforce writes `CODE:message:fields --`, e.g.
    `INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--` (recorded in
    `misc_real_errors.md`); the fields part is comma-separated and may be empty.
    """
    code, sep, rest = text.partition(":")
    if not sep:
        return "UNKNOWN_ERROR", text, ()
    rest = rest.strip()
    fields: tuple[str, ...] = ()
    if rest.endswith("--"):
        head, colon, tail = rest[:-2].rstrip().rpartition(":")
        if colon:
            rest = head.strip()
            fields = tuple(f.strip() for f in tail.split(",") if f.strip())
    return code.strip() or "UNKNOWN_ERROR", rest, fields


def bulk_results(
    columns: Sequence[str],
    key_field: str | None,
    items: Sequence[Prepared],
    successful: Sequence[Mapping[str, str]],
    failed: Sequence[Mapping[str, str]],
) -> list[ItemResult | None]:
    """Match Bulk 2.0 result rows back to the items sent (row order is not kept).

    With a key (upsert, update, delete) rows match on the key column, which
    `prepare_batch` made unique; without one (insert) they match on all columns
    as sent. Items with no matching row get None (outcome unknown).
    """
    match_cols = [key_field] if key_field else list(columns)
    sent: dict[tuple[str, ...], deque[int]] = defaultdict(deque)
    for position, item in enumerate(items):
        cells = tuple(
            csv_cell(item.payload[c]) if c in item.payload else "" for c in match_cols
        )
        sent[cells].append(position)
    out: list[ItemResult | None] = [None] * len(items)

    def take(row: Mapping[str, str]) -> int | None:
        queue = sent.get(tuple(row.get(c, "") for c in match_cols))
        return queue.popleft() if queue else None

    for row in successful:
        found = take(row)
        if found is not None:
            created = str(row.get("sf__Created", "")).lower() == "true"
            out[found] = ItemResult(
                success=True, record_id=row.get("sf__Id") or None, created=created
            )
    for row in failed:
        found = take(row)
        if found is not None:
            code, message, fields = parse_bulk_error(row.get("sf__Error", ""))
            out[found] = ItemResult(
                success=False,
                record_id=row.get("sf__Id") or None,
                code=code,
                message=message,
                fields=fields,
            )
    return out
