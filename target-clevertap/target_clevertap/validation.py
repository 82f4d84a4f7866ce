"""Record validation that rejects instead of stopping the run.

Two compiled validators share the work (see `RejectingValidator`), and
`multipleOf` on a field is checked here, exactly, on the value's decimal text:
fastjsonschema 2.22 builds `Decimal(repr(value))`, which fails on the
`Decimal` values the SDK's reader gives for JSON numbers with a fraction (and
divides a `Decimal` by a float), so a tap that declares `multipleOf` (as
database taps do for NUMERIC columns) would stop the run on its first decimal.
"""

from __future__ import annotations

import copy
import decimal
import json
from typing import TYPE_CHECKING, Any

import fastjsonschema
import jsonschema_rs
from singer_sdk.exceptions import InvalidJSONSchema
from singer_sdk.sinks.core import BaseJSONSchemaValidator
from typing_extensions import override

if TYPE_CHECKING:
    from collections.abc import Callable


#: keywords whose checks can differ between jsonschema-rs (JSON values) and
#: fastjsonschema (Python values: `Decimal('0.1') != 0.1`, `True == 1`, Python
#: regular expressions); a field under one of them is always checked by both
_JUDGED_APART = ('"enum":', '"const":', '"uniqueItems":', '"multipleOf":', '"pattern')


def _mentions_integer(node: object) -> bool:
    return '"integer"' in json.dumps(node, default=str)


def _judged_apart(node: object) -> bool:
    text = json.dumps(node, default=str)
    return any(keyword in text for keyword in _JUDGED_APART)


class RejectingValidator(BaseJSONSchemaValidator):
    """A compiled validator that notes failures instead of raising.

    Every record is still validated; an invalid one becomes a reject naming the
    stream, key and field, instead of stopping the run. jsonschema-rs answers
    whether a record is valid (about 0.7 µs for a Contact against fastjsonschema's
    5 µs); fastjsonschema, compiled too, decides the records jsonschema-rs refuses
    (its message and path make the reject) and the ones the two may judge apart:
    a decimal in an integer field (`2.0`: valid for jsonschema-rs, not for
    fastjsonschema, which decided alone before), a value under `enum`, `const`,
    `uniqueItems`, `multipleOf` or `pattern`.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        """Compile the schema.

        Args:
            schema: the stream schema.

        Raises:
            InvalidJSONSchema: when the schema does not compile.
        """
        super().__init__(schema)
        schema, self._divisors = _split_multiple_of(schema)
        try:
            self._validate = fastjsonschema.compile(schema, use_formats=False)
        except (fastjsonschema.JsonSchemaDefinitionException, TypeError) as exc:
            msg = f"Schema Validation Error: {exc}"
            raise InvalidJSONSchema(msg) from exc
        self._is_valid: Callable[[object], bool] | None
        try:
            self._is_valid = jsonschema_rs.validator_for(
                schema, validate_formats=False
            ).is_valid
        except (ValueError, TypeError):  # fastjsonschema alone then
            self._is_valid = None
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        #: top-level fields an integer type applies to (rechecked when decimal)
        self._integer_fields = tuple(
            name for name, sub in properties.items() if _mentions_integer(sub)
        )
        #: top-level fields under a keyword the two may judge apart (rechecked)
        self._apart_fields = tuple(
            name for name, sub in properties.items() if _judged_apart(sub)
        )
        #: the same outside the fields (additional properties...): recheck all
        rest = {k: v for k, v in schema.items() if k != "properties"}
        self._recheck_all = _mentions_integer(rest) or _judged_apart(rest)
        self.invalid: dict[int, tuple[str, str | None]] = {}

    def _agreed_valid(self, record: dict[str, Any]) -> bool:
        """Whether jsonschema-rs finds it valid and fastjsonschema must agree."""
        is_valid = self._is_valid
        if is_valid is None or self._recheck_all:
            return False
        try:
            if not is_valid(record):
                return False
        except ValueError:  # a value jsonschema-rs cannot read
            return False
        for name in self._integer_fields:
            value = record.get(name)
            if value is not None and type(value) is not int:
                return False
        return all(record.get(name) is None for name in self._apart_fields)

    @override
    def validate(self, record: dict[str, Any]) -> None:
        for name, divisor in self._divisors.items():
            if _not_a_multiple(record.get(name), divisor):
                message = f"data.{name} must be multiple of {divisor}"
                self.invalid[id(record)] = (message, name)
                return
        if self._agreed_valid(record):
            return
        try:
            try:
                self._validate(record)
            except (decimal.InvalidOperation, TypeError):  # a nested multipleOf
                self._validate(_as_floats(record))
        except fastjsonschema.JsonSchemaValueException as exc:
            path = list(exc.path or [])
            field = str(path[1]) if len(path) > 1 else None
            self.invalid[id(record)] = (str(exc.message), field)


def _split_multiple_of(
    schema: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, decimal.Decimal]]:
    """The schema without the fields' `multipleOf`, and those divisors by field.

    A top-level property's own `multipleOf` and the ones in its `anyOf` /
    `oneOf` branches are taken out (a field has one divisor at most in the
    schemas taps write); deeper ones stay and go through `_as_floats`.
    """
    stripped = copy.deepcopy(schema)
    divisors: dict[str, decimal.Decimal] = {}
    properties = stripped.get("properties")
    if not isinstance(properties, dict):
        return stripped, divisors
    for name, sub in properties.items():
        if not isinstance(sub, dict):
            continue
        nodes = [sub] + [
            branch
            for key in ("anyOf", "oneOf")
            for branch in sub.get(key) or []
            if isinstance(branch, dict)
        ]
        for node in nodes:
            divisor = node.pop("multipleOf", None)
            if isinstance(divisor, (int, float, decimal.Decimal)) and not isinstance(
                divisor, bool
            ):
                divisors[name] = decimal.Decimal(str(divisor))
    return stripped, divisors


def _not_a_multiple(value: object, divisor: decimal.Decimal) -> bool:
    """Whether a number is not a multiple of `divisor` (exact, on its text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        return False
    number = decimal.Decimal(str(value))
    if not number.is_finite():
        return True
    if not number:
        return False
    with decimal.localcontext() as ctx:
        # enough digits for the whole quotient (1.23 / 1e-38 needs 39)
        ctx.prec = max(ctx.prec, number.adjusted() - divisor.adjusted() + 2)
        return number % divisor != 0


def _as_floats(value: object) -> object:
    """A copy with `Decimal` values as floats, for a nested `multipleOf`."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    return value
