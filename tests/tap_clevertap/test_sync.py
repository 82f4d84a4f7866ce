"""tap-clevertap against the CleverTap emulator: windows, state, retries, errors."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
import requests
from sandbox.proxy import running_proxy
from singer_sdk.exceptions import FatalAPIError
from tap_clevertap.client import CursorLoopError
from tap_clevertap.tap import TapCleverTap

if TYPE_CHECKING:
    from collections.abc import Callable

KOLKATA = ZoneInfo("Asia/Kolkata")


pytestmark = pytest.mark.usefixtures("no_waits_no_proxy")


class Output:
    """The Singer messages of one run, by kind."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.records: dict[str, list[dict[str, Any]]] = {}
        for message in messages:
            if message["type"] == "RECORD":
                self.records.setdefault(message["stream"], []).append(message["record"])
        states = [m["value"] for m in messages if m["type"] == "STATE"]
        self.state: dict[str, Any] = states[-1] if states else {}


def run_tap(config: dict[str, Any], **kwargs: Any) -> Output:
    tap = TapCleverTap(config=config, parse_env_config=False, **kwargs)
    buffer = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(buffer):
            tap.sync_all()
    finally:
        for stream in tap.streams.values():
            stream.requests_session.close()
    buffer.seek(0)
    return Output([json.loads(line) for line in buffer.read().splitlines() if line])


def local_epoch(text: str, zone: ZoneInfo = KOLKATA) -> int:
    """Epoch seconds of a local wall time `YYYY-MM-DD HH:MM`."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=zone).timestamp())


def upload_events(ct: Any, events: list[tuple[str, str, int]]) -> None:
    """Upload (identity, event name, epoch ts) events to the emulator."""
    body = {
        "d": [
            {
                "type": "event",
                "identity": identity,
                "evtName": name,
                "ts": ts,
                "evtData": {"Amount": index, "Stage": "Won"},
            }
            for index, (identity, name, ts) in enumerate(events)
        ]
    }
    response = requests.post(
        f"{ct.base_url}/1/upload", json=body, headers=ct.headers(), timeout=30
    )
    response.raise_for_status()
    assert response.json()["status"] == "success", response.text


def base_config(ct: Any, **extra: Any) -> dict[str, Any]:
    return {
        **ct.plugin_config(),
        "timezone": ct.timezone,
        "campaign_lookahead_days": 0,
        **extra,
    }


def cursor_gets(ct: Any, path: str = "/1/events.json") -> list[str]:
    return [
        entry["query"]
        for entry in ct.requests_log()
        if entry["method"] == "GET" and entry["path"] == path
    ]


def test_events_at_2359_and_0001_local_land_in_their_local_day(
    make_clevertap_emulator: Callable[..., Any],
) -> None:
    ct = make_clevertap_emulator(timezone="Asia/Kolkata")
    upload_events(
        ct,
        [
            ("u1", "Opportunity Won", local_epoch("2024-03-01 23:59")),
            ("u1", "Opportunity Won", local_epoch("2024-03-02 00:01")),
            ("u1", "Opportunity Won", local_epoch("2024-03-02 23:59")),
            ("u1", "Opportunity Won", local_epoch("2024-03-03 00:01")),
        ],
    )
    one_day = base_config(
        ct,
        event_names=["Opportunity Won"],
        window_days=1,
        start_date="2024-03-02T00:00:00+05:30",
        end_date="2024-03-03T00:00:00+05:30",
    )
    out = run_tap(one_day)
    rows = out.records["events_opportunity_won"]
    assert [(r["ts_account"], r["ts"]) for r in rows] == [
        ("20240302000100", "2024-03-01T18:31:00+00:00"),
        ("20240302235900", "2024-03-02T18:29:00+00:00"),
    ]
    assert {r["event_name"] for r in rows} == {"Opportunity Won"}

    # Over three local days each event is emitted exactly once, window by window,
    # and STATE follows the windows: after day 1 it holds day 1's last event.
    wide = {**one_day, "start_date": "2024-03-01T00:00:00+05:30"}
    wide["end_date"] = "2024-03-04T00:00:00+05:30"
    out = run_tap(wide)
    rows = out.records["events_opportunity_won"]
    assert [r["ts_account"] for r in rows] == [
        "20240301235900",
        "20240302000100",
        "20240302235900",
        "20240303000100",
    ]
    assert len({r["event_key"] for r in rows}) == 4
    bookmarks = [
        m["value"]["bookmarks"]["events_opportunity_won"].get("replication_key_value")
        for m in out.messages
        if m["type"] == "STATE"
        and "events_opportunity_won" in m["value"].get("bookmarks", {})
    ]
    assert "2024-03-01T18:29:00+00:00" in bookmarks
    assert bookmarks[-1] == "2024-03-02T18:31:00+00:00"


def test_wrong_timezone_setting_shifts_times_but_loses_no_event(
    make_clevertap_emulator: Callable[..., Any],
) -> None:
    ct = make_clevertap_emulator(timezone="Asia/Kolkata")
    stamps = ["2024-03-02 00:10", "2024-03-02 23:50", "2024-03-03 00:10"]
    upload_events(ct, [("u1", "Charged", local_epoch(t)) for t in stamps])
    config = base_config(
        ct,
        timezone="UTC",  # the account really is in Asia/Kolkata
        event_names=["Charged"],
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-05T00:00:00Z",
    )
    rows = run_tap(config).records["events_charged"]
    assert [r["ts_account"] for r in rows] == [
        "20240302001000",
        "20240302235000",
        "20240303001000",
    ]
    assert len({r["event_key"] for r in rows}) == 3


def test_second_run_emits_only_new_events_plus_the_lookback_days(
    make_clevertap_emulator: Callable[..., Any],
) -> None:
    ct = make_clevertap_emulator(timezone="Asia/Kolkata")
    days = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
    upload_events(ct, [("u1", "Charged", local_epoch(f"{d} 10:00")) for d in days])
    config = base_config(
        ct,
        event_names=["Charged"],
        window_days=1,
        lookback_days=1,
        start_date="2024-03-01T00:00:00+05:30",
        end_date="2024-03-05T00:00:00+05:30",
    )
    first = run_tap(config)
    assert len(first.records["events_charged"]) == 4
    bookmark = first.state["bookmarks"]["events_charged"]
    assert bookmark["replication_key_value"] == "2024-03-04T04:30:00+00:00"

    upload_events(
        ct,
        [
            ("u2", "Charged", local_epoch("2024-03-05 09:00")),
            ("u2", "Charged", local_epoch("2024-03-06 23:30")),
        ],
    )
    second = run_tap(
        {**config, "end_date": "2024-03-07T00:00:00+05:30"}, state=first.state
    )
    assert [r["ts_account"] for r in second.records["events_charged"]] == [
        "20240303100000",  # lookback: the day before the bookmark's day
        "20240304100000",  # the bookmark's day, re-read whole
        "20240305090000",
        "20240306233000",
    ]
    # STATE never goes back to the lookback day while it is re-read.
    values = [
        m["value"]["bookmarks"]["events_charged"].get("replication_key_value")
        for m in second.messages
        if m["type"] == "STATE"
    ]
    assert min(v for v in values if v) == "2024-03-04T04:30:00+00:00"
    # Re-read events keep their key, so a target upserting on it stays exact.
    first_keys = {r["event_key"] for r in first.records["events_charged"]}
    assert {r["event_key"] for r in second.records["events_charged"][:2]} <= first_keys


def test_failure_inside_a_window_leaves_state_at_the_last_whole_window(
    make_clevertap_emulator: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ct = make_clevertap_emulator()
    upload_events(
        ct,
        [
            ("u1", "Charged", local_epoch("2024-03-01 10:00", dt.UTC)),
            ("u1", "Charged", local_epoch("2024-03-01 11:00", dt.UTC)),
            ("u1", "Charged", local_epoch("2024-03-02 10:00", dt.UTC)),
            ("u1", "Charged", local_epoch("2024-03-02 11:00", dt.UTC)),
        ],
    )
    config = base_config(
        ct,
        event_names=["Charged"],
        window_days=1,
        lookback_days=0,
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-03T00:00:00Z",
    )
    tap = TapCleverTap(config=config, parse_env_config=False)
    stream = tap.streams["events_charged"]
    real_walk = stream.walk_cursor
    calls: list[int] = []

    def walk_then_fail(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        for index, record in enumerate(real_walk(*args, **kwargs)):
            if len(calls) == 2 and index == 1:
                msg = "connection lost in the middle of day 2"
                raise FatalAPIError(msg)
            yield record

    monkeypatch.setattr(stream, "walk_cursor", walk_then_fail)
    buffer = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with contextlib.redirect_stdout(buffer), pytest.raises(FatalAPIError):
        stream.sync()
    buffer.seek(0)
    out = Output([json.loads(line) for line in buffer.read().splitlines() if line])
    # Day 2 was half emitted; the bookmark still points into day 1.
    assert len(out.records["events_charged"]) == 3
    bookmark = out.state["bookmarks"]["events_charged"]["replication_key_value"]
    assert bookmark == "2024-03-01T11:00:00+00:00"

    rerun = run_tap(config, state=out.state)
    assert [r["ts"][:13] for r in rerun.records["events_charged"]] == [
        "2024-03-01T10",  # the bookmark's day is read whole again (lookback 0)
        "2024-03-01T11",
        "2024-03-02T10",
        "2024-03-02T11",
    ]


@pytest.mark.parametrize("http_status", [200, 400])
def test_in_progress_page_retries_the_same_cursor(
    make_clevertap_emulator: Callable[..., Any], http_status: int
) -> None:
    ct = make_clevertap_emulator()
    upload_events(ct, [("u1", "Charged", local_epoch("2024-03-01 10:00", dt.UTC))])
    ct.fault(
        "in_progress",
        fetches=2,
        http_status=http_status,
        path="/1/events.json",
        method="GET",
    )
    config = base_config(
        ct,
        event_names=["Charged"],
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-02T00:00:00Z",
    )
    # The emulator keeps the fault for every cursor, discovery's sample included.
    out = run_tap(config)
    assert len(out.records["events_charged"]) == 1
    gets = cursor_gets(ct)
    repeats = Counter(gets)
    assert repeats, "no cursor was fetched"
    assert all(count == 3 for count in repeats.values())  # 2 in progress + 1 page
    # Cursors go back exactly as received: percent-escapes kept, never re-encoded.
    assert all("%25" not in query for query in gets)
    assert any("%2" in query for query in gets)


def test_repeated_cursor_stops_the_walk_with_an_error(
    make_clevertap_emulator: Callable[..., Any],
) -> None:
    ct = make_clevertap_emulator()
    upload_events(
        ct,
        [
            ("u1", "Charged", local_epoch("2024-03-01 10:00", dt.UTC) + i)
            for i in range(6)
        ],
    )
    config = base_config(
        ct,
        event_names=["Charged"],
        batch_size=2,
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-02T00:00:00Z",
    )
    tap = TapCleverTap(config=config, parse_env_config=False)
    stream = tap.streams["events_charged"]  # discovery (and its sample) first
    before = len(cursor_gets(ct))
    ct.fault("repeat_cursor", times=1)
    with (
        contextlib.redirect_stdout(io.TextIOWrapper(io.BytesIO())),
        pytest.raises(CursorLoopError, match="repeated an export cursor"),
    ):
        stream.sync()
    # One page fetched; its next_cursor was the same cursor, so no second fetch.
    assert len(cursor_gets(ct)) - before == 1


def test_429_storm_backs_off_then_completes(
    make_clevertap_emulator: Callable[..., Any],
) -> None:
    ct = make_clevertap_emulator()
    upload_events(ct, [("u1", "Charged", local_epoch("2024-03-01 10:00", dt.UTC))])
    config = base_config(
        ct,
        event_names=["Charged"],
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-02T00:00:00Z",
    )
    ct.fault("status", status=429, times=6, path="/1/events.json")
    out = run_tap(config)
    assert len(out.records["events_charged"]) == 1
    statuses = Counter(e["status"] for e in ct.requests_log())
    assert statuses[429] == 6


def test_401_names_region_and_account_but_never_the_passcode(
    make_clevertap_emulator: Callable[..., Any],
) -> None:
    ct = make_clevertap_emulator()
    config = base_config(
        ct,
        passcode="WRONG-SECRET-123",
        region="in1",
        start_date="2024-03-01T00:00:00Z",
    )
    with pytest.raises(FatalAPIError) as caught:
        TapCleverTap(config=config, parse_env_config=False).discover_streams()
    message = str(caught.value)
    assert "401" in message
    assert "'in1'" in message
    assert repr(ct.account_id) in message
    assert "WRONG-SECRET-123" not in message
    assert Counter(e["status"] for e in ct.requests_log())[401] == 1  # no retries


def test_campaign_reports_skip_every_no_result_form(
    make_clevertap_emulator: Callable[..., Any],
) -> None:
    ct = make_clevertap_emulator()
    ct.seed(
        seed=5,
        profiles=3,
        events_per_day=1,
        campaigns=6,
        messages=1,
        event_names=["Charged"],
        **{"from": 20240301, "to": 20240302},
    )
    config = base_config(
        ct,
        event_names=["Charged"],
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-03T00:00:00Z",
    )
    out = run_tap(config)
    campaigns = out.records["campaigns"]
    reports = out.records["campaign_reports"]
    assert len(campaigns) == 6
    assert sorted(r["campaign_id"] for r in reports) == [
        c["id"] for c in campaigns if (c["id"] - 1_700_000_000) % 2 == 0
    ]
    assert all(r["sent"] is not None for r in reports)
    results = [e for e in ct.requests_log() if e["path"] == "/1/targets/result.json"]
    # One call per campaign: the 500 "no result as of yet" quirk is not retried.
    assert len(results) == 6
    assert {e["status"] for e in results} == {200, 409, 500}


def test_counts_answer_partial_twice_before_the_result(
    make_clevertap_emulator: Callable[..., Any],
) -> None:
    ct = make_clevertap_emulator()
    upload_events(
        ct,
        [
            ("u1", "Charged", local_epoch("2024-03-01 10:00", dt.UTC)),
            ("u2", "Charged", local_epoch("2024-03-01 11:00", dt.UTC)),
            ("u2", "Charged", local_epoch("2024-03-02 11:00", dt.UTC)),
        ],
    )
    ct.fault("counts_partial", polls=2, path="/1/counts/")
    config = base_config(
        ct,
        event_names=["Charged"],
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-03T00:00:00Z",
    )
    out = run_tap(config)
    assert [(r["date"], r["count"]) for r in out.records["event_counts"]] == [
        ("2024-03-01", 2),
        ("2024-03-02", 1),
    ]
    assert [(r["date"], r["count"]) for r in out.records["event_trends"]] == [
        ("2024-03-01", 2),
        ("2024-03-02", 1),
    ]
    log = ct.requests_log()
    posts = [
        e for e in log if e["method"] == "POST" and e["path"].startswith("/1/counts/")
    ]
    polls = [
        e for e in log if e["method"] == "GET" and e["path"].startswith("/1/counts/")
    ]
    # Each query: POST -> partial, GET -> partial, GET -> result.
    assert len(polls) == 2 * len(posts)
    assert all(e["query"].startswith("req_id=") for e in polls)


def test_notification_event_is_skipped_with_one_warning(
    make_clevertap_emulator: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ct = make_clevertap_emulator()
    ct.seed(
        seed=2,
        profiles=3,
        events_per_day=2,
        campaigns=0,
        messages=0,
        event_names=["Charged"],
        **{"from": 20240301, "to": 20240303},
    )
    config = base_config(
        ct,
        event_names=["Charged", "Notification Viewed"],
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-04T00:00:00Z",
    )
    with caplog.at_level(logging.WARNING):
        out = run_tap(config)
    assert out.records["events_charged"]
    assert "events_notification_viewed" not in out.records
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING
        and "Notification Viewed" in r.getMessage()
        and "export" in r.getMessage()
    ]
    assert len(warnings) == 1


def test_discover_lists_one_stream_per_exportable_event(
    make_clevertap_emulator: Callable[..., Any],
) -> None:
    ct = make_clevertap_emulator()
    ct.seed(
        seed=4,
        profiles=3,
        events_per_day=9,
        campaigns=0,
        messages=0,
        event_names=["Charged", "Opportunity Won", "NPS Submitted"],
        **{"from": 20240301, "to": 20240302},
    )
    config = base_config(
        ct, start_date="2024-03-01T00:00:00Z", end_date="2024-03-03T00:00:00Z"
    )
    tap = TapCleverTap(config=config, parse_env_config=False)
    catalog = tap.catalog_dict
    events = {
        s["tap_stream_id"]: s
        for s in catalog["streams"]
        if s["tap_stream_id"].startswith("events_")
    }
    assert sorted(events) == [
        "events_charged",
        "events_nps_submitted",
        "events_opportunity_won",
    ]
    charged = events["events_charged"]
    assert list(charged["key_properties"]) == ["event_key"]
    assert charged["replication_key"] == "ts"
    props = charged["schema"]["properties"]
    assert props["prop_amount"]["type"] == ["number", "null"] or props["prop_amount"][
        "type"
    ] == ["integer", "null"]
    assert props["ts"]["format"] == "date-time"
    assert props["identity"]["type"] == ["string", "null"]

    # A saved catalog is reused as is: no sampling exports, same columns.
    before = len(ct.requests_log())
    again = TapCleverTap(config=config, catalog=catalog, parse_env_config=False)
    assert again.streams["events_charged"].schema["properties"].keys() == props.keys()
    new = ct.requests_log()[before:]
    assert all(e["path"] == "/getSchema" for e in new)


def test_requests_ca_bundle_is_honoured(
    make_clevertap_emulator: Callable[..., Any],
    tls_files: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ct = make_clevertap_emulator(tls_files=tls_files)
    upload_events_tls(ct, tls_files)
    config = base_config(
        ct,
        event_names=["Charged"],
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-02T00:00:00Z",
    )
    assert config["api_url"].startswith("https://")
    with pytest.raises(requests.exceptions.SSLError):
        TapCleverTap(config=config, parse_env_config=False).discover_streams()
    # A certificate that cannot verify fails at once instead of being retried.
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.bundle))
    out = run_tap(config)
    assert len(out.records["events_charged"]) == 1


def upload_events_tls(ct: Any, tls_files: Any) -> None:
    body = {
        "d": [
            {
                "type": "event",
                "identity": "u1",
                "evtName": "Charged",
                "ts": local_epoch("2024-03-01 10:00", dt.UTC),
                "evtData": {},
            }
        ]
    }
    response = requests.post(
        f"{ct.base_url}/1/upload",
        json=body,
        headers=ct.headers(),
        timeout=30,
        verify=str(tls_files.ca_cert),
    )
    response.raise_for_status()


def test_region_host_through_https_proxy_with_ca_bundle(
    make_clevertap_emulator: Callable[..., Any],
    tls_files: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ct = make_clevertap_emulator(tls_files=tls_files)
    upload_events_tls(ct, tls_files)
    port = int(ct.base_url.rsplit(":", 1)[1])
    config = base_config(
        ct,
        event_names=["Charged"],
        region="in1",
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-02T00:00:00Z",
    )
    del config["api_url"]
    with running_proxy({"in1.api.clevertap.com": ("127.0.0.1", port)}) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.bundle))
        out = run_tap(config)
    assert len(out.records["events_charged"]) == 1
