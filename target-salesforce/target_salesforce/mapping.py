"""Per-stream mapping settings: parsing and checking, no I/O except reading YAML.

A mapping tells the target what to do with one Singer stream: which sObject to
write (or which Apex REST endpoint to call), with which action and key, and how to
build each Salesforce field from the record. Mappings come from the `streams`
setting and from the YAML file named by `mappings_file` (its top-level `streams:`
key); the setting wins over the file for the same stream name. Stream names may be
shell-style patterns (`events_*`); an exact name wins over a pattern. Errors in the
file name the file and the line of the offending key.
"""

from __future__ import annotations

import dataclasses
import decimal
import fnmatch
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias, get_args

import msgspec

from target_salesforce import yaml_lines
from target_salesforce.exprlang import (
    Expression,
    ExpressionError,
    compile_expression,
)
from target_salesforce.mapping_doc import (
    UNSET,
    Action,
    ApexBatching,
    ApexDoc,
    DocError,
    DuplicatePolicy,
    FieldDoc,
    FieldType,
    MissingKeyPolicy,
    Mode,
    NullPolicy,
    StreamDoc,
    parse_stream,
)
from target_salesforce.yaml_lines import LineDict

if TYPE_CHECKING:
    from collections.abc import Mapping

RawMapping: TypeAlias = Any
"""A mapping value as read from JSON or YAML."""

ACTIONS: Final = get_args(Action)
MODES: Final = get_args(Mode)
NULL_POLICIES: Final = get_args(NullPolicy)
DUPLICATE_POLICIES: Final = get_args(DuplicatePolicy)
MISSING_KEY_POLICIES: Final = get_args(MissingKeyPolicy)
FIELD_TYPES: Final = get_args(FieldType)
APEX_METHODS: Final = ("POST", "PUT", "PATCH")
APEX_BATCHING: Final = get_args(ApexBatching)
PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_$][\w$.\-]*)\}")


class MappingError(ValueError):
    """A mapping setting is invalid, or does not fit the org's describe.

    `keys` is the path of the offending key below the stream's entry (for example
    `("fields", "Email", "type")`); the file loader turns it into a line number.
    """

    def __init__(self, message: str, keys: tuple[str, ...] = ()) -> None:
        """Keep the message and the key path."""
        super().__init__(message)
        self.keys = keys


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """How to build one Salesforce field (or one top-level Apex payload key).

    Exactly one of `source` (a dotted path into the record), `value` (a constant),
    `template` (a string with `{path}` placeholders), `now` (the run's start time)
    or `expr` (a computed number) is set. `value_map` translates source or
    template values (keys matched case-insensitively); values it does not list
    pass through unchanged unless `map_default` is set.
    """

    target: str
    source: str | None = None
    value: Any = None
    has_value: bool = False
    template: str | None = None
    type: str | None = None
    default: Any = None
    now: bool = False
    expr: Expression | None = None
    value_map: Mapping[str, Any] | None = None
    map_default: Any = None
    has_map_default: bool = False

    @property
    def source_root(self) -> str | None:
        """The top-level record property this field reads, if any."""
        return self.source.split(".", 1)[0] if self.source else None

    @property
    def roots(self) -> set[str]:
        """Every top-level record property this field reads."""
        roots = {self.source_root} if self.source_root else set()
        if self.template:
            roots.update(p.split(".", 1)[0] for p in template_paths(self.template))
        if self.expr is not None:
            roots.update(n.split(".", 1)[0] for n in self.expr.names)
        return roots


#: an Apex REST call: path under /services/apexrest/ and a payload template (the
#: checked `apex:` entry, path without slashes and method in capitals)
ApexSpec: TypeAlias = ApexDoc


@dataclasses.dataclass(frozen=True)
class StreamMapping:
    """Everything the target needs to know to load one stream."""

    stream: str
    mode: str = "sobject"
    sobject: str | None = None
    action: str = "upsert"
    external_id_field: str | None = None
    fields: tuple[FieldSpec, ...] = ()
    pass_through: bool = False
    pack_unmapped_into: str | None = None
    null_policy: str | None = None
    duplicate_keys: str | None = None
    bulk_threshold: int | None = None
    apex: ApexSpec | None = None
    skip: bool = False
    #: a record without a key: `reject` (MISSING_KEY) or `not_linked` (counted
    #: apart: the person has no Salesforce record to update, not an error)
    on_missing_key: str = "reject"
    #: read another stream's records (a second entry for one input stream)
    source_stream: str | None = None
    #: with source_stream: only the records for which this condition (the
    #: mapping expression language, as target-clevertap's `when:`) holds reach
    #: the entry
    when: Expression | None = None
    origin: str | None = None
    field_lines: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def located(self, target: str | None = None) -> str:
        """` (mappings_file F, line N)` for a field (or the stream), else ``."""
        if not self.origin:
            return ""
        line = self.field_lines.get(target or "", self.field_lines.get("", 0))
        return f" ({self.origin}, line {line})" if line else f" ({self.origin})"

    @property
    def key_field(self) -> str | None:
        """The payload field that identifies a record for this action."""
        if self.mode == "apex" or self.action == "insert":
            return None
        if self.action == "upsert":
            return self.external_id_field
        return "Id"

    @property
    def used_roots(self) -> set[str]:
        """Top-level record properties read by explicit field specs or templates."""
        roots: set[str] = set()
        for spec in self.fields:
            roots |= spec.roots
        return roots


def template_paths(template: str) -> list[str]:
    """Return the `{path}` placeholders of a template string, in order."""
    return [m.group(1) for m in PLACEHOLDER.finditer(template)]


def _where(stream: str, key: str) -> str:
    return f"streams.{stream}.{key}"


_FIELD_KINDS: Final = ("source", "value", "template", "now", "expr")


def map_key(value: object) -> str:
    """The form in which `map` keys and record values are compared."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, decimal.Decimal):
        # a record's 7.50 matches a `7.5` key, as it did when it was a float
        value = value.normalize()
    return str(value).strip().casefold()


def _parse_map(stream: str, target: str, raw: RawMapping) -> dict[str, Any]:
    where = _where(stream, f"fields.{target}.map")
    keys = ("fields", target, "map")
    if not raw:
        msg = f"{where} must map source values to Salesforce values"
        raise MappingError(msg, keys)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, dict | list) or key is None:
            msg = f"{where}: keys must be plain values, not {key!r}"
            raise MappingError(msg, keys)
        if isinstance(value, dict | list):
            msg = f"{where}.{key}: a Salesforce value must be a plain value"
            raise MappingError(msg, (*keys, str(key)))
        norm = map_key(key)
        if norm in out:
            msg = f"{where}: {key!r} is listed twice (keys ignore case and spaces)"
            raise MappingError(msg, (*keys, str(key)))
        out[norm] = value
    return out


def _build_field(stream: str, target: str, doc: str | FieldDoc) -> FieldSpec:
    if isinstance(doc, str):
        return FieldSpec(target=target, source=doc)
    where = _where(stream, f"fields.{target}")
    keys = ("fields", target)
    kinds = [k for k in _FIELD_KINDS if getattr(doc, k) is not UNSET]
    if len(kinds) != 1:
        msg = f"{where} needs exactly one of {', '.join(_FIELD_KINDS)}"
        raise MappingError(msg, keys)
    kind = kinds[0]
    if doc.now is not UNSET and doc.now is not True:
        msg = f"{where}.now must be `true` (the run's start time)"
        raise MappingError(msg, (*keys, "now"))
    expr = None
    if isinstance(doc.expr, str):
        expr = _parse_expr(where, keys, doc.expr, doc.type)
    value_map = None
    if not isinstance(doc.map, msgspec.UnsetType):
        if kind not in {"source", "template"}:
            msg = f"{where}.map translates a source or template value, not {kind}"
            raise MappingError(msg, (*keys, "map"))
        value_map = _parse_map(stream, target, doc.map)
    elif doc.map_default is not UNSET:
        msg = f"{where}.map_default needs a `map`"
        raise MappingError(msg, (*keys, "map_default"))
    return FieldSpec(
        target=target,
        source=doc.source if isinstance(doc.source, str) else None,
        value=None if doc.value is UNSET else doc.value,
        has_value=doc.value is not UNSET,
        template=doc.template if isinstance(doc.template, str) else None,
        type=doc.type,
        default=doc.default,
        now=doc.now is True,
        expr=expr,
        value_map=value_map,
        map_default=None if doc.map_default is UNSET else doc.map_default,
        has_map_default=doc.map_default is not UNSET,
    )


def _parse_expr(
    where: str, keys: tuple[str, ...], source: str, ftype: str | None
) -> Expression:
    try:
        expr = compile_expression(source, number=True)
    except ExpressionError as exc:
        msg = f"{where}.expr: {exc}"
        raise MappingError(msg, (*keys, "expr")) from None
    if ftype not in {None, "number", "integer"}:
        msg = f"{where}: an expr is a number; type must be number or integer"
        raise MappingError(msg, (*keys, "type"))
    return expr


def _build_apex(stream: str, doc: ApexDoc | None) -> ApexSpec:
    where = _where(stream, "apex")
    if doc is None:
        msg = f"{where} needs `path` and `payload`"
        raise MappingError(msg, ("apex",))
    path = doc.path.strip("/")
    if path.startswith("services/"):
        msg = f"{where}.path is relative to /services/apexrest/; got {doc.path!r}"
        raise MappingError(msg, ("apex", "path"))
    method = doc.method.upper()
    if method not in APEX_METHODS:
        msg = f"{where}.method is {method!r}; allowed: {', '.join(APEX_METHODS)}"
        raise MappingError(msg, ("apex", "method"))
    if doc.max_records_per_call < 1:
        msg = f"{where}.max_records_per_call must be at least 1"
        raise MappingError(msg, ("apex", "max_records_per_call"))
    return msgspec.structs.replace(doc, path=path, method=method)


def _source_stream(stream: str, doc: StreamDoc) -> tuple[str | None, Expression | None]:
    """`source_stream` (another stream named exactly, on an exact entry), `when`."""
    value, when = doc.source_stream, doc.when
    if when is not None and value is None:
        msg = (
            f"{_where(stream, 'when')} must be an expression (a condition over "
            "the record), on an entry with source_stream"
        )
        raise MappingError(msg, ("when",))
    if value is None:
        return None, None
    condition = None
    if when is not None:
        try:
            condition = compile_expression(when)
        except ExpressionError as exc:
            msg = f"{_where(stream, 'when')}: {exc}"
            raise MappingError(msg, ("when",)) from None
    if not value or any(c in value + stream for c in "*?[") or value == stream:
        msg = (
            f"{_where(stream, 'source_stream')} must name another stream exactly "
            "(no patterns, on an entry that is not a pattern)"
        )
        raise MappingError(msg, ("source_stream",))
    return value, condition


def parse_stream_mapping(stream: str, raw: RawMapping) -> StreamMapping:
    """Parse and check one stream's mapping.

    Args:
        stream: the stream name (or pattern) the mapping is for.
        raw: the mapping as read from JSON or YAML.

    Returns:
        The parsed mapping.

    Raises:
        MappingError: when a key is unknown, missing or has a bad value.
    """
    try:
        doc = parse_stream(stream, raw)
    except DocError as exc:
        raise MappingError(str(exc), exc.keys) from None
    if doc.skip:
        return StreamMapping(stream=stream, skip=True)
    mode = doc.mode or ("apex" if doc.apex is not None else "sobject")
    fields = tuple(_build_field(stream, k, v) for k, v in (doc.fields or {}).items())
    source_stream, when = _source_stream(stream, doc)
    pass_through = doc.pass_through
    if pass_through is None:
        pass_through = not fields and not doc.pack_unmapped_into
    common: dict[str, Any] = {
        "stream": stream,
        "mode": mode,
        "on_missing_key": doc.on_missing_key or "reject",
        "source_stream": source_stream,
        "when": when,
        "fields": fields,
        "pass_through": pass_through,
        "pack_unmapped_into": doc.pack_unmapped_into,
        "null_policy": doc.null_policy,
        "duplicate_keys": doc.duplicate_keys,
        "bulk_threshold": doc.bulk_threshold,
    }
    if common["pass_through"] and common["pack_unmapped_into"]:
        msg = (
            f"streams.{stream}: pass_through and pack_unmapped_into exclude each "
            "other (leftover properties are either copied or packed)"
        )
        raise MappingError(msg, ("pack_unmapped_into",))
    if mode == "apex":
        return StreamMapping(apex=_build_apex(stream, doc.apex), **common)
    sobject = doc.object
    if not sobject:
        msg = f"{_where(stream, 'object')} is required (the target sObject)"
        raise MappingError(msg, ("object",))
    action = doc.action or "upsert"
    ext = doc.external_id_field
    if action == "upsert" and not ext:
        msg = (
            f"{_where(stream, 'external_id_field')} is required for upsert "
            "(any External ID field of the object)"
        )
        raise MappingError(msg, ("external_id_field",))
    _refuse_upsert_on_id(stream, action, ext)
    return StreamMapping(
        sobject=str(sobject), action=action, external_id_field=ext, **common
    )


def _refuse_upsert_on_id(stream: str, action: str, ext: object) -> None:
    """Refuse `upsert` keyed on the record `Id` (not an External ID field).

    Raises:
        MappingError: for upsert on `Id`.
    """
    if action == "upsert" and str(ext) == "Id":
        # sObject Collections upsert accepts External ID fields only, never the
        # record Id (developer.salesforce.com api-rest
        # resources-composite-sobjects-collections-upsert): every chunk would
        # come back HTTP 400, so refuse the mapping before any call.
        msg = (
            f"{_where(stream, 'external_id_field')} is `Id`, but Salesforce "
            "upserts only on External ID fields. Records that carry their "
            "Salesforce Id: use `action: update`; new records: `action: insert`, "
            "or upsert on an External ID field of the object"
        )
        raise MappingError(msg, ("external_id_field",))


def _line_of(node: object, keys: tuple[str, ...]) -> int:
    """The line of the deepest key of `keys` found under `node` (0: unknown)."""
    line = node.line if isinstance(node, LineDict) else 0
    for key in keys:
        if not isinstance(node, LineDict) or key not in node.lines:
            break
        line = node.lines[key]
        node = node[key]
    return line


def _read_file(mappings_file: str) -> LineDict:
    try:
        loaded = yaml_lines.read(Path(mappings_file), f"mappings_file {mappings_file}")
    except yaml_lines.YamlFileError as exc:
        raise MappingError(str(exc)) from exc
    streams = loaded.get("streams") if isinstance(loaded, dict) else None
    if not isinstance(streams, LineDict):
        msg = f"mappings_file {mappings_file} needs a top-level `streams:` mapping"
        raise MappingError(msg)
    return streams


def _field_lines(raw: object, stream_line: int) -> dict[str, int]:
    lines = {"": stream_line}
    fields = raw.get("fields") if isinstance(raw, dict) else None
    if isinstance(fields, LineDict):
        lines.update(fields.lines)
    return lines


def load_mappings(
    streams_setting: Mapping[str, Any] | None, mappings_file: str | None
) -> dict[str, StreamMapping]:
    """Read the mapping file (if any), overlay the `streams` setting, and parse.

    Args:
        streams_setting: the `streams` setting.
        mappings_file: path of a YAML file with a top-level `streams:` mapping.

    Returns:
        Parsed mappings by stream name or pattern (switched-off streams included,
        with `skip` set).

    Raises:
        MappingError: when the file cannot be read or a mapping is invalid; for an
            entry of the file, the message starts with the file and the line.
    """
    file_streams: LineDict | None = None
    merged: dict[str, Any] = {}
    if mappings_file:
        file_streams = _read_file(mappings_file)
        merged.update(file_streams)
    setting = dict(streams_setting or {})
    merged.update(setting)
    out: dict[str, StreamMapping] = {}
    for name, raw in merged.items():
        # the file's streams when this entry comes from the file (not overlaid)
        from_file = file_streams if name not in setting else None
        try:
            mapping = parse_stream_mapping(str(name), raw)
        except MappingError as exc:
            if from_file is None:
                raise
            line = _line_of(from_file, (str(name), *exc.keys))
            msg = f"mappings_file {mappings_file}, line {line}: {exc}"
            raise MappingError(msg, exc.keys) from None
        if from_file is not None:
            mapping = dataclasses.replace(
                mapping,
                origin=f"mappings_file {mappings_file}",
                field_lines=_field_lines(raw, from_file.lines[str(name)]),
            )
        out[str(name)] = mapping
    return out


def find_mapping(
    mappings: Mapping[str, StreamMapping], stream: str
) -> StreamMapping | None:
    """Return the mapping for a stream: exact name first, then the first pattern."""
    if stream in mappings:
        return mappings[stream]
    for pattern, mapping in mappings.items():
        if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(stream, pattern):
            return mapping
    return None
