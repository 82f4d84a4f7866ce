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
from target_clevertap.mapping_doc import (
    DocError,
    EventDoc,
    IdentityDoc,
    ProfileDoc,
    PropertiesDoc,
    field_names,
    node_at,
    parse_stream,
)
from target_clevertap.values import sanitise_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

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
TEMPLATE_FIELD = re.compile(r"\{([^{}]+)\}")
IdentityKey = Literal["identity", "objectId"]


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
        return cls(text, tuple(TEMPLATE_FIELD.findall(text)))


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
    #: (id of the stream's SchemaInfo, profile) -> (that SchemaInfo, its field
    #: plan compiled: `field_plans.compile_plan`)
    plans: dict[tuple[int, bool], tuple[Any, Any]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    @functools.cached_property
    def constant_items(self) -> tuple[tuple[str, Any], ...]:
        """`constants` with their keys as sent (sanitised once).

        Returns:
            (key, value) pairs.
        """
        return tuple((sanitise_key(str(k)), v) for k, v in self.constants.items())


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

    @functools.cached_property
    def _identity_specs(self) -> tuple[IdentitySpec, ...]:
        """The distinct identity specs of the profile and events, in order."""
        specs: list[IdentitySpec] = []
        if self.profile is not None:
            specs.append(self.profile.identity)
        for event in self.events:
            if event.identity not in specs:
                specs.append(event.identity)
        return tuple(specs)

    @functools.cached_property
    def person_specs(self) -> tuple[IdentitySpec, ...]:
        """The distinct `identity` specs of the profile and events, in order.

        Who a record is about (`identities.record_persons`) is their union.

        Returns:
            The specs (objectId ones left out).
        """
        return tuple(spec for spec in self._identity_specs if spec.key == "identity")

    @functools.cached_property
    def ref_specs(self) -> tuple[IdentitySpec, ...]:
        """The distinct `{ref: ...}` identities of the profile and events.

        Returns:
            The specs (the identity-map reads a record's window needs).
        """
        return tuple(spec for spec in self._identity_specs if spec.kind == "ref")

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


def _build_identity(
    ctx: _Ctx, where: str, doc: str | IdentityDoc, raw: object, key: IdentityKey
) -> IdentitySpec:
    if isinstance(doc, str):
        return IdentitySpec("field", doc, key)
    kinds = [k for k in ("field", "template", "ref") if getattr(doc, k) is not None]
    if len(kinds) != 1:
        raise ctx.error(where, "give exactly one of field, template or ref", raw)
    kind = kinds[0]
    value = str(getattr(doc, kind))
    if kind == "template":
        template = Template.parse(value)
        if not template.fields:
            raise ctx.error(where, "a template needs at least one {Field}", raw, kind)
        return IdentitySpec("template", value, key, template=template)
    if kind == "ref":
        obj = doc.object or REF_OBJECTS.get(value)
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
    if doc.object is not None:
        raise ctx.error(where, "object is only valid with ref", raw, "object")
    return IdentitySpec("field", value, key)


def _build_properties(
    ctx: _Ctx, where: str, doc: PropertiesDoc | None, raw: object
) -> PropertySpec:
    if doc is None:
        return PropertySpec()
    invert = {k: tuple(field_names(v)) for k, v in doc.invert.items()}
    opt_out = {k: tuple(field_names(v)) for k, v in doc.opt_out.items()}
    both = sorted(set(invert) & set(opt_out))
    if both:
        message = f"{both[0]!r} is in both invert and opt_out; choose one"
        raise ctx.error(where, message, raw, "opt_out")
    return PropertySpec(
        include=None if doc.include == "all" else tuple(field_names(doc.include)),
        exclude=frozenset(field_names(doc.exclude)),
        rename=dict(doc.rename),
        constants=dict(doc.constants),
        types=dict(doc.types),
        invert=invert,
        opt_out=opt_out,
        flatten_addresses=doc.flatten_addresses,
        derive_name=doc.derive_name,
        previous=dict(doc.previous),
    )


def _build_when(
    ctx: _Ctx, where: str, text: str | None, raw: object
) -> Expression | None:
    if text is None:
        return None
    try:
        return compile_expression(text)
    except ExpressionError as exc:
        raise ctx.error(where, f"invalid condition: {exc}", raw, "when") from exc


def _identity_of(
    ctx: _Ctx, where: str, doc: ProfileDoc | EventDoc, raw: object
) -> IdentitySpec | None:
    if doc.identity is not None and doc.objectId is not None:
        raise ctx.error(where, "give identity or objectId, not both", raw)
    node = raw.get if isinstance(raw, dict) else (lambda _key: None)
    if doc.identity is not None:
        return _build_identity(
            ctx, f"{where}.identity", doc.identity, node("identity"), "identity"
        )
    if doc.objectId is not None:
        return _build_identity(
            ctx, f"{where}.objectId", doc.objectId, node("objectId"), "objectId"
        )
    return None


def _build_profile(ctx: _Ctx, doc: ProfileDoc, raw: object) -> ProfileSpec:
    where = "profile"
    identity = _identity_of(ctx, where, doc, raw)
    if identity is None:
        message = "identity (or objectId) is required"
        raise ctx.error(where, message, raw)
    props = raw.get("properties") if isinstance(raw, dict) else None
    return ProfileSpec(
        identity=identity,
        properties=_build_properties(ctx, "profile.properties", doc.properties, props),
        when=_build_when(ctx, "profile.when", doc.when, raw),
        time=doc.time,
    )


def _build_event(  # noqa: PLR0913 - the event, its place, and what it inherits
    ctx: _Ctx,
    where: str,
    doc: EventDoc,
    raw: object,
    *,
    profile: ProfileSpec | None,
    version_field: str | None,
) -> EventSpec:
    if (doc.name is None) == (doc.name_field is None):
        message = "give exactly one of name or name_field"
        raise ctx.error(where, message, raw)
    identity = _identity_of(ctx, where, doc, raw)
    if identity is None:
        if profile is None:
            message = "identity is required when there is no profile"
            raise ctx.error(where, message, raw)
        identity = profile.identity
    props = raw.get("properties") if isinstance(raw, dict) else None
    properties = _build_properties(ctx, f"{where}.properties", doc.properties, props)
    when = _build_when(ctx, f"{where}.when", doc.when, raw)
    time = doc.time
    if time is None:
        # a change happens when the record is modified, not when it was created
        tracks = bool(properties.previous) or bool(when and when.tracked)
        time = (version_field or MODIFIED_TIME) if tracks else "auto"
    return EventSpec(
        identity=identity,
        properties=properties,
        name=Template.parse(doc.name) if doc.name is not None else None,
        name_field=doc.name_field,
        when=when,
        time=time,
    )


def _parse_stream(
    source: str, stream: str, raw: object, line: int | None = None
) -> StreamMapping:
    ctx = _Ctx(source, stream)
    source = f"{source}, line {line}" if line else source
    try:
        doc = parse_stream(raw)
    except DocError as exc:
        node = node_at(raw, exc.where)
        raise ctx.error(exc.place, exc.message, node, exc.key) from None
    if doc.skip:
        return StreamMapping(stream, skip=True, origin=source)
    raw_map = raw if isinstance(raw, dict) else {}
    profile = None
    if doc.profile is not None:
        profile = _build_profile(ctx, doc.profile, raw_map.get("profile"))
    events_doc = doc.events or []
    events_raw = raw_map.get("events")
    if isinstance(events_doc, EventDoc):
        events_doc, events_raw = [events_doc], [events_raw]
    if not isinstance(events_raw, list):
        events_raw = [None] * len(events_doc)
    events = tuple(
        _build_event(
            ctx,
            f"events[{i}]",
            ev,
            events_raw[i],
            profile=profile,
            version_field=doc.version_field,
        )
        for i, ev in enumerate(events_doc)
    )
    if profile is None and not events:
        where, message = "mapping", "needs a profile, events, or skip: true"
        raise ctx.error(where, message, raw)
    return StreamMapping(
        stream,
        profile=profile,
        events=events,
        conversion_field=doc.conversion_field,
        origin=source,
        version_field=doc.version_field,
        track_key=doc.track_key,
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
