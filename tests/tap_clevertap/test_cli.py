"""tap-clevertap as a command: `--discover`, and a failed login on stderr."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def test_discover_prints_one_stream_per_event_name(
    run_tap_cli, make_clevertap_emulator: Callable[..., Any]
) -> None:
    ct = make_clevertap_emulator(timezone="Europe/Paris")
    ct.seed(
        seed=9,
        profiles=4,
        events_per_day=8,
        campaigns=0,
        messages=0,
        event_names=["Opportunity Won", "Lead Created", "NPS Submitted"],
        **{"from": 20240301, "to": 20240302},
    )
    config = {
        **ct.plugin_config(),
        "timezone": "Europe/Paris",
        "start_date": "2024-03-01T00:00:00+01:00",
        "end_date": "2024-03-03T00:00:00+01:00",
    }
    result = run_tap_cli(config, "--discover")
    assert result.returncode == 0, result.stderr[-2000:]
    streams = {s["tap_stream_id"]: s for s in json.loads(result.stdout)["streams"]}
    events = sorted(name for name in streams if name.startswith("events_"))
    # The seed also raises notification events, which the export refuses.
    assert events == [
        "events_lead_created",
        "events_nps_submitted",
        "events_opportunity_won",
    ]
    for name in events:
        props = streams[name]["schema"]["properties"]
        assert {"event_key", "event_name", "ts", "identity"} <= set(props)
        assert any(column.startswith("prop_") for column in props)
    assert {
        "profiles",
        "campaigns",
        "campaign_reports",
        "message_reports",
        "event_counts",
        "event_trends",
        "event_schema",
        "user_properties",
    } <= set(streams)


def test_bad_passcode_exits_nonzero_naming_account_not_passcode(
    run_tap_cli, make_clevertap_emulator: Callable[..., Any]
) -> None:
    ct = make_clevertap_emulator()
    config = {
        **ct.plugin_config(),
        "passcode": "NOT-THE-PASSCODE-42",
        "start_date": "2024-03-01T00:00:00Z",
    }
    result = run_tap_cli(config)
    assert result.returncode != 0
    assert "NOT-THE-PASSCODE-42" not in result.stderr + result.stdout
    assert ct.account_id in result.stderr
    assert "region 'eu1'" in result.stderr
