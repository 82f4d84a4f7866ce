"""What a target-clevertap mappings file may say, declared as msgspec structs.

A stream's entry becomes a `StreamDoc` through `parse_stream`, which refuses unknown
keys and values of the wrong type, and reports the object, the key (for its line)
and a message in the words the mapping errors have always used. The rules across
keys (one of field/template/ref, identity or objectId, name or name_field, ...)
stay in `mapping_load.py`, which builds profiles and events from the checked entry.

The import presets reference `mapping.schema.json`, which is these structs as JSON
Schema (`msgspec.json.schema`), so editors check a preset while it is written; to
refresh it after changing a struct, set `TRANSFORMS_UPDATE_SCHEMA=1` and run
`tests/transforms/test_preset_schemas.py` (which otherwise fails when it is stale).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1)]
TypeHint = Literal[
    "date", "datetime", "number", "string", "boolean", "multi", "json", "items"
]
SCHEMA_PATH: Final = Path(__file__).with_name("mapping.schema.json")


class _Doc(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base: unknown keys are refused."""


class IdentityDoc(_Doc):
    """Who a profile or event belongs to: exactly one of field, template, ref."""

    field: Name | None = None
    template: Name | None = None
    ref: Name | None = None
    #: with ref: the object the reference points to
    object: Name | None = None


Identity = Name | IdentityDoc


class PropertiesDoc(_Doc):
    """Which record fields become CleverTap properties, and how."""

    include: str | list[str] = "all"
    exclude: str | list[str] = []
    rename: dict[str, Name] = {}
    constants: dict[str, Any] = {}
    types: dict[str, TypeHint] = {}
    invert: dict[str, str | list[str]] = {}
    opt_out: dict[str, str | list[str]] = {}
    flatten_addresses: bool = True
    derive_name: bool = True
    previous: dict[str, Name] = {}


class _PersonDoc(_Doc):
    """What a profile and an event share: whose, what, when and at what time."""

    identity: Identity | None = None
    objectId: Identity | None = None  # noqa: N815 - CleverTap's key name
    properties: PropertiesDoc | None = None
    when: str | None = None
    time: Name | None = None


class ProfileDoc(_PersonDoc):
    """A profile upsert built from each record."""


class EventDoc(_PersonDoc):
    """An event built from each record (when its condition holds)."""

    name: Name | None = None
    name_field: Name | None = None


class StreamDoc(_Doc):
    """Everything one stream becomes."""

    profile: ProfileDoc | None = None
    events: list[EventDoc] | EventDoc | None = None
    skip: bool = False
    conversion_field: Name | None = "ConvertedContactId"
    version_field: Name | None = None
    track_key: Name | None = None


class MappingDocument(_Doc):
    """A target-clevertap mappings file."""

    streams: dict[str, StreamDoc | None]
    #: the preset format version (transforms/README.md, Changelog)
    version: int | None = None


#: the message for a bad value, by key (the key is named by `where`)
_MESSAGES: Final = {
    "field": "field must be a non-empty string",
    "template": "template must be a non-empty string",
    "ref": "ref must be a non-empty string",
    "object": "object must be a non-empty string",
    "include": "expected a field name or a list of them",
    "exclude": "expected a field name or a list of them",
    "constants": "constants must be a mapping",
    "rename": "rename maps field names to new names",
    "previous": "previous maps tracked field names to keys",
    "flatten_addresses": "flatten_addresses must be true or false",
    "derive_name": "derive_name must be true or false",
    "skip": "skip must be true or false",
    "when": "a condition must be a string",
    "time": "time must be a field name or 'now'",
    "name": "name must be a non-empty string",
    "name_field": "name_field must be a field name",
    "version_field": "version_field must be a field name",
    "track_key": "track_key must be a field name",
    "conversion_field": "conversion_field must be a field name",
    "events": "expected a list of events",
}
_ERROR = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>.*)`)?$")
_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


class DocError(ValueError):
    """An entry that does not fit the types: where (keys), and what is wrong."""

    def __init__(self, where: list[str | int], key: str | None, message: str) -> None:
        """Keep the location.

        Args:
            where: the path of the object at fault below the stream's entry.
            key: the key at fault in that object (its line is reported).
            message: what is wrong.
        """
        super().__init__(message)
        self.where = where
        self.key = key
        self.message = message

    @property
    def place(self) -> str:
        """`["events", 0, "properties"]` -> `events[0].properties` (top: `mapping`)."""
        text = "".join(f"[{t}]" if isinstance(t, int) else f".{t}" for t in self.where)
        return text.lstrip(".") or "mapping"


def field_names(value: str | list[str]) -> list[str]:
    """A field name or a list of them, as a list."""
    return [value] if isinstance(value, str) else list(value)


def _path(text: str | None) -> list[str | int]:
    """`.events[0].properties.types[...]` -> ["events", 0, "properties", "types"]."""
    tokens: list[str | int] = []
    for name, index in _TOKEN.findall(text or ""):
        if index == "...":
            break  # a key of a free-form mapping: report the mapping itself
        tokens.append(name or int(index))
    return tokens


def node_at(node: object, path: list[str | int]) -> object:
    """The raw value at `path` (None when the path does not lead anywhere)."""
    for token in path:
        if isinstance(token, int) and isinstance(node, list) and token < len(node):
            node = node[token]
        elif isinstance(token, str) and isinstance(node, dict):
            node = node.get(token)
        else:
            return None
    return node


def _fields_of(path: list[str | int]) -> list[str]:
    """The keys allowed in the object at `path` (named by its last key)."""
    names = [t for t in path if isinstance(t, str)]
    struct = _STRUCT_BY_KEY.get(names[-1] if names else "", StreamDoc)
    return sorted(struct.__struct_fields__)


_STRUCT_BY_KEY: Final[dict[str, type[_Doc]]] = {
    "profile": ProfileDoc,
    "events": EventDoc,
    "properties": PropertiesDoc,
    "identity": IdentityDoc,
    "objectId": IdentityDoc,
}


def _bad_value(key: str, value: object) -> str:
    if key == "types" and isinstance(value, dict):
        allowed = get_args(TypeHint)
        name, hint = next((k, v) for k, v in value.items() if v not in allowed)
        return (
            f"unknown type hint {hint!r} for {name!r} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
    if key in {"types", "invert", "opt_out"} and not isinstance(value, dict):
        return {
            "types": "types must be a mapping",
            "invert": "invert maps a boolean field to keys",
            "opt_out": "opt_out maps a boolean field to keys",
        }[key]
    if key in {"invert", "opt_out"}:
        return "expected a field name or a list of them"
    if key in {"identity", "objectId", "profile"} or key not in _MESSAGES:
        return f"expected a mapping, got {type(value).__name__}"
    return _MESSAGES[key]


def parse_stream(raw: object) -> StreamDoc:
    """Check one stream's entry against the types.

    Args:
        raw: the entry as read from YAML or JSON (None: an empty entry).

    Returns:
        The checked entry.

    Raises:
        DocError: naming the object and key at fault.
    """
    try:
        return msgspec.convert({} if raw is None else raw, StreamDoc)
    except msgspec.ValidationError as exc:
        match = _ERROR.match(str(exc))
        what = match["what"] if match else str(exc)
        path = _path(match["path"] if match else None)
    unknown = re.match(r"Object contains unknown field `(.*)`", what)
    if unknown:
        key = unknown[1]
        allowed = _fields_of(path)
        message = f"unknown key {key!r} (allowed: {', '.join(allowed)})"
        raise DocError(path, key, message) from None
    if not path:
        message = f"expected a mapping, got {type(raw).__name__}"
        raise DocError([], None, message) from None
    key = path[-1]
    if isinstance(key, int):  # an item of a list: name the list
        path, key = path[:-1], path[-2]
    name = str(key)
    message = _bad_value(name, node_at(raw, path))
    raise DocError(path[:-1], name, message) from None
