"""Pure payload building: records to sObject and Apex request items.

Nothing here does I/O. The sink calls these functions with records, a parsed
`StreamMapping` and the object's describe; the client sends what they return.
Values are converted in `values`, Bulk CSV is built in `bulk`, answers are read
in `results`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from target_salesforce.describe import split_relationship, split_type
from target_salesforce.exprlang import ExpressionError
from target_salesforce.mapping import MappingError, map_key
from target_salesforce.values import (
    CODE_CONVERSION,
    CODE_DUPLICATE_KEY,
    CODE_MISSING_KEY,
    CODE_RESTRICTED_PICKLIST,
    CODE_STRING_TOO_LONG,
    MISSING,
    JsonValue,
    RecordError,
    convert,
    dumps,
    get_path,
    json_safe,
    render_path,
    render_payload,
    render_template,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from target_salesforce.describe import FieldInfo
    from target_salesforce.mapping import FieldSpec, StreamMapping


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
        payload[spec.target] = _converted(
            spec.target, value, spec.type, fields.get(spec.target)
        )
    used = mapping.used_roots
    leftovers = {
        k: v
        for k, v in record.items()
        if k not in used and k not in payload and not k.startswith("_sdc_")
    }
    if mapping.pass_through:
        for name, value in leftovers.items():
            payload[name] = _converted(name, value, None, fields.get(name))
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


def _converted(
    name: str, value: JsonValue, kind: str | None, info: FieldInfo | None
) -> JsonValue:
    """The field's value for Salesforce; an empty string is null for every type.

    Taps write `""` for an empty date, number or boolean column too (CSV and
    spreadsheet sources do), so it is null before any conversion is tried.
    """
    if value == "":
        return None
    return empty_is_null(_convert_field(name, value, kind, info))


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
