"""Recorded real CleverTap read answers replayed through tap-clevertap.

The bodies come from `tests/fixtures/tap_clevertap/real_api/` (README there names each
recording's source). A small local HTTP server answers with them byte for byte, so the
tap's own HTTP, retry and parsing code handles exactly what CleverTap sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from tap_clevertap.campaign_streams import CampaignReportsStream, shape_message
from tap_clevertap.event_records import EventShape
from tap_clevertap.event_streams import (
    EventCountsStream,
    EventsStream,
    EventTrendsStream,
)
from tap_clevertap.records import infer_types
from tap_clevertap.tap import TapCleverTap

if TYPE_CHECKING:
    from collections.abc import Iterator

REAL = Path(__file__).parents[1] / "fixtures" / "tap_clevertap" / "real_api"
PAGE = json.loads((REAL / "events_export_page.json").read_text(encoding="utf-8"))
BODIES = json.loads((REAL / "read_api_bodies.json").read_text(encoding="utf-8"))
IN_PROGRESS = BODIES["cursor_page_in_progress"]["body"]
REPORT_OK = BODIES["campaign_report_ok"]
KOLKATA = ZoneInfo("Asia/Kolkata")  # the recorded page is from an in1 account
Reply = tuple[int, Any]


pytestmark = pytest.mark.usefixtures("no_waits_no_proxy")


class Script:
    """Replies per `METHOD path`, consumed in order (the last one repeats).

    A reply body is sent as JSON, or byte for byte when it is `bytes`.
    """

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.log: list[tuple[str, str, str, Any]] = []  # method, path, query, body

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self.replies[f"{method} {path}"] = list(replies)

    def next(self, method: str, path: str) -> Reply:
        queue = self.replies.get(f"{method} {path}")
        if not queue:
            return 404, {"status": "fail", "error": "not scripted", "code": 404}
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def calls(self, method: str, path: str) -> list[tuple[str, Any]]:
        return [(q, b) for m, p, q, b in self.log if m == method and p == path]


@contextlib.contextmanager
def serving(script: Script) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            script.log.append(
                (self.command, path, query, json.loads(raw) if raw else None)
            )
            status, body = script.next(self.command, path)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer  # noqa: N815 - http.server's handler names

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def make_tap(url: str, **extra: Any) -> TapCleverTap:
    config = {
        "account_id": "ACC-REAL",
        "passcode": "unit-passcode-real",
        "api_url": url,
        "timezone": "Asia/Kolkata",
        "start_date": "2022-11-19T00:00:00+05:30",
        "end_date": "2022-11-20T00:00:00+05:30",
        "max_retries": 4,
        **extra,
    }
    return TapCleverTap(config=config, parse_env_config=False, setup_mapper=False)


def utm_shape() -> EventShape:
    rows = [PAGE["events_page"]["records"][0]["event_props"]]
    return EventShape.build("UTM Visited", infer_types(rows), {})


# ------------------------------------------------------------ the export page


def test_recorded_export_page_keeps_device_fields_and_every_profile_key() -> None:
    shape = utm_shape()
    records = [*PAGE["events_page"]["records"], *PAGE["more_records"]]
    rows = [shape.record(raw, KOLKATA) for raw in records]
    assert all(row is not None for row in rows)
    first, moment = rows[0]  # type: ignore[misc]
    assert moment == dt.datetime(2022, 11, 19, 0, 19, 37, tzinfo=dt.UTC)
    assert first["ts"] == "2022-11-19T00:19:37+00:00"
    assert first["ts_account"] == "20221119054937"
    assert first["object_id"] == "__g9e75e20dcf3d41ee9f1ebd907663164e"
    # No identity, email or name in the recorded profile: null columns, not errors.
    assert first["identity"] is None
    assert first["email"] is None
    assert (
        first["platform"],
        first["os_version"],
        first["app_version"],
        first["make"],
        first["model"],
    ) == ("Android", "10", "1.1.7", "xiaomi", "M2006C3MII")
    assert first["prop_install"] == "y"
    assert json.loads(first["session_props_json"])["utm_source"] == "google-play"
    extra = json.loads(first["profile_extra_json"])
    assert set(extra) == {"df", "events"}
    assert extra["events"]["UTM Visited"]["count"] == 1
    with_token = json.loads(rows[2][0]["profile_extra_json"])  # type: ignore[index]
    assert with_token["push_token"].startswith("fcm:")
    schema = shape.schema()["properties"]
    for column in ("os_version", "app_version", "make", "model", "profile_extra_json"):
        assert column in schema
        assert all(column in row[0] for row in rows)  # type: ignore[index]
    # The first page record is repeated in more_records: same key; others differ.
    keys = [row[0]["event_key"] for row in rows]  # type: ignore[index]
    assert keys[0] == keys[1]
    assert len(set(keys)) == len(keys) - 1


def test_recorded_cursor_and_page_flow_through_the_events_stream() -> None:
    script = Script()
    script.on("POST", "/1/events.json", (200, PAGE["cursor_response"]))
    script.on("GET", "/1/events.json", (200, PAGE["events_page"]))
    with serving(script) as url:
        tap = make_tap(url, include_app_fields=True)
        stream = EventsStream(tap, stream_name="events_utm_visited", shape=utm_shape())
        records = list(stream.get_records(None))
    assert [r["model"] for r in records] == ["M2006C3MII"]
    ((query, _),) = script.calls("GET", "/1/events.json")
    # The cursor goes back exactly as CleverTap sent it (already percent-encoded).
    assert query == f"cursor={PAGE['cursor_response']['cursor']}"
    ((opening, body),) = script.calls("POST", "/1/events.json")
    assert "app=true" in opening
    assert body["event_name"] == "UTM Visited"


# ------------------------------------------------------------ "in progress", any status


@pytest.mark.parametrize("status", [200, 400, 404, 409, 500])
def test_in_progress_campaign_report_is_retried_whatever_the_status(
    status: int,
) -> None:
    script = Script()
    script.on(
        "POST",
        "/1/targets/result.json",
        (status, IN_PROGRESS),
        (200, REPORT_OK["body"]),
    )
    with serving(script) as url:
        stream = CampaignReportsStream(make_tap(url))
        records = list(stream.get_records({"campaign_id": 7}))
    assert [(r["campaign_id"], r["sent"]) for r in records] == [(7, 82)]
    assert len(script.calls("POST", "/1/targets/result.json")) == 2


@pytest.mark.parametrize("status", [200, 401, 409])
def test_in_progress_cursor_opening_is_retried_whatever_the_status(
    status: int,
) -> None:
    script = Script()
    script.on(
        "POST",
        "/1/events.json",
        (status, IN_PROGRESS),
        (200, PAGE["cursor_response"]),
    )
    script.on("GET", "/1/events.json", (200, IN_PROGRESS), (200, PAGE["events_page"]))
    with serving(script) as url:
        stream = EventsStream(
            make_tap(url), stream_name="events_utm_visited", shape=utm_shape()
        )
        records = list(stream.get_records(None))
    assert len(records) == 1
    assert len(script.calls("POST", "/1/events.json")) == 2
    assert len(script.calls("GET", "/1/events.json")) == 2


def test_in_progress_count_query_is_retried() -> None:
    script = Script()
    script.on(
        "POST",
        "/1/counts/events.json",
        (200, IN_PROGRESS),
        (200, {"status": "success", "count": 5}),
    )
    with serving(script) as url:
        tap = make_tap(url, end_date="2022-11-19T12:00:00+05:30")
        stream = EventCountsStream(tap, event_names=["UTM Visited"])
        records = list(stream.get_records({"event_name": "UTM Visited"}))
    assert [(r["date"], r["count"]) for r in records] == [("2022-11-19", 5)]


def test_in_progress_forever_stops_after_max_retries() -> None:
    script = Script()
    script.on("POST", "/1/targets/result.json", (200, IN_PROGRESS))
    with serving(script) as url:
        stream = CampaignReportsStream(make_tap(url, max_retries=3))
        with pytest.raises(RetriableAPIError, match=r"code 2"):
            list(stream.get_records({"campaign_id": 7}))
    assert len(script.calls("POST", "/1/targets/result.json")) == 3


# ------------------------------------------------------------ other recorded bodies


@pytest.mark.parametrize(
    "recording",
    ["campaign_report_no_result_http500", "campaign_report_not_completed_http200"],
)
def test_recorded_no_result_reports_are_skipped_without_retry(recording: str) -> None:
    reply = BODIES[recording]
    script = Script()
    script.on("POST", "/1/targets/result.json", (reply["status"], reply["body"]))
    with serving(script) as url:
        stream = CampaignReportsStream(make_tap(url))
        assert list(stream.get_records({"campaign_id": 7})) == []
    assert len(script.calls("POST", "/1/targets/result.json")) == 1


def test_recorded_report_result_becomes_a_row() -> None:
    script = Script()
    script.on(
        "POST", "/1/targets/result.json", (REPORT_OK["status"], REPORT_OK["body"])
    )
    with serving(script) as url:
        stream = CampaignReportsStream(make_tap(url))
        (record,) = stream.get_records({"campaign_id": 7})
    assert record["sent"] == 82
    assert json.loads(record["result_json"]) == {"sent": 82}


def test_recorded_export_not_allowed_skips_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reply = BODIES["events_export_not_allowed_http400"]
    script = Script()
    script.on("POST", "/1/events.json", (reply["status"], reply["body"]))
    with serving(script) as url:
        stream = EventsStream(
            make_tap(url), stream_name="events_utm_visited", shape=utm_shape()
        )
        assert list(stream.get_records(None)) == []
    assert "does not export it" in caplog.text
    assert len(script.calls("POST", "/1/events.json")) == 1  # not retried


@pytest.mark.parametrize("status", [200, 400])
def test_recorded_incorrect_usage_stops_with_a_clear_error(status: int) -> None:
    reply = BODIES["cursor_incorrect_usage"]
    script = Script()
    script.on("POST", "/1/events.json", (200, PAGE["cursor_response"]))
    script.on("GET", "/1/events.json", (status, reply["body"]))
    with serving(script) as url:
        stream = EventsStream(
            make_tap(url), stream_name="events_utm_visited", shape=utm_shape()
        )
        with pytest.raises(FatalAPIError, match="Incorrect Usage"):
            list(stream.get_records(None))
    assert len(script.calls("GET", "/1/events.json")) == 1  # not retried


def test_recorded_message_report_entry_becomes_a_row() -> None:
    entry = BODIES["message_report_entry_fragment"]
    record = shape_message(entry)
    assert record is not None
    assert record["message_id"] == "1457432766"
    assert record["message_name"] == "Welcome"


# ------------------------------------------------------------ schema


def test_daily_count_and_trend_dates_are_typed_as_dates() -> None:
    tap = make_tap("https://127.0.0.1:9")
    for stream in (
        EventCountsStream(tap, event_names=["UTM Visited"]),
        EventTrendsStream(tap, event_names=["UTM Visited"]),
    ):
        date = stream.schema["properties"]["date"]
        assert date["format"] == "date", stream.name
        assert "string" in date["type"]
