"""Per-stream mapping settings: parsing and checking, no I/O except reading YAML.

A mapping tells the target what to do with one Singer stream: which sObject to
write (or which Apex REST endpoint to call), with which action and key, and how to
build each Salesforce field from the record. Mappings come from the `streams`
setting and from the YAML file named by `mappings_file` (its top-level `streams:`
key); the setting wins over the file for the same stream name. Stream names may be
shell-style patterns (`events_*`); an exact name wins over a pattern.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, cast

import yaml

if TYPE_CHECKING:
    from collections.abc import Mapping

RawMapping: TypeAlias = Any
"""A mapping value as read from JSON or YAML."""

Action = Literal["upsert", "insert", "update", "delete"]
NullPolicy = Literal["skip", "set_null"]
DuplicatePolicy = Literal["merge", "reject"]

ACTIONS: Final = ("upsert", "insert", "update", "delete")
MODES: Final = ("sobject", "apex")
NULL_POLICIES: Final = ("skip", "set_null")
DUPLICATE_POLICIES: Final = ("merge", "reject")
FIELD_TYPES: Final = (
    "string",
    "date",
    "datetime",
    "boolean",
    "number",
    "integer",
    "picklist",
    "multipicklist",
    "json",
)
APEX_METHODS: Final = ("POST", "PUT", "PATCH")
APEX_BATCHING: Final = ("record", "list")
MAX_COLLECTION_SIZE: Final = 200
PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_$][\w$.\-]*)\}")


class MappingError(ValueError):
    """A mapping setting is invalid, or does not fit the org's describe."""


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """How to build one Salesforce field (or one top-level Apex payload key).

    Exactly one of `source` (a dotted path into the record), `value` (a constant)
    or `template` (a string with `{path}` placeholders) is set.
    """

    target: str
    source: str | None = None
    value: Any = None
    has_value: bool = False
    template: str | None = None
    type: str | None = None
    default: Any = None

    @property
    def source_root(self) -> str | None:
        """The top-level record property this field reads, if any."""
        return self.source.split(".", 1)[0] if self.source else None


@dataclasses.dataclass(frozen=True)
class ApexSpec:
    """An Apex REST call: path under /services/apexrest/ and a payload template."""

    path: str
    payload: Any
    method: str = "POST"
    batching: str = "record"
    list_key: str | None = None
    max_records_per_call: int = MAX_COLLECTION_SIZE


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
        roots: set[str] = {f.source_root for f in self.fields if f.source_root}
        for spec in self.fields:
            if spec.template:
                roots.update(p.split(".", 1)[0] for p in template_paths(spec.template))
        return roots


def template_paths(template: str) -> list[str]:
    """Return the `{path}` placeholders of a template string, in order."""
    return [m.group(1) for m in PLACEHOLDER.finditer(template)]


def _where(stream: str, key: str) -> str:
    return f"streams.{stream}.{key}"


def _choice(
    raw: Mapping[str, Any],
    key: str,
    allowed: tuple[str, ...],
    stream: str,
    default: str | None,
) -> str | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if value not in allowed:
        msg = f"{_where(stream, key)} is {value!r}; allowed: {', '.join(allowed)}"
        raise MappingError(msg)
    return cast("str", value)


def _parse_field(stream: str, target: str, raw: RawMapping) -> FieldSpec:
    where = _where(stream, f"fields.{target}")
    if isinstance(raw, str):
        return FieldSpec(target=target, source=raw)
    if not isinstance(raw, dict):
        msg = f"{where} must be a source property name or a mapping"
        raise MappingError(msg)
    unknown = set(raw) - {"source", "value", "template", "type", "default"}
    if unknown:
        msg = f"{where} has unknown keys: {', '.join(sorted(unknown))}"
        raise MappingError(msg)
    kinds = [k for k in ("source", "value", "template") if k in raw]
    if len(kinds) != 1:
        msg = f"{where} needs exactly one of source, value or template"
        raise MappingError(msg)
    ftype = raw.get("type")
    if ftype is not None and ftype not in FIELD_TYPES:
        msg = f"{where}.type is {ftype!r}; allowed: {', '.join(FIELD_TYPES)}"
        raise MappingError(msg)
    return FieldSpec(
        target=target,
        source=raw.get("source"),
        value=raw.get("value"),
        has_value="value" in raw,
        template=raw.get("template"),
        type=ftype,
        default=raw.get("default"),
    )


def _parse_apex(stream: str, raw: RawMapping) -> ApexSpec:
    where = _where(stream, "apex")
    if not isinstance(raw, dict) or "path" not in raw or "payload" not in raw:
        msg = f"{where} needs `path` and `payload`"
        raise MappingError(msg)
    unknown = set(raw) - {
        "path",
        "payload",
        "method",
        "batching",
        "list_key",
        "max_records_per_call",
    }
    if unknown:
        msg = f"{where} has unknown keys: {', '.join(sorted(unknown))}"
        raise MappingError(msg)
    path = str(raw["path"]).strip("/")
    if path.startswith("services/"):
        msg = f"{where}.path is relative to /services/apexrest/; got {raw['path']!r}"
        raise MappingError(msg)
    method = str(raw.get("method", "POST")).upper()
    if method not in APEX_METHODS:
        msg = f"{where}.method is {method!r}; allowed: {', '.join(APEX_METHODS)}"
        raise MappingError(msg)
    batching = raw.get("batching", "record")
    if batching not in APEX_BATCHING:
        msg = f"{where}.batching is {batching!r}; allowed: record, list"
        raise MappingError(msg)
    size = int(raw.get("max_records_per_call", MAX_COLLECTION_SIZE))
    if size < 1:
        msg = f"{where}.max_records_per_call must be at least 1"
        raise MappingError(msg)
    return ApexSpec(
        path=path,
        payload=raw["payload"],
        method=method,
        batching=batching,
        list_key=raw.get("list_key"),
        max_records_per_call=size,
    )


_STREAM_KEYS: Final = {
    "mode",
    "object",
    "action",
    "external_id_field",
    "fields",
    "pass_through",
    "pack_unmapped_into",
    "null_policy",
    "duplicate_keys",
    "bulk_threshold",
    "apex",
    "description",
}


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
    if not isinstance(raw, dict):
        msg = f"streams.{stream} must be a mapping"
        raise MappingError(msg)
    unknown = set(raw) - _STREAM_KEYS
    if unknown:
        msg = f"streams.{stream} has unknown keys: {', '.join(sorted(unknown))}"
        raise MappingError(msg)
    mode = _choice(raw, "mode", MODES, stream, "apex" if "apex" in raw else "sobject")
    fields_raw = raw.get("fields") or {}
    if not isinstance(fields_raw, dict):
        msg = f"{_where(stream, 'fields')} must map Salesforce field names to sources"
        raise MappingError(msg)
    fields = tuple(_parse_field(stream, str(k), v) for k, v in fields_raw.items())
    bulk_threshold = raw.get("bulk_threshold")
    common: dict[str, Any] = {
        "stream": stream,
        "mode": mode,
        "fields": fields,
        "pass_through": bool(
            raw.get("pass_through", not fields and not raw.get("pack_unmapped_into"))
        ),
        "pack_unmapped_into": raw.get("pack_unmapped_into"),
        "null_policy": _choice(raw, "null_policy", NULL_POLICIES, stream, None),
        "duplicate_keys": _choice(
            raw, "duplicate_keys", DUPLICATE_POLICIES, stream, None
        ),
        "bulk_threshold": int(bulk_threshold) if bulk_threshold is not None else None,
    }
    if common["pass_through"] and common["pack_unmapped_into"]:
        msg = (
            f"streams.{stream}: pass_through and pack_unmapped_into exclude each "
            "other (leftover properties are either copied or packed)"
        )
        raise MappingError(msg)
    if mode == "apex":
        return StreamMapping(apex=_parse_apex(stream, raw.get("apex")), **common)
    sobject = raw.get("object")
    if not sobject:
        msg = f"{_where(stream, 'object')} is required (the target sObject)"
        raise MappingError(msg)
    action = cast("str", _choice(raw, "action", ACTIONS, stream, "upsert"))
    ext = raw.get("external_id_field")
    if action == "upsert" and not ext:
        msg = (
            f"{_where(stream, 'external_id_field')} is required for upsert "
            "(any External ID field of the object)"
        )
        raise MappingError(msg)
    return StreamMapping(
        sobject=str(sobject), action=action, external_id_field=ext, **common
    )


def load_mappings(
    streams_setting: Mapping[str, Any] | None, mappings_file: str | None
) -> dict[str, StreamMapping]:
    """Read the mapping file (if any), overlay the `streams` setting, and parse.

    Args:
        streams_setting: the `streams` setting.
        mappings_file: path of a YAML file with a top-level `streams:` mapping.

    Returns:
        Parsed mappings by stream name or pattern.

    Raises:
        MappingError: when the file cannot be read or a mapping is invalid.
    """
    merged: dict[str, Any] = {}
    if mappings_file:
        path = Path(mappings_file)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            msg = f"mappings_file {mappings_file!r} cannot be read: {exc}"
            raise MappingError(msg) from exc
        file_streams = loaded.get("streams") if isinstance(loaded, dict) else None
        if not isinstance(file_streams, dict):
            msg = (
                f"mappings_file {mappings_file!r} needs a top-level `streams:` mapping"
            )
            raise MappingError(msg)
        merged.update(file_streams)
    merged.update(dict(streams_setting or {}))
    return {name: parse_stream_mapping(name, raw) for name, raw in merged.items()}


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
