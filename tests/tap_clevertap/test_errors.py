"""Stopping errors: settings checked at start-up, bad state, fatal API errors, retries.

Every stop must be one clear line on stderr naming its cause, exit code 1, and no
Python traceback.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from tap_clevertap.event_streams import EventSchemaStream
from tap_clevertap.tap import TapCleverTap, settings_errors

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

TRACEBACK = "Traceback (most recent call last)"
PASSCODE = "unit-passcode-7f3a"
# Nothing listens here: a run that reaches the network fails differently.
UNUSED_URL = "https://127.0.0.1:9"
BASE = {
    "account_id": "ACC-ERR",
    "passcode": PASSCODE,
    "api_url": UNUSED_URL,
    "start_date": "2024-03-01T00:00:00Z",
}


def assert_clear_stop(result: Any, *named: str) -> None:
    assert result.returncode == 1, result.stderr[-2000:]
    assert TRACEBACK not in result.stderr, result.stderr[-2000:]
    assert '"type":"RECORD"' not in result.stdout.replace(" ", "")
    for text in named:
        assert text in result.stderr, result.stderr[-2000:]
    assert PASSCODE not in result.stderr + result.stdout


def seeded(make_clevertap_emulator: Callable[..., Any]) -> Any:
    ct = make_clevertap_emulator()
    ct.seed(
        seed=3,
        profiles=3,
        events_per_day=6,
        campaigns=0,
        messages=0,
        notifications=False,
        event_names=["Charged"],
        **{"from": 20240301, "to": 20240301},
    )
    return ct


def emulator_config(ct: Any, **extra: Any) -> dict[str, Any]:
    return {
        **ct.plugin_config(),
        "start_date": "2024-03-01T00:00:00Z",
        "end_date": "2024-03-02T00:00:00Z",
        "event_names": ["Charged"],
        "batch_size": 2,
        "backoff_base_seconds": 0,
        **extra,
    }


# ------------------------------------------------------------ settings


def test_settings_errors_name_each_bad_setting() -> None:
    errors = settings_errors(
        {
            "start_date": "last tuesday",
            "end_date": "2024-13-45",
            "timezone": "Mars/Olympus_Mons",
        }
    )
    assert len(errors) == 3
    assert errors[0].startswith("start_date: 'last tuesday'")
    assert errors[1].startswith("end_date: '2024-13-45'")
    assert errors[2].startswith("timezone:")
    assert "Mars/Olympus_Mons" in errors[2]


def test_settings_errors_reject_end_date_not_after_start_date() -> None:
    errors = settings_errors(
        {"start_date": "2024-03-02", "end_date": "2024-03-01T00:00:00+00:00"}
    )
    assert errors == ["end_date: must be later than start_date"]


def test_settings_errors_accept_dates_date_times_and_iana_zones() -> None:
    assert not settings_errors(
        {
            "start_date": "2024-03-01",
            "end_date": "2024-03-02T05:30:00+05:30",
            "timezone": "Asia/Kolkata",
        }
    )


def test_bad_start_date_stops_at_start_up_naming_the_setting(run_tap_cli) -> None:
    result = run_tap_cli({**BASE, "start_date": "last tuesday"})
    assert_clear_stop(result, "start_date", "last tuesday")
    # Stopped before any request: the unused URL would have answered differently.
    assert "127.0.0.1:9" not in result.stderr


def test_backoff_settings_out_of_range_are_config_errors(run_tap_cli) -> None:
    result = run_tap_cli({**BASE, "max_retries": 0})
    assert_clear_stop(result, "max_retries")


# ------------------------------------------------------------ state file


def test_state_file_not_json_stops_naming_the_file(run_tap_cli, tmp_path: Path) -> None:
    state = tmp_path / "broken-state.json"
    state.write_text("{not json", encoding="utf-8")
    result = run_tap_cli(BASE, "--state", str(state))
    assert_clear_stop(result, str(state), "is not JSON")


def test_state_file_holding_a_list_stops_naming_the_file(
    run_tap_cli, tmp_path: Path
) -> None:
    state = tmp_path / "list-state.json"
    state.write_text("[]", encoding="utf-8")
    result = run_tap_cli(BASE, "--state", str(state))
    assert_clear_stop(result, str(state), "not an object")


def test_unreadable_bookmark_stops_before_any_output_naming_stream(
    run_tap_cli, make_clevertap_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    ct = seeded(make_clevertap_emulator)
    state = tmp_path / "state.json"
    bookmark = {"replication_key": "ts", "replication_key_value": "soon-ish"}
    state.write_text(
        json.dumps({"bookmarks": {"events_charged": bookmark}}), encoding="utf-8"
    )
    result = run_tap_cli(emulator_config(ct), "--state", str(state))
    assert_clear_stop(result, "events_charged", "soon-ish")
    assert not result.stdout.strip()  # not even the input STATE echoed back


# ------------------------------------------------------------ fatal API errors


def test_repeated_cursor_stops_with_one_line_and_no_state(
    run_tap_cli, make_clevertap_emulator: Callable[..., Any]
) -> None:
    ct = seeded(make_clevertap_emulator)
    ct.fault("repeat_cursor", times=1, path="/1/events.json")
    result = run_tap_cli(emulator_config(ct))
    assert result.returncode == 1
    assert TRACEBACK not in result.stderr, result.stderr[-2000:]
    stop_lines = [
        line for line in result.stderr.splitlines() if "tap-clevertap stopped" in line
    ]
    assert len(stop_lines) == 1
    assert "cursor" in stop_lines[0]
    assert '"type":"STATE"' not in result.stdout.replace(" ", "")


def test_wrong_passcode_stops_with_one_line_naming_account(
    run_tap_cli, make_clevertap_emulator: Callable[..., Any]
) -> None:
    ct = seeded(make_clevertap_emulator)
    result = run_tap_cli(emulator_config(ct, passcode=PASSCODE))
    assert_clear_stop(result, "tap-clevertap stopped", "401", ct.account_id)


def test_retries_used_up_stop_with_one_line(
    run_tap_cli, make_clevertap_emulator: Callable[..., Any]
) -> None:
    ct = seeded(make_clevertap_emulator)
    ct.fault("status", status=503, times=50, path="/1/events.json")
    config = emulator_config(ct, max_retries=2, backoff_max_seconds=0)
    result = run_tap_cli(config)
    assert_clear_stop(result, "gave up after max_retries attempts", "503")
    # Two attempts per request, as configured; none after the stop.
    assert result.stderr.count("Retrying") == 1


# ------------------------------------------------------------ retry settings


@pytest.fixture
def schema_stream() -> EventSchemaStream:
    config = {
        **BASE,
        "max_retries": 3,
        "backoff_base_seconds": 0.5,
        "backoff_max_seconds": 1.5,
    }
    tap = TapCleverTap(config=config, parse_env_config=False, setup_mapper=False)
    return EventSchemaStream(tap)


def test_backoff_waits_double_from_base_up_to_max(
    schema_stream: EventSchemaStream,
) -> None:
    waits = schema_stream.backoff_wait_generator()
    waits.send(None)  # backoff primes its generators this way
    assert [next(waits) for _ in range(5)] == [0.5, 1.0, 1.5, 1.5, 1.5]
    assert schema_stream.backoff_max_tries() == 3


def test_backoff_jitter_stays_between_half_and_whole_wait(
    schema_stream: EventSchemaStream,
) -> None:
    values = [schema_stream.backoff_jitter(1.5) for _ in range(200)]
    assert all(0.75 <= value <= 1.5 for value in values)
    assert len(set(values)) > 1


def test_backoff_defaults_match_the_documented_settings() -> None:
    tap = TapCleverTap(config=BASE, parse_env_config=False, setup_mapper=False)
    stream = EventSchemaStream(tap)
    waits = stream.backoff_wait_generator()
    waits.send(None)
    assert [next(waits) for _ in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert stream.backoff_max_tries() == 8
