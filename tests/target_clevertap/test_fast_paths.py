"""The CPU fast paths give the results of the general ones (bench P1, issue 18).

Per-stream field plans, the cache of date texts, the jsonschema-rs validity check
and the caps' known-name sets only skip repeated work: these tests hold each to
the result of the path it shortcuts, and the caches to their bounds.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from target_clevertap import caps, values
from target_clevertap.ledger import StateStore
from target_clevertap.mapping import PropertySpec
from target_clevertap.payloads import (
    PayloadOptions,
    SchemaInfo,
    _Out,
    build_properties,
)
from target_clevertap.validation import RejectingValidator

LONG_KEY = "Long_" + "k" * 130  # past the 120-byte key limit

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "Id": {"type": "string"},
        "Email": {"type": ["null", "string"]},
        "Phone": {"type": ["null", "string"]},
        "Title": {"type": ["null", "string"]},
        "Anniversary__c": {"type": ["null", "string"], "format": "date"},
        "Birthdate": {"anyOf": [{"type": "string", "format": "date-time"}]},
        "CreatedDate": {"anyOf": [{"type": "string", "format": "date-time"}]},
        "Score__c": {"type": ["null", "number"]},
        "Seats__c": {"type": ["null", "integer"]},
        "Flag__c": {"type": ["null", "boolean"]},
        "MailingAddress": {"type": ["null", "object"]},
        LONG_KEY: {"type": ["null", "string"]},
    },
}
RECORD: dict[str, Any] = {
    "Id": "003A",
    "Email": " Ann@Example.com ",
    "Phone": "(415) 555-2671",
    "Title": "x" * 300,
    "Anniversary__c": "2020-02-29",
    "Birthdate": "1990-05-17T00:00:00.000000Z",
    "CreatedDate": "2024-01-02T09:30:15.500000Z",
    "Score__c": Decimal("2.50"),
    "Seats__c": 7,
    "Flag__c": True,
    "MailingAddress": {"city": "Austin", "postalCode": "78758"},
    LONG_KEY: "kept under a cut key",
}


def _props(spec: PropertySpec, record: dict[str, Any], zone: dt.tzinfo) -> Any:
    opts = PayloadOptions(default_phone_country="US", zone=zone)
    warns: list[str] = []
    props = build_properties(
        record, spec, SchemaInfo.from_schema(SCHEMA), _Out(opts, warns), profile=True
    )
    return props, warns


@pytest.mark.parametrize("zone", [dt.UTC, ZoneInfo("Asia/Kolkata")])
def test_field_plan_gives_what_the_general_path_gives(zone: dt.tzinfo) -> None:
    # `include` runs through the per-stream plan, no `include` through the
    # general per-field path: the same record must come out the same
    names = tuple(RECORD)
    planned = _props(
        PropertySpec(include=names, rename={"Birthdate": "DOB"}), RECORD, zone
    )
    general = _props(PropertySpec(rename={"Birthdate": "DOB"}), RECORD, zone)
    assert planned == general
    props, warns = planned
    assert props["Email"] == "ann@example.com"
    assert props["Phone"] == "+14155552671"
    # DOB is a calendar day: 1990-05-17 at midnight in the account time zone
    midnight = int(dt.datetime(1990, 5, 17, tzinfo=zone).timestamp())
    assert props["DOB"] == f"$D_{midnight}"
    assert props["CreatedDate"] == "$D_1704187815"
    assert props["Score__c"] == 2.5
    assert props["MailingCity"] == "Austin"
    assert len(props["Title"]) == 300
    assert props[LONG_KEY[:120]] == "kept under a cut key"
    assert warns == [f"key of {LONG_KEY!r} truncated to 120 bytes"]


def test_field_plan_drops_an_invalid_phone_like_the_general_path() -> None:
    bad = {**RECORD, "Phone": "12"}
    planned, warns = _props(PropertySpec(include=tuple(bad)), bad, dt.UTC)
    general, general_warns = _props(PropertySpec(), bad, dt.UTC)
    assert "Phone" not in planned
    assert planned == general
    assert warns == general_warns
    assert "Phone is not a valid phone number" in warns[0]


def test_cached_date_text_gives_each_time_zone_its_own_midnight() -> None:
    text = "2024-01-15"
    utc = values.epoch_seconds(text, date_only=True, zone=dt.UTC)
    kolkata = values.epoch_seconds(text, date_only=True, zone=ZoneInfo("Asia/Kolkata"))
    again = values.epoch_seconds(text, date_only=True, zone=dt.UTC)  # from the cache
    assert (utc, again) == (1705276800, 1705276800)
    assert kolkata == 1705276800 - 5 * 3600 - 30 * 60
    # date-times are not calendar days: the same text keeps its instant
    assert values.epoch_seconds("2024-01-15T10:00:00Z") == 1705276800 + 36000
    assert values.epoch_seconds("2024-01-15T10:00:00Z", date_only=True) == 1705276800
    assert values.epoch_seconds("not a date") is None


def test_date_text_cache_is_bounded() -> None:
    for day in range(values.DATE_CACHE_SIZE + 100):
        stamp = dt.date(1900, 1, 1) + dt.timedelta(days=day)
        values.epoch_seconds(stamp.isoformat(), date_only=True)
    info = values._text_epoch.cache_info()
    assert info.maxsize == values.DATE_CACHE_SIZE
    assert info.currsize <= values.DATE_CACHE_SIZE


def test_validator_rejects_what_fastjsonschema_rejects_naming_the_field() -> None:
    validator = RejectingValidator(SCHEMA)
    good, bad = dict(RECORD), {**RECORD, "Flag__c": "yes"}
    validator.validate(good)
    validator.validate(bad)
    assert id(good) not in validator.invalid
    message, field = validator.invalid[id(bad)]
    assert field == "Flag__c"
    assert "boolean" in message


def test_validator_keeps_rejecting_decimals_in_integer_fields() -> None:
    # jsonschema-rs takes 2.0 as an integer, fastjsonschema did not: unchanged
    validator = RejectingValidator(SCHEMA)
    record = {**RECORD, "Seats__c": Decimal("2.0")}
    validator.validate(record)
    assert validator.invalid[id(record)][1] == "Seats__c"


def _caps(tmp_path: Any, used: int) -> caps.AccountCaps:
    store = StateStore(tmp_path, "acct")
    logger = logging.getLogger("test")
    return caps.AccountCaps(
        store.backend, store.lock, logger, others={caps.PROFILE_KEYS: used}
    )


def test_known_profile_keys_pass_and_refused_ones_stay_refused(tmp_path) -> None:
    tracker = _caps(tmp_path, caps.PROFILE_KEY_CAP - 1)
    first = ["identity", "Email", "MSG-email", "Tier"]
    assert tracker.admit_profile(first) is None
    assert tracker.admit_profile(first) is None  # known now: no second count
    assert tracker.used(caps.PROFILE_KEYS) == caps.PROFILE_KEY_CAP
    refusal = tracker.admit_profile([*first, "Region"])
    assert refusal is not None
    assert refusal.name == "Region"
    again = tracker.admit_profile([*first, "Region"])  # never taken as known
    assert again is not None


def test_event_names_known_by_their_normalised_form(tmp_path) -> None:
    tracker = _caps(tmp_path, 0)
    assert tracker.admit_event("Sign Up") is None
    assert tracker.admit_event("signup") is None
    assert tracker.used(caps.EVENT_NAMES) == 1


def _stored_map(tmp_path: Any) -> None:
    store = StateStore(tmp_path, "acct")
    store.remember("Contact", "003A", ["SF_Contact_003A"])
    store.remember("Lead", "00QB", ["SF_Lead_00QB"])
    store.remember("Lead", "00QC", [])  # seen, names nobody
    store.link("Lead", "00QD", "Contact", "003A")  # a converted Lead
    store.close()


def test_prefetched_lookups_answer_as_lookups_read_one_by_one(tmp_path) -> None:
    _stored_map(tmp_path)
    refs = ["003A", "00QB", "00QC", "00QD", "none"]
    one_by_one = StateStore(tmp_path, "acct")
    expected = [one_by_one.lookup("Who", ref) for ref in refs]
    one_by_one.close()
    prefetched = StateStore(tmp_path, "acct")
    prefetched.prefetch({"Contact": set(refs), "Lead": set(refs)})
    assert [prefetched.lookup("Who", ref) for ref in refs] == expected
    assert expected == [
        ["SF_Contact_003A"],
        ["SF_Lead_00QB"],
        [],
        ["SF_Contact_003A"],
        None,
    ]
    # a record remembered after the prefetch is no longer taken as absent
    prefetched.remember("Contact", "none", ["SF_Contact_none"])
    assert prefetched.lookup("Who", "none") == ["SF_Contact_none"]


def test_validator_keeps_fastjsonschema_verdicts_where_the_two_differ() -> None:
    # jsonschema-rs compares JSON numbers (0.1 is in [0.1]); fastjsonschema compares
    # Python values (Decimal("0.1") != 0.1) and decided alone before
    schema = {"type": "object", "properties": {"Level__c": {"enum": [None, 0.1]}}}
    validator = RejectingValidator(schema)
    level, fine = {"Level__c": Decimal("0.1")}, {"Level__c": None}
    validator.validate(level)
    validator.validate(fine)
    assert validator.invalid[id(level)][1] == "Level__c"
    assert id(fine) not in validator.invalid


def test_null_under_a_long_key_is_sent_under_the_cut_key() -> None:
    # null_values: send with a key over 120 bytes wrote `props[""] = None` (plan
    # path) or the whole long key (general path); both now use the cut key
    record = {**RECORD, LONG_KEY: None}
    opts = PayloadOptions(default_phone_country="US", null_values="send")
    for spec in (PropertySpec(include=tuple(record)), PropertySpec()):
        warns: list[str] = []
        props = build_properties(
            record,
            spec,
            SchemaInfo.from_schema(SCHEMA),
            _Out(opts, warns),
            profile=True,
        )
        assert "" not in props
        assert LONG_KEY not in props
        assert props[LONG_KEY[:120]] is None
