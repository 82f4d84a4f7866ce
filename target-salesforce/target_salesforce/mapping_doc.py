"""target-salesforce's mapping entries as msgspec structs (unknown keys refused).

`parse_stream` checks one entry of the `streams` setting or of a mappings file's
`streams:`, each field on its own so that an error names the field, and words
msgspec's errors as `streams.<stream>.<key> ...` (with the key path, which the file
loader turns into a line). `mapping.py` then resolves the checked entry against the
rules that involve several keys (one of source/value/template/now/expr, upsert
needs an External ID, ...). `mapping.schema.json` beside this module is the JSON
Schema of these structs (`msgspec.json.schema`); the export presets name it on their
first line. Regenerate it by running `tests/transforms/test_preset_schemas.py` with
`TRANSFORMS_UPDATE_SCHEMA=1`; without it, that test checks the file is current.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1)]
Action = Literal["upsert", "insert", "update", "delete"]
Mode = Literal["sobject", "apex"]
NullPolicy = Literal["skip", "set_null"]
DuplicatePolicy = Literal["merge", "reject"]
MissingKeyPolicy = Literal["reject", "not_linked"]
FieldType = Literal[
    "string",
    "date",
    "datetime",
    "boolean",
    "number",
    "integer",
    "picklist",
    "multipicklist",
    "json",
]
ApexBatching = Literal["record", "list"]
MAX_COLLECTION_SIZE: Final = 200
SCHEMA_PATH: Final = Path(__file__).with_name("mapping.schema.json")
UNSET: Final = msgspec.UNSET


class _Doc(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base: unknown keys are refused."""


class FieldDoc(_Doc):
    """How to build one Salesforce field.

    Exactly one of source, value, template, now or expr; `map` translates source
    or template values.
    """

    source: str | msgspec.UnsetType = UNSET
    value: Any = UNSET
    template: str | msgspec.UnsetType = UNSET
    #: `true`: the run's start time
    now: bool | msgspec.UnsetType = UNSET
    #: a computed number (the mapping expression language)
    expr: str | msgspec.UnsetType = UNSET
    type: FieldType | None = None
    default: Any = None
    map: dict[Any, Any] | msgspec.UnsetType = UNSET
    map_default: Any = UNSET


Field = str | FieldDoc


class ApexDoc(_Doc):
    """An Apex REST call: path under /services/apexrest/ and a payload template."""

    path: str
    payload: Any
    method: str = "POST"
    batching: ApexBatching = "record"
    list_key: str | None = None
    max_records_per_call: int = MAX_COLLECTION_SIZE
    isolate_errors: bool = True


class StreamDoc(_Doc):
    """Everything the target needs to know to load one stream."""

    mode: Mode | None = None
    object: str | None = None
    action: Action | None = None
    external_id_field: str | None = None
    fields: dict[str, Field] | None = None
    pass_through: bool | None = None
    pack_unmapped_into: str | None = None
    null_policy: NullPolicy | None = None
    duplicate_keys: DuplicatePolicy | None = None
    bulk_threshold: int | None = None
    apex: ApexDoc | None = None
    description: str | None = None
    skip: bool = False
    on_missing_key: MissingKeyPolicy | None = None
    #: read another stream's records (a second entry for one input stream)
    source_stream: str | None = None
    #: with source_stream: a condition (the mapping expression language)
    when: str | None = None


class MappingDocument(_Doc):
    """A target-salesforce mappings file."""

    streams: dict[str, StreamDoc]
    #: the preset format version (transforms/README.md, Changelog)
    version: int | None = None


#: the allowed values of each choice, for error messages
CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "mode": get_args(Mode),
    "action": get_args(Action),
    "null_policy": get_args(NullPolicy),
    "duplicate_keys": get_args(DuplicatePolicy),
    "on_missing_key": get_args(MissingKeyPolicy),
    "type": get_args(FieldType),
    "batching": get_args(ApexBatching),
}
_MESSAGES: Final = {
    "skip": "must be true or false",
    "pass_through": "must be true or false",
    "isolate_errors": "must be true or false",
    "now": "must be `true` (the run's start time)",
    "map": "must map source values to Salesforce values",
    "fields": "must map Salesforce field names to sources",
    "when": (
        "must be an expression (a condition over the record), on an entry with "
        "source_stream"
    ),
    "source_stream": (
        "must name another stream exactly (no patterns, on an entry that is not "
        "a pattern)"
    ),
}
_ERROR = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>.*)`)?$")
_KEY = re.compile(r"\.([^.\[]+)")


class DocError(ValueError):
    """An entry that does not fit the types; `keys` is the path of the key."""

    def __init__(self, message: str, keys: tuple[str, ...]) -> None:
        """Keep the message and the key path.

        Args:
            message: the message, starting with `streams.<stream>`.
            keys: the path of the offending key below the stream's entry.
        """
        super().__init__(message)
        self.keys = keys


def _convert(raw: object, kind: Any, where: str, base: tuple[str, ...]) -> Any:  # noqa: ANN401 - a struct or a union of types
    """`msgspec.convert`, with errors in this target's words."""
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        match = _ERROR.match(str(exc))
        what = match["what"] if match else str(exc)
        keys = (*base, *_KEY.findall(match["path"] or "" if match else ""))
    unknown = re.match(r"Object contains unknown field `(.*)`", what)
    missing = re.match(r"Object missing required field `(.*)`", what)
    if unknown:
        text = ".".join([where, *keys[len(base) :]])
        message = f"{text} has unknown keys: {unknown[1]}"
        raise DocError(message, (*keys, unknown[1])) from None
    value = _at(raw, keys[len(base) :])
    if keys[len(base) :] == ("apex",) and (missing or not isinstance(value, dict)):
        message = f"{where}.apex needs `path` and `payload`"
        raise DocError(message, ("apex",)) from None
    text = ".".join([where, *keys[len(base) :]])
    key = keys[-1] if keys else ""
    if key in CHOICES and isinstance(value, str | int | float | bool):
        message = f"{text} is {value!r}; allowed: {', '.join(CHOICES[key])}"
    elif key in _MESSAGES:
        message = f"{text} {_MESSAGES[key]}"
    else:
        message = f"{text}: {what[0].lower()}{what[1:]}"
    raise DocError(message, keys) from None


def _at(node: object, keys: tuple[str, ...]) -> object:
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def parse_stream(stream: str, raw: object) -> StreamDoc:
    """Check one stream's entry against the types (each field on its own).

    Args:
        stream: the stream name (or pattern).
        raw: the entry as read from JSON or YAML.

    Returns:
        The checked entry.

    Raises:
        DocError: naming the key at fault (`streams.<stream>.<key> ...`).
    """
    where = f"streams.{stream}"
    if not isinstance(raw, dict):
        msg = f"{where} must be a mapping"
        raise DocError(msg, ())
    fields_raw = raw.get("fields")
    if fields_raw is not None and not isinstance(fields_raw, dict):
        msg = f"{where}.fields {_MESSAGES['fields']}"
        raise DocError(msg, ("fields",))
    doc: StreamDoc = _convert(
        {k: v for k, v in raw.items() if k != "fields"}, StreamDoc, where, ()
    )
    fields: dict[str, Field] = {}
    for name, spec in (fields_raw or {}).items():
        place = f"{where}.fields.{name}"
        if not isinstance(spec, str | dict):
            msg = f"{place} must be a source property name or a mapping"
            raise DocError(msg, ("fields", str(name)))
        fields[str(name)] = _convert(spec, Field, place, ("fields", str(name)))
    return msgspec.structs.replace(doc, fields=fields)
