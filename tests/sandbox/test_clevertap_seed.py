"""The CleverTap emulator's seeded data never lies in the future."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from typing import TYPE_CHECKING

import pytest
from sandbox.clevertap.testing import running_emulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sandbox.clevertap.testing import CleverTapHandle

# Far east of UTC, so the account's "today" is often a UTC day ahead.
ZONE = "Pacific/Kiritimati"
SEED = {"seed": 11, "profiles": 20, "events_per_day": 60, "campaigns": 24}


@pytest.fixture
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CleverTapHandle]:
    """A fresh emulator whose account lives in `ZONE`."""
    db = tmp_path_factory.mktemp("ct-seed") / "seed.db"
    with running_emulator(db_path=db, timezone=ZONE) as handle:
        yield handle


def _local_today() -> dt.date:
    return dt.datetime.now(zoneinfo.ZoneInfo(ZONE)).date()


def _day_start(day: dt.date) -> int:
    return int(
        dt.datetime.combine(day, dt.time(), tzinfo=zoneinfo.ZoneInfo(ZONE)).timestamp()
    )


def _yyyymmdd(day: dt.date) -> int:
    return int(day.strftime("%Y%m%d"))


def test_seeded_events_are_never_in_the_future(emulator: CleverTapHandle) -> None:
    summary = emulator.seed(**SEED, days=3)
    after = time.time()
    events = emulator.events()
    assert events
    assert max(event["ts"] for event in events) <= after
    to = int(summary["to"])
    seeded_day = dt.date(to // 10_000, to // 100 % 100, to % 100)
    todays = [e["ts"] for e in events if e["ts"] >= _day_start(seeded_day)]
    # The current day holds its share of events, spread over its past part.
    assert len(todays) >= SEED["events_per_day"]


def test_days_that_have_not_begun_hold_no_events_or_reports(
    emulator: CleverTapHandle,
) -> None:
    today = _local_today()
    later = today + dt.timedelta(days=2)
    emulator.seed(**SEED, **{"from": _yyyymmdd(today), "to": _yyyymmdd(later)})
    after = time.time()
    events = emulator.events()
    assert events
    assert max(event["ts"] for event in events) <= after
    body = {"from": _yyyymmdd(today), "to": _yyyymmdd(later)}
    messages = emulator.api_post("/1/message/report.json", body).json()["messages"]
    assert messages
    assert max(m["date"] for m in messages) <= _yyyymmdd(_local_today())


def test_campaigns_scheduled_ahead_are_listed_without_a_result(
    emulator: CleverTapHandle,
) -> None:
    today = _local_today()
    later = today + dt.timedelta(days=2)
    emulator.seed(**SEED, **{"from": _yyyymmdd(today), "to": _yyyymmdd(later)})
    body = {"from": _yyyymmdd(later), "to": _yyyymmdd(later)}
    targets = emulator.api_post("/1/targets/list.json", body).json()["targets"]
    assert targets
    assert {t["status"] for t in targets} == {"scheduled"}
    for target in targets:
        result = emulator.api_post("/1/targets/result.json", {"id": target["id"]})
        assert "result" not in result.json()


def test_same_seed_gives_the_same_past_days_whenever_it_is_seeded(
    emulator: CleverTapHandle,
) -> None:
    emulator.seed(**SEED, days=4)
    start_of_today = _day_start(_local_today())

    def past() -> list[tuple[object, ...]]:
        return sorted(
            (e["ts"], e["evtName"], e["identity"])
            for e in emulator.events()
            if e["ts"] < start_of_today
        )

    first = past()
    time.sleep(1.1)
    emulator.seed(**SEED, days=4)
    assert first
    assert past() == first


def test_app_users_share_emails_with_the_salesforce_org(
    emulator: CleverTapHandle,
) -> None:
    from sandbox.salesforce.seed import people_emails  # noqa: PLC0415 - this test only

    plain = emulator.seed(**SEED, days=2)
    before = sorted((e["ts"], e["evtName"], e["identity"]) for e in emulator.events())
    summary = emulator.seed(**SEED, days=2, crm_people="small")
    assert plain["crm_app_users"] == {}
    assert sum(summary["crm_app_users"].values()) >= 2
    # the rest of the seed is the same: app users raise no events
    after = sorted((e["ts"], e["evtName"], e["identity"]) for e in emulator.events())
    assert after == before
    crm = {email for _, email in people_emails("small")}
    app = [p for p in emulator.profiles() if p["profileData"].get("Email") in crm]
    assert len(app) == sum(summary["crm_app_users"].values())
    emails = [p["profileData"]["Email"] for p in app]
    assert len(set(emails)) == len(emails) - 1  # one person has two app profiles
    assert all(p["objectId"] for p in app)
    assert any(p["identity"] is None for p in app)  # known by device only
    assert all(not str(p["identity"] or "").startswith("SF_") for p in app)
    again = emulator.seed(**SEED, days=2, crm_people="small")
    assert again["crm_app_users"] == summary["crm_app_users"]
    assert [p["objectId"] for p in emulator.profiles() if p in app] == [
        p["objectId"] for p in app
    ]
