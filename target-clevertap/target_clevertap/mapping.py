"""The mapping model: which CleverTap profiles and events each stream becomes.

`load_mappings()` is the public entry point; it validates everything up front and
raises `MappingError` naming the file, line, stream and mapping key at fault.
The format is documented in the package README.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from target_clevertap.exprlang import Expression, ExpressionError, compile_expression

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

TYPE_HINTS = frozenset(
    {"date", "datetime", "number", "string", "boolean", "multi", "json"}
)
#: reference fields whose object is known from the name
REF_OBJECTS = {
    "ContactId": "Contact",
    "LeadId": "Lead",
    "AccountId": "Account",
    "WhoId": "Who",
    "OpportunityId": "Opportunity",
    "ConvertedContactId": "Contact",
    "CaseId": "Case",
}
#: polymorphic reference fields: `<X>Id` does not tell the object, `object:` must
POLYMORPHIC_REFS = frozenset({"WhatId", "ParentId", "RelatedToId"})
#: the record fields whose time orders versions of a record (change tracking)
DEFAULT_VERSION_FIELDS = ("SystemModstamp", "LastModifiedDate")
#: `time:` of an event that uses changed()/previous() and names no time
MODIFIED_TIME = "modified"
_TEMPLATE_FIELD = re.compile(r"\{([^{}]+)\}")
_ALLOWED_STREAM_KEYS = {
    "profile",
    "events",
    "skip",
    "conversion_field",
    "version_field",
    "track_key",
}
_ALLOWED_PROFILE_KEYS = {"identity", "objectId", "properties", "when", "time"}
_ALLOWED_EVENT_KEYS = {
    "name",
    "name_field",
    "identity",
    "objectId",
    "properties",
    "when",
    "time",
}
_ALLOWED_PROPERTY_KEYS = {
    "include",
    "exclude",
    "rename",
    "constants",
    "types",
    "invert",
    "opt_out",
    "flatten_addresses",
    "derive_name",
    "previous",
}
_ALLOWED_IDENTITY_KEYS = {"field", "template", "ref", "object"}


class MappingError(ValueError):
    """A mapping that is invalid; the message names where."""


@dataclass(frozen=True)
class Template:
    """A string with `{Field}` placeholders."""

    text: str
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse a template.

        Args:
            text: e.g. `SF_Contact_{Id}`.

        Returns:
            The template.
        """
        return cls(text, tuple(_TEMPLATE_FIELD.findall(text)))


@dataclass(frozen=True)
class IdentitySpec:
    """Who a profile or event belongs to."""

    kind: Literal["field", "template", "ref"]
    value: str
    key: Literal["identity", "objectId"] = "identity"
    template: Template | None = None
    ref_object: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        """Record fields the identity reads."""
        if self.template is not None:
            return self.template.fields
        return (self.value,)


@dataclass(frozen=True)
class PropertySpec:
    """Which record fields become CleverTap properties, and how."""

    include: tuple[str, ...] | None = None
    exclude: frozenset[str] = frozenset()
    rename: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, Any] = field(default_factory=dict)
    types: Mapping[str, str] = field(default_factory=dict)
    invert: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: opt-out field -> keys set to false when it is true (consent: nothing else)
    opt_out: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    flatten_addresses: bool = True
    derive_name: bool = True
    #: tracked field -> key carrying its previous value (change tracking)
    previous: Mapping[str, str] = field(default_factory=dict)
    #: raw field name -> output key, filled as records are mapped (speed)
    key_cache: dict[str, str] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )
    #: (id of the stream's SchemaInfo, profile) -> (that SchemaInfo, field plan)
    plans: dict[tuple[int, bool], tuple[Any, list[Any]]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )


@dataclass(frozen=True)
class ProfileSpec:
    """A profile upsert built from each record."""

    identity: IdentitySpec
    properties: PropertySpec
    when: Expression | None = None
    time: str | None = None


@dataclass(frozen=True)
class EventSpec:
    """An event built from each record (when its condition holds)."""

    identity: IdentitySpec
    properties: PropertySpec
    name: Template | None = None
    name_field: str | None = None
    when: Expression | None = None
    time: str = "auto"

    def label(self) -> str:
        """A short label for logs."""
        if self.name is not None:
            return self.name.text
        return f"<{self.name_field}>"


@dataclass(frozen=True)
class StreamMapping:
    """Everything one stream becomes."""

    stream: str
    profile: ProfileSpec | None = None
    events: tuple[EventSpec, ...] = ()
    skip: bool = False
    conversion_field: str | None = "ConvertedContactId"
    origin: str = "default"
    #: orders versions of a record for change tracking (None: SystemModstamp,
    #: else LastModifiedDate)
    version_field: str | None = None
    #: change tracking per value of this field instead of per record key (e.g.
    #: OpportunityHistory rows tracked per OpportunityId)
    track_key: str | None = None

    @functools.cached_property
    def tracked_fields(self) -> frozenset[str]:
        """Fields whose last seen value is remembered per record (change tracking).

        Every field named in `changed()` / `previous()` of a condition or in a
        `properties.previous` of this stream's profile or events.

        Returns:
            The field names (empty when the mapping tracks nothing).
        """
        found: set[str] = set()
        specs: list[ProfileSpec | EventSpec] = list(self.events)
        if self.profile is not None:
            specs.append(self.profile)
        for spec in specs:
            if spec.when is not None:
                found |= spec.when.tracked
            found |= set(spec.properties.previous)
        return frozenset(found)

    def version_fields(self) -> tuple[str, ...]:
        """The fields tried, in order, for a record's version time.

        Returns:
            `version_field`, or the Salesforce defaults.
        """
        return (self.version_field,) if self.version_field else DEFAULT_VERSION_FIELDS

    def referenced_fields(self) -> dict[str, list[str]]:
        """Every record field this mapping reads, with where it is used.

        Lets preset tests check field names against a real schema.

        Returns:
            field -> places (e.g. `profile.identity`, `events[1].when`).
        """
        found: dict[str, list[str]] = {}
        if self.profile is not None:
            p = self.profile
            _collect(found, "profile", p)
        for i, event in enumerate(self.events):
            where = f"events[{i}]"
            _collect(found, where, event)
            if event.name is not None:
                _add(found, event.name.fields, f"{where}.name")
            if event.name_field:
                _add(found, [event.name_field], f"{where}.name_field")
        if self.tracked_fields:
            if self.version_field:
                _add(found, [self.version_field], "version_field")
            if self.track_key:
                _add(found, [self.track_key], "track_key")
        return found


def _add(found: dict[str, list[str]], names: Iterable[str], where: str) -> None:
    for name in names:
        found.setdefault(name, []).append(where)


def _collect(
    found: dict[str, list[str]], where: str, spec: ProfileSpec | EventSpec
) -> None:
    props, when, time = spec.properties, spec.when, spec.time
    _add(found, spec.identity.fields, f"{where}.identity")
    _add(found, props.include or (), f"{where}.properties.include")
    _add(found, props.exclude, f"{where}.properties.exclude")
    _add(found, props.rename, f"{where}.properties.rename")
    _add(found, props.types, f"{where}.properties.types")
    _add(found, props.invert, f"{where}.properties.invert")
    _add(found, props.opt_out, f"{where}.properties.opt_out")
    _add(found, props.previous, f"{where}.properties.previous")
    if when is not None:
        _add(found, when.fields, f"{where}.when")
    if time and time not in {"auto", "now", MODIFIED_TIME}:
        _add(found, [time], f"{where}.time")


# --------------------------------------------------------------------------- YAML


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of each mapping key."""


class _LineDict(dict[str, Any]):
    lines: dict[str, int]
    line: int


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    result = _LineDict()
    result.lines = {}
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[str(key)] = key_node.start_mark.line + 1
    return result


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _line_of(obj: object, key: str | None = None) -> int | None:
    if isinstance(obj, _LineDict):
        if key is not None and key in obj.lines:
            return obj.lines[key]
        return obj.line
    return None


class _Ctx:
    """Where we are, for error messages."""

    def __init__(self, source: str, stream: str) -> None:
        self.source = source
        self.stream = stream

    def error(
        self, where: str, message: str, node: object = None, key: str | None = None
    ) -> MappingError:
        line = _line_of(node, key)
        at = f"{self.source}, line {line}" if line else self.source
        return MappingError(f"{at}: stream {self.stream!r}, {where}: {message}")


def _as_str_list(
    ctx: _Ctx, where: str, value: object, node: object, key: str
) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ctx.error(where, "expected a field name or a list of them", node, key)


def _check_keys(
    ctx: _Ctx, where: str, obj: object, allowed: Iterable[str]
) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ctx.error(where, f"expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise ctx.error(
            where,
            f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})",
            obj,
            unknown[0],
        )
    return obj


def _parse_identity(
    ctx: _Ctx, where: str, raw: object, key: Literal["identity", "objectId"]
) -> IdentitySpec:
    if isinstance(raw, str):
        raw = {"field": raw}
    spec = _check_keys(ctx, where, raw, _ALLOWED_IDENTITY_KEYS)
    kinds = [k for k in ("field", "template", "ref") if k in spec]
    if len(kinds) != 1:
        raise ctx.error(where, "give exactly one of field, template or ref", raw)
    kind = kinds[0]
    value = spec[kind]
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(where, f"{kind} must be a non-empty string", raw, kind)
    if kind == "template":
        template = Template.parse(value)
        if not template.fields:
            raise ctx.error(where, "a template needs at least one {Field}", raw, kind)
        return IdentitySpec("template", value, key, template=template)
    if kind == "ref":
        obj = spec.get("object") or REF_OBJECTS.get(value)
        if not obj and value.endswith("Id") and value not in POLYMORPHIC_REFS:
            obj = value.removesuffix("Id")  # the `<Object>Id` default
        if not obj:
            raise ctx.error(
                where,
                f"cannot tell which object {value!r} points to; add object: "
                "Contact | Lead | Account | Who | Opportunity | <stream>",
                raw,
                kind,
            )
        return IdentitySpec("ref", value, key, ref_object=str(obj))
    if "object" in spec:
        raise ctx.error(where, "object is only valid with ref", raw, "object")
    return IdentitySpec("field", value, key)


def _parse_properties(ctx: _Ctx, where: str, raw: object) -> PropertySpec:
    if raw is None:
        return PropertySpec()
    spec = _check_keys(ctx, where, raw, _ALLOWED_PROPERTY_KEYS)
    include: tuple[str, ...] | None = None
    if "include" in spec and spec["include"] != "all":
        include = tuple(_as_str_list(ctx, where, spec["include"], raw, "include"))
    exclude = frozenset(
        _as_str_list(ctx, where, spec.get("exclude", []), raw, "exclude")
    )
    rename = _name_map(ctx, where, spec, "rename", "field names to new names")
    constants = spec.get("constants", {})
    if not isinstance(constants, dict):
        raise ctx.error(where, "constants must be a mapping", raw, "constants")
    types = _parse_types(ctx, where, raw, spec.get("types", {}))
    invert = _flag_map(ctx, where, spec, "invert")
    opt_out = _flag_map(ctx, where, spec, "opt_out")
    both = sorted(set(invert) & set(opt_out))
    if both:
        message = f"{both[0]!r} is in both invert and opt_out; choose one"
        raise ctx.error(where, message, raw, "opt_out")
    previous = _name_map(ctx, where, spec, "previous", "tracked field names to keys")
    for flag in ("flatten_addresses", "derive_name"):
        if flag in spec and not isinstance(spec[flag], bool):
            raise ctx.error(where, f"{flag} must be true or false", raw, flag)
    return PropertySpec(
        include=include,
        exclude=exclude,
        rename=dict(rename),
        constants=dict(constants),
        types=dict(types),
        invert=invert,
        opt_out=opt_out,
        flatten_addresses=spec.get("flatten_addresses", True),
        derive_name=spec.get("derive_name", True),
        previous=dict(previous),
    )


def _flag_map(
    ctx: _Ctx, where: str, spec: Mapping[str, Any], key: str
) -> dict[str, tuple[str, ...]]:
    """`invert` / `opt_out`: a boolean field mapped to one key or a list of keys."""
    raw = spec.get(key, {})
    if not isinstance(raw, dict):
        raise ctx.error(where, f"{key} maps a boolean field to keys", spec, key)
    return {
        str(k): tuple(_as_str_list(ctx, where, v, raw, str(k))) for k, v in raw.items()
    }


def _name_map(
    ctx: _Ctx, where: str, raw: Mapping[str, Any], key: str, what: str
) -> dict[str, str]:
    """`rename` / `previous`: names mapped to non-empty names."""
    value = raw.get(key, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        raise ctx.error(where, f"{key} maps {what}", raw, key)
    return value


def _parse_types(ctx: _Ctx, where: str, raw: object, types: object) -> dict[str, str]:
    if not isinstance(types, dict):
        raise ctx.error(where, "types must be a mapping", raw, "types")
    for name, hint in types.items():
        if hint not in TYPE_HINTS:
            raise ctx.error(
                where,
                f"unknown type hint {hint!r} for {name!r} "
                f"(allowed: {', '.join(sorted(TYPE_HINTS))})",
                types,
                name,
            )
    return types


def _parse_when(ctx: _Ctx, where: str, raw: object, node: object) -> Expression | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ctx.error(where, "a condition must be a string", node, "when")
    try:
        return compile_expression(raw)
    except ExpressionError as exc:
        raise ctx.error(where, f"invalid condition: {exc}", node, "when") from exc


def _parse_time(ctx: _Ctx, where: str, raw: object, node: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise ctx.error(where, "time must be a field name or 'now'", node, "time")
    return raw


def _identity_of(ctx: _Ctx, where: str, spec: dict[str, Any]) -> IdentitySpec | None:
    if "identity" in spec and "objectId" in spec:
        raise ctx.error(where, "give identity or objectId, not both", spec)
    if "identity" in spec:
        return _parse_identity(ctx, f"{where}.identity", spec["identity"], "identity")
    if "objectId" in spec:
        return _parse_identity(ctx, f"{where}.objectId", spec["objectId"], "objectId")
    return None


def _parse_profile(ctx: _Ctx, raw: object) -> ProfileSpec:
    where = "profile"
    praw = _check_keys(ctx, where, raw, _ALLOWED_PROFILE_KEYS)
    identity = _identity_of(ctx, where, praw)
    if identity is None:
        message = "identity (or objectId) is required"
        raise ctx.error(where, message, praw)
    return ProfileSpec(
        identity=identity,
        properties=_parse_properties(ctx, "profile.properties", praw.get("properties")),
        when=_parse_when(ctx, "profile.when", praw.get("when"), praw),
        time=_parse_time(ctx, "profile.time", praw.get("time"), praw),
    )


def _parse_event(
    ctx: _Ctx,
    where: str,
    raw: object,
    profile: ProfileSpec | None,
    version_field: str | None,
) -> EventSpec:
    eraw = _check_keys(ctx, where, raw, _ALLOWED_EVENT_KEYS)
    has_name = "name" in eraw
    if has_name == ("name_field" in eraw):
        message = "give exactly one of name or name_field"
        raise ctx.error(where, message, eraw)
    if has_name and (not isinstance(eraw["name"], str) or not eraw["name"]):
        message = "name must be a non-empty string"
        raise ctx.error(where, message, eraw, "name")
    if not has_name and not isinstance(eraw["name_field"], str):
        message = "name_field must be a field name"
        raise ctx.error(where, message, eraw, "name_field")
    identity = _identity_of(ctx, where, eraw)
    if identity is None:
        if profile is None:
            message = "identity is required when there is no profile"
            raise ctx.error(where, message, eraw)
        identity = profile.identity
    properties = _parse_properties(ctx, f"{where}.properties", eraw.get("properties"))
    when = _parse_when(ctx, f"{where}.when", eraw.get("when"), eraw)
    time = _parse_time(ctx, f"{where}.time", eraw.get("time"), eraw)
    if time is None:
        # a change happens when the record is modified, not when it was created
        tracks = bool(properties.previous) or bool(when and when.tracked)
        time = (version_field or MODIFIED_TIME) if tracks else "auto"
    return EventSpec(
        identity=identity,
        properties=properties,
        name=Template.parse(eraw["name"]) if has_name else None,
        name_field=eraw.get("name_field"),
        when=when,
        time=time,
    )


def _parse_stream(
    source: str, stream: str, raw: object, line: int | None = None
) -> StreamMapping:
    ctx = _Ctx(source, stream)
    source = f"{source}, line {line}" if line else source
    where = "mapping"
    spec = _check_keys(ctx, where, {} if raw is None else raw, _ALLOWED_STREAM_KEYS)
    if spec.get("skip"):
        return StreamMapping(stream, skip=True, origin=source)
    version_field = spec.get("version_field")
    track_key = spec.get("track_key")
    for name, value in (("version_field", version_field), ("track_key", track_key)):
        if value is not None and (not isinstance(value, str) or not value):
            message = f"{name} must be a field name"
            raise ctx.error(where, message, spec, name)
    profile = None
    if spec.get("profile") is not None:
        profile = _parse_profile(ctx, spec["profile"])
    events_raw = spec.get("events") or []
    if isinstance(events_raw, dict):
        events_raw = [events_raw]
    if not isinstance(events_raw, list):
        where = "events"
        message = "expected a list of events"
        raise ctx.error(where, message, spec, "events")
    events = tuple(
        _parse_event(ctx, f"events[{i}]", ev, profile, version_field)
        for i, ev in enumerate(events_raw)
    )
    if profile is None and not events:
        message = "needs a profile, events, or skip: true"
        raise ctx.error(where, message, spec)
    conversion = spec.get("conversion_field", "ConvertedContactId")
    if conversion is not None and not isinstance(conversion, str):
        message = "conversion_field must be a field name"
        raise ctx.error(where, message, spec, "conversion_field")
    return StreamMapping(
        stream,
        profile=profile,
        events=events,
        conversion_field=conversion,
        origin=source,
        version_field=version_field,
        track_key=track_key,
    )


def _parse_document(source: str, doc: object) -> dict[str, StreamMapping]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        msg = f"{source}: expected a mapping of stream names to mappings"
        raise MappingError(msg)
    streams = doc.get("streams", doc)
    if not isinstance(streams, dict):
        msg = f"{source}: 'streams' must be a mapping of stream names"
        raise MappingError(msg)
    return {
        str(name): _parse_stream(source, str(name), raw, _line_of(streams, str(name)))
        for name, raw in streams.items()
    }


def _load_yaml(text: str) -> object:
    """Parse YAML, keeping the line of each mapping key (safe: no object tags)."""
    return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass


def _read_file(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"mappings_file {path}: cannot read it ({exc.strerror})"
        raise MappingError(msg) from exc
    try:
        return _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        msg = f"mappings_file {path}{where}: {problem}"
        raise MappingError(msg) from exc


def load_mappings(
    inline: Mapping[str, Any] | str | None = None,
    path: str | Path | None = None,
) -> dict[str, StreamMapping]:
    """Load and validate mappings from a YAML/JSON file and/or an inline object.

    Inline stream entries win over the file's entries for the same stream.

    Args:
        inline: the `mappings` setting (a mapping, or a JSON/YAML string).
        path: the `mappings_file` setting.

    Returns:
        Stream name -> validated mapping.

    Raises:
        MappingError: naming the file and line (for files), the stream and the key.
    """
    result: dict[str, StreamMapping] = {}
    if path:
        file_path = Path(path).expanduser()
        result.update(
            _parse_document(f"mappings_file {file_path}", _read_file(file_path))
        )
    if inline:
        doc: object = inline
        if isinstance(inline, str):
            try:
                doc = json.loads(inline)
            except json.JSONDecodeError:
                try:
                    doc = _load_yaml(inline)
                except yaml.YAMLError as exc:
                    msg = f"mappings setting: not valid JSON or YAML ({exc})"
                    raise MappingError(msg) from exc
        result.update(_parse_document("mappings setting", doc))
    return result


def referenced_objects(mappings: Iterable[StreamMapping]) -> set[str]:
    """The objects (streams) that `{ref: ...}` identities of mappings resolve through.

    Args:
        mappings: the stream mappings.

    Returns:
        Object names (`Who` counts as Contact and Lead, `Account` as Contact).
    """
    found: set[str] = set()
    for mapping in mappings:
        specs = [e.identity for e in mapping.events]
        if mapping.profile is not None:
            specs.append(mapping.profile.identity)
        for spec in specs:
            if spec.kind == "ref" and spec.ref_object:
                found |= {
                    "Who": {"Contact", "Lead"},
                    "Account": {"Contact"},
                }.get(spec.ref_object, {spec.ref_object})
    return found


def default_mapping(stream: str, schema_fields: Iterable[str]) -> StreamMapping | None:
    """The mapping used for a stream that has none: a profile keyed on Email.

    Args:
        stream: the stream name.
        schema_fields: the stream's schema property names.

    Returns:
        The default mapping, or None when the stream has no Email field.
    """
    if "Email" not in set(schema_fields):
        return None
    return StreamMapping(
        stream,
        profile=ProfileSpec(IdentitySpec("field", "Email"), PropertySpec()),
        origin="default",
    )
