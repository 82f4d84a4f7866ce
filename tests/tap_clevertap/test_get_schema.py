"""``/getSchema`` is asked only when needed, and a refusal stops only what needs it.

``/getSchema`` is not in CleverTap's public API reference (developer.clevertap.com),
so an account may refuse it. With `event_names` set the streams can be built without
it; without `event_names` it is the only list of event names.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from singer_sdk.exceptions import FatalAPIError
from tap_clevertap.event_streams import EventSchemaStream
from tap_clevertap.tap import TapCleverTap

from tests.tap_clevertap.test_real_api import PAGE, Script, make_tap, serving

pytestmark = pytest.mark.usefixtures("no_waits_no_proxy")

# Not a recording: any 4xx answer; the body is CleverTap's usual error shape.
REFUSED = (403, {"status": "fail", "error": "operation not allowed", "code": 403})
EVENTS_LISTING = (
    200,
    {"status": "success", "events": [{"name": "UTM Visited", "properties": []}]},
)


def export_script(get_schema: tuple[int, Any]) -> Script:
    """One recorded export page for every event; `/getSchema` answers `get_schema`."""
    script = Script()
    script.on("GET", "/getSchema", get_schema)
    script.on("POST", "/1/events.json", (200, PAGE["cursor_response"]))
    script.on("GET", "/1/events.json", (200, PAGE["events_page"]))
    return script


def test_refused_get_schema_with_event_names_warns_and_builds_the_streams(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = export_script(REFUSED)
    with serving(script) as url, caplog.at_level(logging.WARNING):
        tap = make_tap(url, event_names=["UTM Visited"])
        streams = tap.streams
    assert "events_utm_visited" in streams
    # The columns come from the sampled export page instead.
    assert "prop_install" in streams["events_utm_visited"].schema["properties"]
    assert "CleverTap refused /getSchema?type=events (403" in caplog.text


def test_event_names_and_a_full_catalog_never_ask_get_schema() -> None:
    with serving(export_script(EVENTS_LISTING)) as url:
        catalog = make_tap(url, event_names=["UTM Visited"]).catalog_dict
    script = export_script(REFUSED)
    with serving(script) as url:
        config = {**make_tap(url).config, "event_names": ["UTM Visited"]}
        tap = TapCleverTap(config=config, catalog=catalog, parse_env_config=False)
        assert "events_utm_visited" in tap.streams
    assert script.calls("GET", "/getSchema") == []
    assert script.calls("POST", "/1/events.json") == []  # no samples either


def test_refused_get_schema_without_event_names_stops_naming_the_setting() -> None:
    with (
        serving(export_script(REFUSED)) as url,
        pytest.raises(FatalAPIError, match="set event_names"),
    ):
        _ = make_tap(url).streams


def test_refused_get_schema_leaves_the_event_schema_stream_empty_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serving(export_script(REFUSED)) as url, caplog.at_level(logging.WARNING):
        stream = EventSchemaStream(make_tap(url, event_names=["UTM Visited"]))
        assert list(stream.get_records(None)) == []
    assert "going on without that listing" in caplog.text
