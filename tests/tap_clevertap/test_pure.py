"""Pure parts of tap-clevertap: local timestamps, day windows, names, event keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from zoneinfo import ZoneInfo

import pytest
from singer_sdk.exceptions import ConfigValidationError
from tap_clevertap.client import base_url_for
from tap_clevertap.event_records import EventShape, event_key
from tap_clevertap.profile_records import ProfileShape, profile_column_types
from tap_clevertap.records import (
    DATETIME,
    INTEGER,
    NUMBER,
    STRING,
    canonical_json,
    coerce,
    event_stream_names,
    parse_property_list,
    snake,
)
from tap_clevertap.tap import TapCleverTap
from tap_clevertap.timeutil import (
    day_windows,
    iso_utc,
    load_zone,
    month_windows,
    parse_account_ts,
    yyyymmdd,
)

KOLKATA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC


def test_account_ts_in_kolkata_converts_to_utc() -> None:
    moment = parse_account_ts(20240115143012, KOLKATA)
    assert iso_utc(moment) == "2024-01-15T09:00:12+00:00"


def test_account_ts_accepts_string_and_rejects_other_shapes() -> None:
    assert parse_account_ts("20240101000000", UTC) == dt.datetime(
        2024, 1, 1, tzinfo=UTC
    )
    for bad in (None, "2024-01-01", 1704067200, "2024011500000x", "202401150000001"):
        with pytest.raises(ValueError, match="14-digit"):
            parse_account_ts(bad, UTC)


def test_repeated_wall_time_resolves_to_first_occurrence() -> None:
    # 2024-11-03 01:30 happens twice in New York; the first is EDT (UTC-4).
    assert iso_utc(parse_account_ts(20241103013000, NEW_YORK)) == (
        "2024-11-03T05:30:00+00:00"
    )


def test_unknown_timezone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="IANA"):
        load_zone("Mars/Olympus")


def test_day_windows_follow_local_days_and_pad_only_outer_edges() -> None:
    start = dt.datetime(2024, 1, 9, 18, 30, tzinfo=UTC)  # 2024-01-10 00:00 IST
    end = dt.datetime(2024, 1, 12, 18, 30, tzinfo=UTC)  # 2024-01-13 00:00 IST
    windows = list(
        day_windows(
            start=start,
            end=end,
            zone=KOLKATA,
            days_per_window=1,
            today=dt.date(2024, 2, 1),
        )
    )
    assert [(w.first_day, w.last_day) for w in windows] == [
        (dt.date(2024, 1, 10), dt.date(2024, 1, 10)),
        (dt.date(2024, 1, 11), dt.date(2024, 1, 11)),
        (dt.date(2024, 1, 12), dt.date(2024, 1, 12)),
    ]
    assert [(yyyymmdd(w.request_from), yyyymmdd(w.request_to)) for w in windows] == [
        (20240109, 20240110),
        (20240111, 20240111),
        (20240112, 20240113),
    ]
    # Requests tile the days exactly (no gap, no overlap); trimming happens only
    # at the range edges.
    for before, after in itertools.pairwise(windows):
        assert after.request_from - before.request_to == dt.timedelta(days=1)
    assert [(w.keep_from, w.keep_until) for w in windows] == [
        (start, None),
        (None, None),
        (None, end),
    ]
    assert not windows[0].contains(start - dt.timedelta(seconds=1))
    assert windows[1].contains(start - dt.timedelta(days=5))  # its request decides
    assert not windows[-1].contains(end)


def test_each_local_day_is_requested_once_and_range_edges_trim() -> None:
    start = dt.datetime(2024, 3, 1, tzinfo=KOLKATA)
    end = dt.datetime(2024, 3, 3, tzinfo=KOLKATA)
    windows = list(
        day_windows(
            start=start,
            end=end,
            zone=KOLKATA,
            days_per_window=1,
            today=dt.date(2025, 1, 1),
        )
    )
    # Each local day is requested by one window; the range edges trim the rest.
    assert [(w.request_from.day, w.request_to.day) for w in windows] == [
        (29, 1),
        (2, 3),
    ]
    before = parse_account_ts(20240229235900, KOLKATA)
    inside = parse_account_ts(20240301000100, KOLKATA)
    after = parse_account_ts(20240303000100, KOLKATA)
    assert not windows[0].contains(before)
    assert windows[0].contains(inside)
    assert not windows[1].contains(after)


def test_padding_never_asks_beyond_today() -> None:
    now = dt.datetime(2024, 5, 5, 12, tzinfo=UTC)
    (window,) = day_windows(
        start=now - dt.timedelta(hours=2),
        end=now,
        zone=UTC,
        days_per_window=1,
        today=dt.date(2024, 5, 5),
    )
    assert window.request_to == dt.date(2024, 5, 5)
    assert window.request_from == dt.date(2024, 5, 4)


def test_multi_day_windows_and_empty_range() -> None:
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    windows = list(
        day_windows(
            start=start,
            end=start + dt.timedelta(days=10),
            zone=UTC,
            days_per_window=4,
            today=dt.date(2030, 1, 1),
        )
    )
    assert [(w.first_day.day, w.last_day.day) for w in windows] == [
        (1, 4),
        (5, 8),
        (9, 10),
    ]
    assert not list(
        day_windows(
            start=start, end=start, zone=UTC, days_per_window=1, today=start.date()
        )
    )


def test_month_windows_cover_inclusive_range() -> None:
    chunks = list(month_windows(dt.date(2024, 1, 1), dt.date(2024, 3, 5)))
    assert chunks[0] == (dt.date(2024, 1, 1), dt.date(2024, 1, 31))
    assert chunks[-1][1] == dt.date(2024, 3, 5)
    assert all(
        b[0] - a[1] == dt.timedelta(days=1) for a, b in itertools.pairwise(chunks)
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Opportunity Won", "opportunity_won"),
        ("App Launched", "app_launched"),
        ("objectId", "object_id"),
        ("MSG-email", "msg_email"),
        ("Crème brûlée!", "creme_brulee"),
        ("  ", ""),
    ],
)
def test_snake_names(raw: str, expected: str) -> None:
    assert snake(raw) == expected


def test_event_stream_names_are_selectable_and_clashes_get_a_hash() -> None:
    names = event_stream_names(["Opportunity Won", "Sign Up", "Sign-Up", "注册"])
    assert names["Opportunity Won"] == "events_opportunity_won"
    suffix_a = hashlib.sha256(b"Sign Up").hexdigest()[:8]
    suffix_b = hashlib.sha256(b"Sign-Up").hexdigest()[:8]
    assert names["Sign Up"] == f"events_sign_up_{suffix_a}"
    assert names["Sign-Up"] == f"events_sign_up_{suffix_b}"
    assert names["注册"] == "events_" + hashlib.sha256("注册".encode()).hexdigest()[:8]
    assert all(n.replace("_", "").isalnum() and n.isascii() for n in names.values())


def test_event_key_matches_the_documented_formula() -> None:
    props = {"Amount": 12.0, "Stage": "Won", "Items": [{"b": 1, "a": 2}]}
    session = {"utm_source": "mail"}
    key = event_key(
        identity="u-1",
        object_id="obj",
        event_name="Opportunity Won",
        ts=20240115143012,
        event_props=props,
        session_props=session,
    )
    material = json.dumps(
        ["u-1", "Opportunity Won", "20240115143012", props, session],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert key == hashlib.sha256(material.encode()).hexdigest()


def test_event_key_is_stable_under_key_order_and_falls_back_to_object_id() -> None:
    base = {
        "identity": None,
        "object_id": "__g1",
        "event_name": "Charged",
        "ts": "20240101000000",
        "session_props": None,
    }
    one = event_key(event_props={"a": 1, "b": 2}, **base)
    two = event_key(event_props={"b": 2, "a": 1}, **base)
    assert one == two
    other_person = event_key(
        event_props={"a": 1, "b": 2}, **{**base, "object_id": "__g2"}
    )
    assert other_person != one
    with_identity = event_key(
        event_props={"a": 1, "b": 2}, **{**base, "identity": "__g1"}
    )
    assert with_identity != one  # "objectId:__g1" is not the identity "__g1"


def test_property_lists_in_several_shapes() -> None:
    assert parse_property_list([{"name": "Amount", "type": "float"}, "Stage"]) == {
        "Amount": NUMBER,
        "Stage": STRING,
    }
    assert parse_property_list({"Qty": "Integer", "When": {"type": "date"}}) == {
        "Qty": INTEGER,
        "When": DATETIME,
    }


def test_coerce_values_to_column_types() -> None:
    assert coerce("12", INTEGER, UTC) == 12
    assert coerce(12.5, INTEGER, UTC) is None
    assert coerce("x", NUMBER, UTC) is None
    assert coerce("$D_1704067200", DATETIME, UTC) == "2024-01-01T00:00:00+00:00"
    assert coerce(20240101053000, DATETIME, KOLKATA) == "2024-01-01T00:00:00+00:00"
    assert coerce(["a", "b"], STRING, UTC) == '["a","b"]'
    assert coerce(True, STRING, UTC) == "true"
    assert coerce("", STRING, UTC) is None


def test_event_shape_builds_flat_typed_rows() -> None:
    shape = EventShape.build(
        "Opportunity Won",
        {"Amount": NUMBER, "Stage": STRING, "ts": STRING},
        {"Customer Type": STRING},
    )
    schema = shape.schema()
    assert schema["required"] == ["event_key", "event_name", "ts"]
    assert schema["properties"]["ts"]["format"] == "date-time"
    assert "prop_amount" in schema["properties"]
    assert "prop_ts" in schema["properties"]
    raw = {
        "ts": 20240115143012,
        "profile": {
            "identity": 42,
            "platformInfo": [{"objectId": "__abc"}],
            "profileData": {"Customer Type": "Gold"},
        },
        "event_props": {"Amount": "99.5", "Stage": "Won", "Extra": {"x": 1}},
        "session_props": {"utm_source": "mail"},
    }
    shaped = shape.record(raw, KOLKATA)
    assert shaped is not None
    record, moment = shaped
    assert moment == dt.datetime(2024, 1, 15, 9, 0, 12, tzinfo=UTC)
    assert record["ts"] == "2024-01-15T09:00:12+00:00"
    assert record["ts_account"] == "20240115143012"
    assert record["identity"] == "42"
    assert record["object_id"] == "__abc"
    assert record["prop_amount"] == 99.5
    assert record["profile_customer_type"] == "Gold"
    assert json.loads(record["event_props_json"])["Extra"] == {"x": 1}
    assert set(record) == set(schema["properties"])
    assert shape.record({**raw, "ts": "garbage"}, KOLKATA) is None


def test_profile_shape_needs_an_object_id() -> None:
    shape = ProfileShape.build({"Plan": STRING})
    assert shape.record({"identity": "x"}, UTC) is None
    record = shape.record(
        {"identity": "x", "objectId": "__o", "profileData": {"Plan": "pro"}}, UTC
    )
    assert record is not None
    assert record["profile_plan"] == "pro"
    assert set(record) == set(shape.schema()["properties"])


def test_canonical_json_is_compact_and_sorted() -> None:
    assert canonical_json({"b": 1.0, "a": "é", "c": [2]}) == '{"a":"é","b":1.0,"c":[2]}'


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, "https://api.clevertap.com"),
        ({"region": "eu1"}, "https://api.clevertap.com"),
        ({"region": "in1"}, "https://in1.api.clevertap.com"),
        ({"region": "mec1"}, "https://mec1.api.clevertap.com"),
        ({"region": "us1", "api_url": "http://127.0.0.1:9/"}, "http://127.0.0.1:9"),
    ],
)
def test_base_url_from_region_or_override(config: dict, expected: str) -> None:
    assert base_url_for(config) == expected


def test_unknown_region_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown region"):
        base_url_for({"region": "xx9"})


@pytest.mark.parametrize(
    "bad",
    [{"batch_size": 5001}, {"region": "sk1"}, {"lookback_days": -1}],
)
def test_invalid_settings_fail_config_validation(bad: dict) -> None:
    config = {
        "account_id": "A",
        "passcode": "P",
        "start_date": "2024-01-01T00:00:00Z",
        **bad,
    }
    with pytest.raises(ConfigValidationError):
        TapCleverTap(config=config, parse_env_config=False)


def test_unknown_timezone_fails_before_any_request() -> None:
    config = {
        "account_id": "A",
        "passcode": "P",
        "start_date": "2024-01-01T00:00:00Z",
        "timezone": "Mars/Olympus",
        "api_url": "http://127.0.0.1:9",  # nothing listens: no request is made
    }
    with pytest.raises(ConfigValidationError) as raised:
        TapCleverTap(config=config, parse_env_config=False)
    assert any("IANA" in error for error in raised.value.errors)
    # Discovery without config validation (as `--discover` runs) checks it too.
    tap = TapCleverTap(
        config=config,
        parse_env_config=False,
        validate_config=False,
        setup_mapper=False,
    )
    with pytest.raises(ConfigValidationError, match="IANA"):
        tap.discover_streams()


def test_profiles_always_carry_the_subscription_flags_as_booleans() -> None:
    # /getSchema need not list MSG-email...; consent must still reach the export.
    shape = ProfileShape.build(profile_column_types({"Customer Type": "string"}))
    columns = shape.schema()["properties"]
    for column in ("profile_msg_email", "profile_msg_sms", "profile_msg_whatsapp"):
        assert "boolean" in columns[column]["type"], column
    raw = {
        "objectId": "__abc",
        "identity": "SF_Contact_1",
        "profileData": {"MSG-email": False, "MSG-sms": "true"},
    }
    record = shape.record(raw, ZoneInfo("UTC"))
    assert record is not None
    assert record["profile_msg_email"] is False
    assert record["profile_msg_sms"] is True
    assert record["profile_msg_whatsapp"] is None
