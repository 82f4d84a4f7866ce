"""`tap-clevertap --preflight` against CleverTap emulators."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest
from tap_clevertap import preflight

from tests.conftest import run_preflight
from tests.tap_clevertap.test_get_schema import REFUSED, export_script
from tests.tap_clevertap.test_real_api import serving

if TYPE_CHECKING:
    from pathlib import Path


def _config(emulator: Any, **extra: Any) -> dict[str, Any]:
    config = {
        "account_id": emulator.account_id,
        "passcode": emulator.passcode,
        "api_url": emulator.base_url,
        "start_date": "2024-01-01T00:00:00Z",
    }
    config.update(extra)
    return config


def test_preflight_passes_when_the_timezone_is_the_accounts(
    make_clevertap_emulator: Any,
) -> None:
    emulator = make_clevertap_emulator(timezone="Asia/Kolkata")
    emulator.seed(days=3)

    checks = preflight.run_checks(_config(emulator, timezone="Asia/Kolkata"))

    assert [c.status for c in checks] == ["PASS", "PASS", "PASS"], [
        c.line() for c in checks
    ]
    assert "line up with timezone=Asia/Kolkata" in checks[1].detail
    assert checks[2].line().startswith("PASS custom profile keys: the account has ")


def test_preflight_finds_a_timezone_mismatch(make_clevertap_emulator: Any) -> None:
    emulator = make_clevertap_emulator(timezone="Asia/Kolkata")
    emulator.seed(days=3)

    [check] = [
        c for c in preflight.run_checks(_config(emulator, timezone="UTC")) if c.failed
    ]

    assert check.name == "time zone"
    assert check.detail.startswith("exported event times are UTC+05:30")
    assert "set timezone to the account's IANA zone" in check.fix


def test_preflight_warns_when_no_event_can_be_compared(clevertap_emulator: Any) -> None:
    checks = preflight.run_checks(_config(clevertap_emulator))

    assert checks[1].status == "WARN"
    assert "does not return the account time zone" in checks[1].detail


def test_preflight_finds_wrong_credentials(clevertap_emulator: Any) -> None:
    checks = preflight.run_checks(_config(clevertap_emulator, passcode="WRONG"))

    assert [c.status for c in checks] == ["FAIL"]
    assert "HTTP 401" in checks[0].detail
    assert "check account_id and passcode" in checks[0].fix


def test_preflight_finds_a_wrong_region(make_clevertap_emulator: Any) -> None:
    home = make_clevertap_emulator(account_id="ACME-1", passcode="P-1")
    elsewhere = make_clevertap_emulator(account_id="OTHER", passcode="P-2")
    hosts = {"eu1": elsewhere.base_url, "in1": home.base_url, "us1": elsewhere.base_url}
    config = {"account_id": "ACME-1", "passcode": "P-1", "region": "us1"}

    [check] = preflight.run_checks(config, hosts)

    assert check.failed
    assert check.detail.endswith("the same credentials work in region in1")
    assert check.fix.startswith("set region: in1")


def test_cli_flag_exits_1_on_a_timezone_mismatch(
    make_clevertap_emulator: Any, tmp_path: Path
) -> None:
    emulator = make_clevertap_emulator(timezone="Asia/Kolkata")
    emulator.seed(days=3)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(_config(emulator, timezone="Europe/London")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_CLEVERTAP_")}

    result = run_preflight("tap_clevertap", config_path, env)

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("FAIL time zone: exported event times are UTC+05:30")
    assert lines[-1] == "preflight: 2 passed, 1 failed"


@pytest.mark.usefixtures("no_waits_no_proxy")
@pytest.mark.parametrize(
    ("event_names", "status"), [(["UTM Visited"], "WARN"), ([], "FAIL")]
)
def test_preflight_with_get_schema_refused_warns_or_names_event_names(
    event_names: list[str], status: str
) -> None:
    # 403 is not a credentials answer (that is 401): the tap can do without the
    # listing when event_names is set
    with serving(export_script(REFUSED)) as url:
        config = {
            "account_id": "A",
            "passcode": "P",
            "api_url": url,
            "start_date": "2024-01-01T00:00:00Z",
            "event_names": event_names,
        }
        checks = preflight.run_checks(config)
    first = checks[0]
    assert (first.name, first.status) == ("credentials and region", status)
    assert "no 401" in first.detail
    assert "HTTP 403" in first.detail
    if status == "FAIL":
        assert first.fix == "set event_names to the events to export"
    else:  # the other checks still run; no listing: no profile keys count
        assert [c.name for c in checks[1:]] == ["time zone"]
