"""Deterministic engagement data for the export APIs (`POST /_sandbox/seed`)."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import random
import time
from typing import TYPE_CHECKING, Any

from sandbox.clevertap.emulator import parse_yyyymmdd
from sandbox.clevertap.store import dumps
from sandbox.clevertap.validation import event_key
from sandbox.salesforce.seed import SIZES as SALESFORCE_SIZES
from sandbox.salesforce.seed import people_emails

if TYPE_CHECKING:
    import sqlite3

    from sandbox.clevertap.emulator import Emulator

DEFAULT_EVENTS = (
    "Product Viewed",
    "Added To Cart",
    "Charged",
    "NPS Submitted",
    "Survey Answered",
)
NOTIFICATION_EVENTS = (
    "Notification Sent",
    "Notification Viewed",
    "Notification Clicked",
)
_EMAIL_UNSUBSCRIBED_SHARE = 0.2
_SMS_OPT_OUT_EVERY = 7
_WHATSAPP_OPT_OUT_EVERY = 5
_FIRST = ("Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken")
_LAST = ("Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov")
_PRODUCTS = (
    ("Laptop", "Electronics", 1200.0),
    ("Phone", "Electronics", 800.0),
    ("Headphones", "Audio", 150.0),
    ("Coffee Maker", "Home", 90.0),
    ("Novel", "Books", 15.0),
    ("Sneakers", "Fashion", 110.0),
)
_INTERESTS = ("sports", "music", "travel", "tech", "food", "books")
_CHANNELS = ("push", "email", "sms", "inapp", "webhooks")
_DELIVERIES = ("one_time", "action", "recurring", "api")
_STATUSES = ("completed", "running", "stopped", "scheduled")
_PLATFORMS = (
    {"platform": "Android", "os_version": "14", "make": "Google", "model": "Pixel 8"},
    {"platform": "iOS", "os_version": "17.4", "make": "Apple", "model": "iPhone 15"},
    {"platform": "Web", "os_version": "Linux", "make": "Firefox", "model": "Desktop"},
)
_MAX_PROFILES = 100_000
_MAX_EVENTS_PER_DAY = 100_000
_MAX_DAYS = 400
_LAST_SECOND = 86_399  # of a day, counted from its start
#: one Salesforce person in this many gets an app profile with their email
_APP_USER_EVERY = 6
#: one app user in this many is known by device only (objectId, no identity)
_DEVICE_ONLY_EVERY = 4


class SeedError(ValueError):
    """Invalid seed parameters."""


def _int(params: dict[str, Any], key: str, default: int, high: int) -> int:
    value = params.pop(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        msg = f"{key} must be an integer from 0 to {high}"
        raise SeedError(msg)
    return value


def _day(value: object, key: str) -> dt.date:
    day = parse_yyyymmdd(value)
    if day is None:
        msg = f"{key} must be YYYYMMDD"
        raise SeedError(msg)
    return day


def _range(emulator: Emulator, params: dict[str, Any]) -> tuple[dt.date, dt.date]:
    days = _int(params, "days", 7, _MAX_DAYS)
    to_value = params.pop("to", None)
    from_value = params.pop("from", None)
    end = (
        _day(to_value, "to")
        if to_value is not None
        else dt.datetime.now(tz=emulator.tz).date()
    )
    start = (
        _day(from_value, "from")
        if from_value is not None
        else end - dt.timedelta(days=max(days, 1) - 1)
    )
    if start > end or (end - start).days > _MAX_DAYS:
        msg = f"from must be before to, at most {_MAX_DAYS} days apart"
        raise SeedError(msg)
    return start, end


def _names(params: dict[str, Any]) -> list[str]:
    names = params.pop("event_names", list(DEFAULT_EVENTS))
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        msg = "event_names must be a list of names"
        raise SeedError(msg)
    return names


def _event_data(rng: random.Random, name: str) -> dict[str, Any]:
    product, category, price = rng.choice(_PRODUCTS)
    key = event_key(name)
    if key == "charged":
        quantity = rng.randint(1, 3)
        return {
            "Amount": int(price * quantity),
            "Currency": "USD",
            "Payment Mode": rng.choice(("Card", "UPI", "Wallet")),
            "Items": [{"Product": product, "Category": category, "Quantity": quantity}],
        }
    if key == "npssubmitted":
        return {
            "score": rng.randint(0, 10),
            "comment": rng.choice(("great", "ok", "slow delivery", "")),
        }
    if key == "surveyanswered":
        return {
            "survey": "Onboarding",
            "question": "How easy was sign-up?",
            "answer": rng.choice(("Easy", "Neutral", "Hard")),
            "score": rng.randint(1, 5),
        }
    return {"product": product, "category": category, "price": price}


def _profiles(
    conn: sqlite3.Connection, rng: random.Random, count: int, start_ts: int
) -> list[tuple[str, str]]:
    people: list[tuple[str, str]] = []
    for number in range(1, count + 1):
        identity = f"seed-user-{number:04d}"
        # Shaped like the recorded ids: "__g" + 32 hex digits (an in1 export,
        # 2022). 96 random bits as before (the later draws stay the same) plus
        # the profile number.
        # `__g` + 32 hex digits, like the objectIds in
        # events-export-page.apperture.json (tests/fixtures/tap_clevertap/real_api/)
        object_id = f"__g{rng.getrandbits(96):024x}{number:08x}"
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        device = dict(rng.choice(_PLATFORMS))
        device.update(objectId=object_id, app_version=f"3.{rng.randint(0, 9)}.0")
        data = {
            "Name": f"{first} {last}",
            "Email": f"{first}.{last}.{number}@example.com".lower(),
            "Phone": f"+1415555{number:04d}",
            "Gender": rng.choice(("M", "F")),
            "Customer Type": rng.choice(("Silver", "Gold", "Platinum")),
            "DOB": {"$date": rng.randint(0, 946_684_800)},
            "Interests": sorted(rng.sample(_INTERESTS, 2)),
            "MSG-email": rng.random() > _EMAIL_UNSUBSCRIBED_SHARE,
            # phone channels: a few opt-outs, without a draw (the later draws of
            # the seed stay the same)
            "MSG-sms": number % _SMS_OPT_OUT_EVERY != 0,
            "MSG-whatsapp": number % _WHATSAPP_OPT_OUT_EVERY != 0,
        }
        conn.execute(
            "INSERT INTO profiles (object_id, identity, profile_data, platform_info, "
            "created_ts, updated_ts, source) VALUES (?, ?, ?, ?, ?, ?, 'seed')",
            (object_id, identity, dumps(data), dumps([device]), start_ts, start_ts),
        )
        people.append((identity, object_id))
    return people


def _app_users(conn: sqlite3.Connection, size: str, start_ts: int) -> dict[str, int]:
    """App profiles that carry the email of a seeded Salesforce Contact or Lead.

    Every `_APP_USER_EVERY`-th Contact and Lead of the sample org of `size` gets
    one: its own identity (`app-user-NNNN`) and objectId, or, for one in
    `_DEVICE_ONLY_EVERY`, an objectId only. The first one's email is on a second
    profile too (two app accounts, one person). They raise no events and draw
    nothing from the seed's random stream, so the rest of the seed stays the same.
    """
    people = people_emails(size)[::_APP_USER_EVERY]
    rows: list[tuple[object, ...]] = []
    for number, (obj, email) in enumerate(people, start=1):
        accounts = [f"app-user-{number:04d}"]
        if number == 1:
            accounts.append(f"app-user-{number:04d}-b")
        for account in accounts:
            digest = hashlib.sha256(account.encode()).hexdigest()[:32]
            object_id = f"__a{digest}"
            identity = None if number % _DEVICE_ONLY_EVERY == 0 else account
            device = dict(_PLATFORMS[number % len(_PLATFORMS)])
            device.update(objectId=object_id, app_version="3.1.0")
            data = {
                "Email": email,
                "Customer Type": "App user",
                "Signed Up From": "App",
                "MSG-email": True,
                "MSG-sms": True,
                "MSG-whatsapp": True,
            }
            rows.append((object_id, identity, dumps(data), dumps([device]), obj))
    conn.executemany(
        "INSERT INTO profiles (object_id, identity, profile_data, platform_info, "
        "created_ts, updated_ts, source) VALUES (?, ?, ?, ?, ?, ?, 'seed')",
        [(o, i, d, p, start_ts, start_ts) for o, i, d, p, _ in rows],
    )
    return dict(collections.Counter(str(row[4]) for row in rows))


def _crm_size(params: dict[str, Any]) -> str | None:
    size = params.pop("crm_people", None)
    if size is None:
        return None
    if not isinstance(size, str) or size not in SALESFORCE_SIZES:
        msg = f"crm_people must be one of {sorted(SALESFORCE_SIZES)} (or null)"
        raise SeedError(msg)
    return size


def _event_ts(base: int, offset: int, elapsed: int) -> int | None:
    """When an event drawn `offset` seconds into the day starting at `base` happened.

    `elapsed` is how many seconds of that day had passed at seeding time. Accounts
    never hold events from the future: a day that has not begun has none (None),
    and the events of the current day are spread over its past part (day start to
    the seeding time, in proportion to the drawn offset).
    """
    if elapsed < 0:
        return None
    if elapsed >= _LAST_SECOND:
        return base + offset
    return base + offset * elapsed // _LAST_SECOND


def _events(
    rng: random.Random,
    people: list[tuple[str, str]],
    days: list[tuple[int, int]],
    names: list[str],
    per_day: int,
) -> list[tuple[object, ...]]:
    """`per_day` random events a day as table rows.

    Each of `days` is the epoch of the day's start and the seconds of it elapsed
    at seeding time, so no event is later than the seeding time. The random draws
    do not depend on that time: everything else a seed value produces stays the
    same whenever it is seeded.
    """
    rows: list[tuple[object, ...]] = []
    if not people or not names:
        return rows
    for base, elapsed in days:
        for _ in range(per_day):
            name = rng.choice(names)
            identity, object_id = rng.choice(people)
            ts = _event_ts(base, rng.randint(0, _LAST_SECOND), elapsed)
            session = {
                "utm_source": rng.choice(("google", "newsletter", "direct")),
                "session_length": rng.randint(10, 900),
            }
            data = dumps(_event_data(rng, name))
            if ts is None:
                continue
            rows.append(
                (object_id, identity, name, event_key(name), ts, data, dumps(session))
            )
    return rows


def _store_events(
    conn: sqlite3.Connection, rows: list[tuple[object, ...]]
) -> dict[str, int]:
    """Insert event rows; returns how many there are per event name."""
    conn.executemany(
        "INSERT INTO events (object_id, identity, evt_name, evt_key, ts, "
        "evt_data, session_props, source) VALUES (?, ?, ?, ?, ?, ?, ?, 'seed')",
        rows,
    )
    return dict(collections.Counter(str(row[2]) for row in rows))


def _campaigns(
    conn: sqlite3.Connection,
    rng: random.Random,
    days: list[dt.date],
    count: int,
    now: dt.datetime,
) -> int:
    """Store `count` campaigns over `days`; returns how many have a result.

    A campaign scheduled after `now` (the seeding time) is a scheduled one: it has
    no result yet. The random draws do not depend on `now`.
    """
    with_result = 0
    quirks = ("500", "200", "409")
    for number in range(count):
        day = days[number % len(days)]
        target_id = 1_700_000_000 + number
        status = _STATUSES[number % len(_STATUSES)]
        minute = number % 60
        scheduled = dt.datetime.combine(day, dt.time(9, minute), tzinfo=now.tzinfo)
        result = None
        no_result = None
        if number % 2 == 0:
            sent = rng.randint(500, 5000)
            viewed = rng.randint(0, sent)
            result = {
                "sent": sent,
                "viewed": viewed,
                "clicked": rng.randint(0, viewed),
                "bounced": rng.randint(0, 20),
            }
        if scheduled > now:
            status, result = "scheduled", None
        if result is None:
            no_result = quirks[(number // 2) % len(quirks)]
        else:
            with_result += 1
        target = {
            "id": target_id,
            "name": f"Seed campaign {number + 1}",
            "scheduled_on": int(day.strftime("%Y%m%d")) * 10_000 + 900 + minute,
            "status": status,
        }
        conn.execute(
            "INSERT INTO campaigns (id, scheduled_day, target, result, no_result) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                target_id,
                int(day.strftime("%Y%m%d")),
                dumps(target),
                None if result is None else dumps(result),
                no_result,
            ),
        )
    return with_result


def _messages(
    conn: sqlite3.Connection, rng: random.Random, days: list[dt.date], count: int
) -> int:
    """Store `count` message reports over `days`; returns how many were stored.

    `days` are the days already begun: a report is about messages sent, so none
    is dated in the future (none at all when no day has begun yet).
    """
    if not days:
        return 0
    for number in range(count):
        day = days[number % len(days)]
        sent = rng.randint(100, 10_000)
        viewed = rng.randint(0, sent)
        message = {
            "message id": 1_800_000_000 + number,
            "message_name": f"Seed message {number + 1}",  # as recorded
            "channel": _CHANNELS[number % len(_CHANNELS)],
            "delivery": _DELIVERIES[number % len(_DELIVERIES)],
            "status": _STATUSES[number % len(_STATUSES)],
            "message_type": "ab" if number % 3 == 0 else "single",
            "label": rng.choice(("promo", "onboarding", "retention")),
            "date": int(day.strftime("%Y%m%d")),
            "sent": sent,
            "viewed": viewed,
            "clicked": rng.randint(0, viewed),
            "daily": {day.strftime("%Y%m%d"): {"sent": sent, "viewed": viewed}},
        }
        conn.execute(
            "INSERT INTO messages (id, day, message) VALUES (?, ?, ?)",
            (message["message id"], int(day.strftime("%Y%m%d")), dumps(message)),
        )
    return count


def seed(emulator: Emulator, **raw: Any) -> dict[str, Any]:
    """Replace earlier seeded data with a fresh deterministic set.

    Args:
        emulator: the emulator to fill.
        **raw: seed, profiles, events_per_day, days, from, to, event_names,
            notifications, campaigns, messages, crm_people (see sandbox/README.md).

    Returns:
        A summary of what was stored.

    Raises:
        SeedError: on invalid parameters.
    """
    params = dict(raw)
    seed_value = params.pop("seed", 1)
    if isinstance(seed_value, bool) or not isinstance(seed_value, int):
        msg = "seed must be an integer"
        raise SeedError(msg)
    profiles = _int(params, "profiles", 40, _MAX_PROFILES)
    per_day = _int(params, "events_per_day", 30, _MAX_EVENTS_PER_DAY)
    campaigns = _int(params, "campaigns", 6, 10_000)
    messages = _int(params, "messages", 8, 10_000)
    notifications = bool(params.pop("notifications", True))
    start, end = _range(emulator, params)
    names = _names(params)
    crm_size = _crm_size(params)
    if params:
        msg = f"unknown seed parameters: {sorted(params)}"
        raise SeedError(msg)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    rng = random.Random(seed_value)  # noqa: S311 - test data, not security
    tz = emulator.tz
    starts = [
        int(dt.datetime.combine(day, dt.time(), tzinfo=tz).timestamp()) for day in days
    ]
    start_ts = starts[0]
    now = int(time.time())
    elapsed = [(base, now - base) for base in starts]
    with emulator.store.transaction() as conn:
        seeded = [
            r[0]
            for r in conn.execute(
                "SELECT object_id FROM profiles WHERE source = 'seed'"
            )
        ]
        conn.execute("DELETE FROM events WHERE source = 'seed'")
        for object_id in seeded:
            conn.execute("DELETE FROM profiles WHERE object_id = ?", (object_id,))
        conn.execute("DELETE FROM campaigns")
        conn.execute("DELETE FROM messages")
        people = _profiles(conn, rng, profiles, start_ts)
        events = _store_events(conn, _events(rng, people, elapsed, names, per_day))
        notes: dict[str, int] = {}
        if notifications:
            rows = _events(
                rng, people, elapsed, list(NOTIFICATION_EVENTS), max(per_day // 3, 1)
            )
            notes = _store_events(conn, rows)
        moment = dt.datetime.fromtimestamp(now, tz=tz)
        with_result = _campaigns(conn, rng, days, campaigns, moment)
        begun = [day for day in days if day <= moment.date()]
        stored_messages = _messages(conn, rng, begun, messages)
        app_users = {} if crm_size is None else _app_users(conn, crm_size, start_ts)
    return {
        "status": "success",
        "seed": seed_value,
        "from": int(start.strftime("%Y%m%d")),
        "to": int(end.strftime("%Y%m%d")),
        "profiles": len(people),
        "events": events,
        "notification_events": notes,
        "campaigns": campaigns,
        "campaigns_with_result": with_result,
        "messages": stored_messages,
        "crm_app_users": app_users,
    }
