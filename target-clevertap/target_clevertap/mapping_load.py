"""Reading and validating the mapping document into the mapping model.

`load_mappings()` is the public entry point; it validates everything up front and
raises `MappingError` naming the file, line, stream and mapping key at fault.
The format is documented in the package README; the specs it builds are in
`mapping.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from target_clevertap import yaml_lines
from target_clevertap.exprlang import Expression, ExpressionError, compile_expression
from target_clevertap.mapping import (
    MODIFIED_TIME,
    EventSpec,
    IdentitySpec,
    ProfileSpec,
    PropertySpec,
    StreamMapping,
    Template,
)
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
from target_clevertap.yaml_lines import LineDict

if TYPE_CHECKING:
    from collections.abc import Mapping

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
IdentityKey = Literal["identity", "objectId"]


class MappingError(ValueError):
    """A mapping that is invalid; the message names where."""


# --------------------------------------------------------------------------- YAML


def _line_of(obj: object, key: str | None = None) -> int | None:
    if isinstance(obj, LineDict):
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


def _read_file(path: Path) -> object:
    try:
        return yaml_lines.read(path, f"mappings_file {path}")
    except yaml_lines.YamlFileError as exc:
        raise MappingError(str(exc)) from exc


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
                    doc = yaml_lines.load(inline)
                except yaml.YAMLError as exc:
                    msg = f"mappings setting: not valid JSON or YAML ({exc})"
                    raise MappingError(msg) from exc
        result.update(_parse_document("mappings setting", doc))
    return result
