"""Date-only fields keep their day: Salesforce -> CleverTap -> tap -> Salesforce.

target-clevertap (with the account `timezone`) uploads the Salesforce records of
`tests/fixtures/tap_clevertap/date_round_trip.singer` to an emulator account in that
zone; tap-clevertap (same `timezone`) exports them; target-salesforce's value
conversion turns each exported value into the Salesforce date it would write. Every
date must come back unchanged, for accounts east and west of UTC, on both sides of
DST changes and across year ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import backoff
import pytest
from sandbox.clevertap.testing import running_emulator
from singer_sdk.exceptions import ConfigValidationError
from tap_clevertap.client import CleverTapStream
from tap_clevertap.records import coerce_datetime
from tap_clevertap.tap import TapCleverTap
from target_clevertap.client import CleverTapClient
from target_clevertap.payloads import account_zone, ct_date
from target_clevertap.target import TargetCleverTap
from target_salesforce.values import convert

if TYPE_CHECKING:
    from sandbox.clevertap.testing import CleverTapHandle

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tap_clevertap"
SINGER = FIXTURES / "date_round_trip.singer"
MAPPINGS = FIXTURES / "date_round_trip_mappings.yml"
ZONES = [
    "UTC",
    "Asia/Kolkata",
    "America/Los_Angeles",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
]


def sent_dates() -> list[str]:
    """The dates of the fixture (the same list in every stream)."""
    lines = [json.loads(line) for line in SINGER.read_text("utf-8").splitlines()]
    return [
        m["record"]["Renewal_Date__c"]
        for m in lines
        if m["type"] == "RECORD" and m["stream"] == "Opportunity"
    ]


@pytest.fixture(autouse=True)
def _no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        CleverTapClient, "wait_generator", staticmethod(lambda: backoff.constant(0))
    )
    monkeypatch.setattr(
        CleverTapStream,
        "backoff_wait_generator",
        lambda _self: backoff.constant(interval=0),
    )
    for name in ("HTTPS_PROXY", "https_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def load_into_clevertap(ct: CleverTapHandle, zone: str, tmp_path: Path) -> None:
    config = {
        **ct.plugin_config(),
        "timezone": zone,
        "mappings_file": str(MAPPINGS),
        "state_dir": str(tmp_path / "state"),
        "rejects_path": str(tmp_path / "rejects.jsonl"),
        "request_timeout": 5,
    }
    target = TargetCleverTap(config=config, parse_env_config=False)
    with (
        contextlib.redirect_stdout(io.StringIO()),
        SINGER.open(encoding="utf-8") as lines,
    ):
        target.listen(lines)
    assert not (tmp_path / "rejects.jsonl").exists() or not (
        tmp_path / "rejects.jsonl"
    ).read_text("utf-8")


def export_from_clevertap(ct: CleverTapHandle, zone: str) -> dict[str, list[Any]]:
    config = {
        **ct.plugin_config(),
        "timezone": zone,
        "start_date": "2024-05-31T00:00:00Z",
        "end_date": "2024-06-03T00:00:00Z",
        "event_names": ["Contact Dated", "Deal Dated", "Task Dated"],
    }
    tap = TapCleverTap(config=config, parse_env_config=False)
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out):
            tap.sync_all()
    finally:
        for stream in tap.streams.values():
            stream.requests_session.close()
    out.seek(0)
    records: dict[str, list[Any]] = {}
    for line in out.read().splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            records.setdefault(message["stream"], []).append(message["record"])
    return records


def salesforce_dates(rows: list[dict[str, Any]], column: str) -> list[str]:
    """What target-salesforce writes to a date field from each exported value.

    Both forms it can receive are checked: the ISO text, and the datetime the SDK
    parses it into for a `date-time` column.
    """
    dates = []
    for row in rows:
        text = row[column]
        as_text = convert(text, "date")
        assert convert(dt.datetime.fromisoformat(text), "date") == as_text
        dates.append(as_text)
    return sorted(dates)


def shown_dates(ct: CleverTapHandle, zone: str) -> dict[str, list[str]]:
    """The stored `$D_` dates by property, as days of the account time zone."""
    tz = ZoneInfo(zone)
    found: dict[str, list[str]] = {}
    stored = [p["profileData"] for p in ct.profiles()]
    stored += [e["evtData"] for e in ct.events()]
    for data in stored:
        for key, value in data.items():
            if isinstance(value, dict) and "$date" in value:
                day = dt.datetime.fromtimestamp(value["$date"], tz=tz).date()
                found.setdefault(key, []).append(day.isoformat())
    return {key: sorted(days) for key, days in found.items()}


@pytest.mark.parametrize("zone", ZONES)
def test_date_only_fields_keep_every_date_through_the_round_trip(
    zone: str, tmp_path: Path
) -> None:
    expected = sorted(sent_dates())
    with running_emulator(db_path=tmp_path / "ct.db", timezone=zone) as ct:
        load_into_clevertap(ct, zone, tmp_path)
        # What CleverTap stores shows (and segments) on the same day in the account
        # time zone.
        assert shown_dates(ct, zone) == {
            "DOB": expected,
            "Birthdate": expected,
            "CloseDate": expected,
            "Renewal_Date__c": expected,
            "ActivityDate": expected,
        }
        records = export_from_clevertap(ct, zone)
    contacts = records["events_contact_dated"]
    deals = records["events_deal_dated"]
    tasks = records["events_task_dated"]
    assert len(contacts) == len(deals) == len(tasks) == len(expected)
    assert salesforce_dates(contacts, "prop_birthdate") == expected  # Birthdate
    assert salesforce_dates(contacts, "profile_dob") == expected  # profile DOB
    assert salesforce_dates(deals, "prop_close_date") == expected  # CloseDate
    assert salesforce_dates(deals, "prop_renewal_date_c") == expected  # custom
    assert salesforce_dates(tasks, "prop_activity_date") == expected  # ActivityDate


def test_date_only_values_are_sent_at_midnight_of_the_account_zone(
    tmp_path: Path,
) -> None:
    with running_emulator(db_path=tmp_path / "ct.db", timezone="Asia/Kolkata") as ct:
        load_into_clevertap(ct, "Asia/Kolkata", tmp_path)
        (profile,) = ct.profiles(identity="SF_Contact_003RT0000000004")
    # 1990-05-17 00:00 in Asia/Kolkata (+05:30) is 1990-05-16T18:30Z.
    midnight = dt.datetime(1990, 5, 16, 18, 30, tzinfo=dt.UTC)
    assert profile["profileData"]["DOB"] == {"$date": int(midnight.timestamp())}


def test_target_refuses_an_unknown_timezone_at_start_up(tmp_path: Path) -> None:
    config = {
        "account_id": "ACC",
        "passcode": "unit-passcode",
        "timezone": "Mars/Olympus_Mons",
        "mappings_file": str(MAPPINGS),
        "state_dir": str(tmp_path / "state"),
    }
    with pytest.raises(ConfigValidationError, match=r"timezone.*Mars/Olympus_Mons"):
        TargetCleverTap(config=config, parse_env_config=False)


@pytest.mark.parametrize(
    "zone",
    [
        *ZONES,
        "America/Santiago",  # DST starts at 00:00: some midnights do not exist
        "America/Havana",  # the same, in March
        "Asia/Tehran",  # changed at 00:00 until 2022
        "Australia/Lord_Howe",  # half-hour DST
        "America/St_Johns",  # -03:30 / -02:30
    ],
)
def test_every_day_of_four_years_comes_back_from_the_payload_value(zone: str) -> None:
    """The conversion pair itself, day by day (no emulator): target -> tap -> date."""
    tz = ZoneInfo(zone)
    day = dt.date(2020, 12, 30)
    while day <= dt.date(2025, 1, 2):
        value = ct_date(day, date_only=True, zone=account_zone(zone))
        assert value is not None
        exported = coerce_datetime(value, tz)
        assert exported is not None
        assert convert(exported, "date") == day.isoformat(), (zone, day, exported)
        day += dt.timedelta(days=1)
