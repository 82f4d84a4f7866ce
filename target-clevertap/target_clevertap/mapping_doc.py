"""The mapping document as types: what a `mappings_file` may contain.

The structs below declare every key, its type and its default; `msgspec.convert`
checks an entry against them (unknown keys are refused), and
`msgspec.json.schema` turns them into `mapping.schema.json`, shipped in the package
so that editors check a mapping file as it is typed (the presets name it on their
first line). `mapping.py` builds the runtime model from the checked entries and
keeps the rules that involve more than one key.

Regenerate the schema after a change: `python -m target_clevertap.mapping_doc`
(`tests/transforms/test_preset_schemas.py` checks it is in sync).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1)]
TypeHint = Literal["date", "datetime", "number", "string", "boolean", "multi", "json"]
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


class ProfileDoc(_Doc):
    """A profile upsert built from each record."""

    identity: Identity | None = None
    objectId: Identity | None = None  # noqa: N815 - CleverTap's key name
    properties: PropertiesDoc | None = None
    when: str | None = None
    time: Name | None = None


class EventDoc(_Doc):
    """An event built from each record (when its condition holds)."""

    name: Name | None = None
    name_field: Name | None = None
    identity: Identity | None = None
    objectId: Identity | None = None  # noqa: N815 - CleverTap's key name
    properties: PropertiesDoc | None = None
    when: str | None = None
    time: Name | None = None


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


def mapping_schema() -> dict[str, Any]:
    """The JSON Schema of a target-clevertap mappings file.

    Returns:
        The schema (msgspec's, with a title and the draft it follows).
    """
    schema = msgspec.json.schema(MappingDocument)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "target-clevertap mappings file",
        **schema,
    }


def schema_text() -> str:
    """The schema file's text.

    Returns:
        Indented, key-sorted JSON with a final newline.
    """
    return json.dumps(mapping_schema(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    """Write `mapping.schema.json` (or check it with `--check`).

    Returns:
        0 when up to date (or rewritten), 1 when `--check` finds it stale.
    """
    text = schema_text()
    current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
    if "--check" in sys.argv[1:]:
        return 0 if current == text else 1
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
