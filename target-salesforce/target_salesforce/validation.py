"""A compiled record validator (fastjsonschema) that accepts the SDK's Decimals.

The SDK's reader turns every JSON number into `Decimal`, which fastjsonschema does
not count as an integer. The schema is therefore compiled with `integer` rewritten
as `number` plus `multipleOf: 1` (same meaning, Decimal-friendly), and without
`format` keywords unless format checking is on, matching the SDK's default.

A record that does not match is not fatal: the sink rejects it with code
`INVALID_RECORD`, a message and the field(s) at fault, and the run goes on.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any, Final

import fastjsonschema
from singer_sdk.exceptions import InvalidJSONSchema, InvalidRecord
from singer_sdk.sinks.core import BaseJSONSchemaValidator, JSONSchemaValidator
from typing_extensions import override

if TYPE_CHECKING:
    from collections.abc import Callable

CODE_INVALID_RECORD: Final = "INVALID_RECORD"
_ROOT = re.compile(r"^data(\.|\b)")


class InvalidRecordField(InvalidRecord):
    """InvalidRecord that also names the field at fault (dotted path, or none)."""

    def __init__(self, message: str, record: dict[str, Any], field: str) -> None:
        """Keep the field next to the SDK's message and record."""
        super().__init__(message, record)
        self.field = field


def describe_invalid(exc: InvalidRecord) -> tuple[str, list[str]]:
    """A reject message and its field list for a record that failed validation."""
    field = getattr(exc, "field", "")
    message = str(getattr(exc, "error_message", "") or exc)
    return f"record does not match the stream schema: {message}", (
        [field] if field else []
    )


def _rewrite(node: object, *, keep_formats: bool) -> object:
    if isinstance(node, list):
        return [_rewrite(n, keep_formats=keep_formats) for n in node]
    if not isinstance(node, dict):
        return node
    return _rewrite_schema(node, keep_formats=keep_formats)


def _rewrite_schema(node: dict[str, Any], *, keep_formats: bool) -> dict[str, Any]:
    out = {
        k: _rewrite(v, keep_formats=keep_formats)
        for k, v in node.items()
        if keep_formats or k != "format"
    }
    kind = node.get("type")
    types = [kind] if isinstance(kind, str) else list(kind or [])
    if "integer" in types:
        types = [t for t in types if t != "integer"]
        if "number" not in types:
            types.append("number")
            out.setdefault("multipleOf", 1)
        out["type"] = types[0] if len(types) == 1 else types
    return out


class CompiledValidator(BaseJSONSchemaValidator):
    """Validate records with a schema compiled once per sink."""

    def __init__(
        self, schema: dict[str, Any], *, validate_formats: bool = False
    ) -> None:
        """Check the schema itself, then compile it.

        Raises:
            InvalidJSONSchema: when the schema is not a valid JSON schema.
        """
        super().__init__(schema)
        JSONSchemaValidator(schema)  # the SDK's own check of the schema itself
        try:
            compiled = _rewrite_schema(
                copy.deepcopy(schema), keep_formats=validate_formats
            )
            self._validate: Callable[[Any], Any] = fastjsonschema.compile(compiled)
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            msg = f"Schema Validation Error: {exc}"
            raise InvalidJSONSchema(msg) from exc

    @override
    def validate(self, record: dict[str, Any]) -> None:
        """Raise InvalidRecord when the record does not match the schema."""
        try:
            self._validate(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            field = _ROOT.sub("", str(exc.name or ""))
            message = _ROOT.sub("", exc.message).strip() or exc.message
            if field and not message.startswith(field):
                message = f"{field}: {message}"
            raise InvalidRecordField(message, record, field) from exc
