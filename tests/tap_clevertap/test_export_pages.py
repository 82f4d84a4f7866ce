"""An export answer that is not a JSON success object is retried, never an end.

CleverTap's Get Events reference (developer.clevertap.com/docs/get-events-api) says to
fetch pages until a success answer carries no ``next_cursor``. A 200 page with an
empty, HTML or bare-string body is no such answer: before, it ended the cursor walk
as if complete and the window was bookmarked with its remaining pages unread.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from singer_sdk.exceptions import RetriableAPIError
from tap_clevertap.event_streams import EventsStream
from tap_clevertap.tap import TapCleverTap

from tests.tap_clevertap.test_real_api import (
    PAGE,
    Script,
    make_tap,
    serving,
    utm_shape,
)
from tests.tap_clevertap.test_sync import Output

pytestmark = pytest.mark.usefixtures("no_waits_no_proxy")

FIRST_PAGE = {**PAGE["events_page"], "next_cursor": "page-2"}
LAST_PAGE = PAGE["events_page"]  # recorded: success, no next_cursor
NOT_A_PAGE = {
    "empty": b"",
    "html": b"<html><body>502 Bad Gateway</body></html>",
    "json string": b'"gateway"',
    "object without status": b'{"records": []}',
}


@pytest.mark.parametrize("body", NOT_A_PAGE.values(), ids=NOT_A_PAGE.keys())
def test_non_object_200_page_is_fetched_again_and_the_walk_goes_on(
    body: bytes,
) -> None:
    script = Script()
    script.on("POST", "/1/events.json", (200, PAGE["cursor_response"]))
    script.on("GET", "/1/events.json", (200, FIRST_PAGE), (200, body), (200, LAST_PAGE))
    with serving(script) as url:
        events = EventsStream(
            make_tap(url), stream_name="events_utm_visited", shape=utm_shape()
        )
        records = list(events.get_records(None))
    assert len(records) == 2  # both pages read
    queries = [query for query, _ in script.calls("GET", "/1/events.json")]
    assert queries[1:] == ["cursor=page-2", "cursor=page-2"]  # same cursor again


def test_non_object_page_after_the_retries_stops_naming_stream_and_window() -> None:
    discovery = Script()
    discovery.on("GET", "/getSchema", (200, {"status": "success", "events": []}))
    discovery.on("POST", "/1/events.json", (200, PAGE["cursor_response"]))
    discovery.on("GET", "/1/events.json", (200, LAST_PAGE))
    with serving(discovery) as url:
        config = {**make_tap(url).config, "event_names": ["UTM Visited"]}
        catalog = TapCleverTap(config=config, parse_env_config=False).catalog_dict
    script = Script()
    script.on("POST", "/1/events.json", (200, PAGE["cursor_response"]))
    script.on("GET", "/1/events.json", (200, FIRST_PAGE), (200, NOT_A_PAGE["html"]))
    buffer = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with serving(script) as url:
        config = {**config, "api_url": url, "max_retries": 3}
        tap = TapCleverTap(config=config, catalog=catalog, parse_env_config=False)
        with (
            contextlib.redirect_stdout(buffer),
            pytest.raises(RetriableAPIError) as raised,
        ):
            tap.streams["events_utm_visited"].sync()
    message = str(raised.value)
    assert "stream 'events_utm_visited'" in message
    assert "'from': 20221118" in message  # the window (with its padding day)
    assert "not JSON" in message
    assert len(script.calls("GET", "/1/events.json")) == 1 + 3  # page 1, 3 tries
    buffer.seek(0)
    out = Output([json.loads(line) for line in buffer.read().splitlines() if line])
    # Page 1 was written, but the window is not bookmarked.
    assert len(out.records["events_utm_visited"]) == 1
    bookmarks = out.state.get("bookmarks", {}).get("events_utm_visited", {})
    assert "replication_key_value" not in bookmarks


def test_non_object_cursor_opening_is_sent_again() -> None:
    script = Script()
    script.on(
        "POST",
        "/1/events.json",
        (200, NOT_A_PAGE["html"]),
        (200, PAGE["cursor_response"]),
    )
    script.on("GET", "/1/events.json", (200, LAST_PAGE))
    with serving(script) as url:
        events = EventsStream(
            make_tap(url), stream_name="events_utm_visited", shape=utm_shape()
        )
        records = list(events.get_records(None))
    assert len(records) == 1
    assert len(script.calls("POST", "/1/events.json")) == 2
