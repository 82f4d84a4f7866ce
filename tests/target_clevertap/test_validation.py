"""multipleOf on decimal input: checked exactly, never a crash."""

from __future__ import annotations

from decimal import Decimal

import pytest
from target_clevertap.validation import RejectingValidator

# pipelinewise-style NUMERIC(38, 2) and an unbounded NUMERIC (multipleOf 1e-38)
SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "price": {"type": ["null", "number"], "multipleOf": Decimal("0.01")},
        "ratio": {"anyOf": [{"type": "number", "multipleOf": 1e-38}, {"type": "null"}]},
        "lines": {
            "type": ["null", "array"],
            "items": {
                "type": "object",
                "properties": {"qty": {"type": "number", "multipleOf": 0.5}},
            },
        },
    },
}


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"id": "1", "price": Decimal("12.34")}, None),
        ({"id": "2", "price": Decimal("12.345")}, "price"),
        ({"id": "3", "price": 7}, None),
        ({"id": "4", "price": Decimal("123456789012345678901234567890.10")}, None),
        ({"id": "5", "ratio": Decimal("0.123456789012345678901234567890123")}, None),
        ({"id": "6", "ratio": Decimal("1E-39")}, "ratio"),
        ({"id": "7", "lines": [{"qty": Decimal("1.5")}]}, None),
        ({"id": "8", "lines": [{"qty": Decimal("1.25")}]}, "lines"),
        ({"id": "9", "price": Decimal("NaN")}, "price"),
    ],
)
def test_multiple_of_is_checked_exactly_on_decimals(
    record: dict[str, object], field: str | None
) -> None:
    validator = RejectingValidator(SCHEMA)
    validator.validate(record)
    problem = validator.invalid.get(id(record))
    assert (problem[1] if problem else None) == field
    if problem:
        assert "multiple of" in problem[0]
