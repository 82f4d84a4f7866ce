"""The upload fast paths give exactly what the full validation and `json` give."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from sandbox.clevertap import validation
from sandbox.clevertap.store import dumps, loads
from sandbox.clevertap.validation import EventOp, ProfileOp, RecordError

NOW = 1_700_000_000
LONG = "é" * 200  # over 128 characters, within 512 bytes
TOO_LONG = "é" * 300  # over 512 bytes

PROFILE_DATA: list[dict[str, Any]] = [
    {"Name": "Ann", "Flag": True, "Score": 1.5, "N": 3, "Nothing": None},
    {"DOB": "$D_396576000", "Neg": "$D_-97372800", "Arabic": "$D_١٢٣"},
    {"Bad": "$D_"},
    {"Bad": "$D_-"},
    {"Bad": "$D_12\n"},
    {"Bad": "$D_+12"},
    {"Bad": "$D_1_000"},
    {"Bad": "$D_²"},
    {"Bad": "$D_ 12"},
    {"Long": LONG},
    {"Long": "$D_" + "1" * 200},
    {"Long": TOO_LONG},
    {"Email": "a@example.com", "Phone": "+14163851179", "Gender": "F", "Age": 40},
    {"Email": "not an email"},
    {"Phone": "123"},
    {"Age": "$D_12"},
    {"Gender": ["M"]},
    {"Email": {"$set": "a@example.com"}},
    {"ok": 1, "bad.key": 2},
    {"bad#key": 1},
    {"": 1},
    {"k" * 121: 1},
    {"List": ["a", "b", "a"]},
    {"Count": {"$incr": 2}},
    {"Nested": {"a": 1, "b": 2}},
]

EVENT_DATA: list[dict[str, Any] | None] = [
    {"Amount": 1.5, "Stage": "Closed", "Close Date": "$D_1712793600", "P": 0},
    {"Items": [{"a": 1}]},
    {"Bad": "$D_12\n"},
    {"bad#key": 1},
    {"bad.key": 1},
    {"Long": LONG},
    {"Long": TOO_LONG},
    {"Nested": {"a": 1}},
    {f"k{i}": i for i in range(101)},
    None,
    {},
]

IDENTITIES: list[object] = [
    "SF_1",
    "  SF_2  ",
    "",
    "   ",
    "null",
    "NULL",
    12,
    True,
    None,
]
TIMESTAMPS: list[object] = [None, 1_669_427_123, -1, 1.0e9, 1.5, True, "1"]


def outcome(call: Any, *args: Any) -> object:
    """What a validator gives: its operation (without `plain`) or its error."""
    try:
        op = call(*args)
    except RecordError as exc:
        return ("error", exc.code, exc.message)
    if isinstance(op, ProfileOp):
        return (op.who, op.ts, op.properties)
    assert isinstance(op, EventOp)
    return (op.who, op.ts, op.name, op.data)


def _profile(identity: object, ts: object, data: object) -> dict[str, Any]:
    record = {"identity": identity, "ts": ts, "type": "profile", "profileData": data}
    return record if ts is not None else {k: v for k, v in record.items() if k != "ts"}


def _event(identity: object, ts: object, data: object) -> dict[str, Any]:
    record = {"identity": identity, "ts": ts, "type": "event", "evtName": "Deal Won"}
    if data is not None:
        record["evtData"] = data
    return record if ts is not None else {k: v for k, v in record.items() if k != "ts"}


def records() -> list[dict[str, Any]]:
    """Every identifier and ts with plain data, every data with a good identity."""
    plain = PROFILE_DATA[1]
    out = [
        build(identity, ts, plain)
        for build in (_profile, _event)
        for identity in IDENTITIES
        for ts in TIMESTAMPS
    ]
    out.extend(_profile("SF_1", None, data) for data in PROFILE_DATA)
    out.extend(_event("SF_1", 1, data) for data in EVENT_DATA)
    out.extend(
        {"identity": "SF_1", "type": "event", "evtName": name}
        for name in ["", None, 3, "App Launched", "Bad.Name", "Charged", "charged"]
    )
    out.append({"objectId": "__abc", "type": "profile", "profileData": {"a": 1}})
    return out


@pytest.mark.parametrize("record", records())
def test_fast_path_matches_full_validation(record: dict[str, Any]) -> None:
    got = outcome(
        lambda r: validation.validate_record(r, max_event_properties=100, now=NOW),
        record,
    )
    if record["type"] == "profile":
        want = outcome(validation._validate_profile, record, NOW)
    else:
        want = outcome(validation._validate_event, record, 100, NOW)
    assert got == want


def test_fast_path_leaves_the_record_unchanged() -> None:
    record = {
        "identity": "SF_1",
        "type": "profile",
        "profileData": {"DOB": "$D_396576000", "Name": "Ann"},
    }
    before = json.dumps(record)
    validation.validate_record(record, now=NOW)
    assert json.dumps(record) == before


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, None, True], "c": "é\u2028\x00"},
        {"nan": math.nan, "inf": math.inf},
        {"text": "null"},
        [1e16, 1.5e-7, -0.0, 2**70],
        "\ud800",
    ],
)
def test_dumps_keeps_what_json_keeps(value: object) -> None:
    text = dumps(value)
    assert json.dumps(json.loads(text)) == json.dumps(value)
    assert json.dumps(loads(text)) == json.dumps(value)


def test_loads_falls_back_to_json() -> None:
    assert math.isnan(loads('{"a": NaN}')["a"])
    assert loads(b"\xef\xbb\xbf[1]") == [1]
    assert loads(None) is None
    with pytest.raises(ValueError, match="Expecting value"):
        loads("")
