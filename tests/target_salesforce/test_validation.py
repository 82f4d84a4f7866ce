"""The compiled record validator accepts the SDK's Decimals and checks types."""

from __future__ import annotations

import decimal

import pytest
from singer_sdk.exceptions import InvalidJSONSchema, InvalidRecord
from target_salesforce.validation import CompiledValidator

SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": ["integer", "null"]},
        "x": {"type": ["integer", "number"]},
        "ts": {"type": "string", "format": "date-time"},
    },
    "required": ["n"],
}


def test_integral_decimal_passes_as_integer() -> None:
    CompiledValidator(SCHEMA).validate(
        {"n": decimal.Decimal(3), "x": decimal.Decimal("1.5"), "ts": "not checked"}
    )


@pytest.mark.parametrize(
    "record",
    [{"n": decimal.Decimal("2.5")}, {"n": "3"}, {"n": True}, {}],
)
def test_wrong_values_are_invalid_records(record: dict[str, object]) -> None:
    with pytest.raises(InvalidRecord):
        CompiledValidator(SCHEMA).validate(record)


def test_format_checked_only_when_asked() -> None:
    with pytest.raises(InvalidRecord):
        CompiledValidator(SCHEMA, validate_formats=True).validate(
            {"n": 1, "ts": "yesterday"}
        )


def test_invalid_schema_is_refused() -> None:
    with pytest.raises(InvalidJSONSchema):
        CompiledValidator({"type": "object", "properties": {"a": {"type": 5}}})
