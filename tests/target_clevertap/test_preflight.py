"""`target-clevertap --preflight` against CleverTap emulators."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from target_clevertap import preflight, preflight_cli

from tests.conftest import run_preflight
from tests.tap_clevertap.test_get_schema import REFUSED, export_script
from tests.tap_clevertap.test_real_api import serving

if TYPE_CHECKING:
    import pytest

PRESET = (
    Path(__file__).resolve().parents[2] / "transforms" / "salesforce_to_clevertap.yml"
)


def _config(emulator: Any, **extra: Any) -> dict[str, Any]:
    config = {
        **emulator.plugin_config(),
        "mappings_file": str(PRESET),
        "timezone": "UTC",  # the emulator account's zone
    }
    config.update(extra)
    return config


def test_preflight_passes_and_counts_the_presets_custom_profile_keys(
    clevertap_emulator: Any,
) -> None:
    checks = preflight.run_checks(_config(clevertap_emulator))

    assert [c.status for c in checks] == ["PASS", "PASS", "PASS"]
    keys = checks[2].line()
    assert keys.startswith("PASS custom profile keys: the mappings write ")
    assert " of 256 after a run" in keys
    # nothing was uploaded
    assert all(r["path"] != "/1/upload" for r in clevertap_emulator.requests_log())


def test_preflight_finds_wrong_credentials(clevertap_emulator: Any) -> None:
    config = _config(clevertap_emulator, passcode="WRONG-PASSCODE")

    [check] = [c for c in preflight.run_checks(config) if c.failed]

    assert check.name == "credentials and region"
    assert "HTTP 401" in check.detail
    assert "check account_id and passcode" in check.fix
    assert "WRONG-PASSCODE" not in check.line()


def test_preflight_finds_a_wrong_region_and_names_the_right_one(
    make_clevertap_emulator: Any,
) -> None:
    # Two regional hosts: the account lives in in1; eu1 does not know it (401).
    home = make_clevertap_emulator(account_id="ACME-1", passcode="P-1")
    elsewhere = make_clevertap_emulator(account_id="OTHER", passcode="P-2")
    hosts = {"eu1": elsewhere.base_url, "in1": home.base_url}
    config = {
        "account_id": "ACME-1",
        "passcode": "P-1",
        "region": "eu1",
        "mappings_file": str(PRESET),
        "timezone": "UTC",
    }

    [check] = [c for c in preflight.run_checks(config, hosts) if c.failed]

    assert check.detail.endswith("the same credentials work in region in1")
    assert check.fix.startswith("set region: in1")
    assert [
        c.status for c in preflight.run_checks({**config, "region": "in1"}, hosts)
    ] == [
        "PASS",
        "PASS",
        "PASS",
    ]


def test_profile_keys_past_256_fail() -> None:
    existing = [f"Key {i}" for i in range(250)] + ["Email", "MSG-email"]

    check = preflight.profile_keys_check({f"New {i}" for i in range(7)}, existing, [])

    assert check.failed
    assert "257 of 256" in check.detail


def test_cli_flag_exits_1_on_wrong_credentials(
    clevertap_emulator: Any, tmp_path: Path
) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(_config(clevertap_emulator, passcode="nope")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_CLEVERTAP_")}

    result = run_preflight("target_clevertap", config_path, env)

    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[0].startswith("FAIL credentials and region: ")
    assert result.stdout.splitlines()[-1] == "preflight: 1 passed, 1 failed"


def test_meltano_flattened_mappings_are_rebuilt() -> None:
    flat = {
        "Contact.profile.identity.template": "SF_Contact_{Id}",
        "Contact.profile.properties.include": ["Id", "Email"],
    }

    assert preflight_cli.unflatten(flat) == {
        "Contact": {
            "profile": {
                "identity": {"template": "SF_Contact_{Id}"},
                "properties": {"include": ["Id", "Email"]},
            }
        }
    }
    assert preflight_cli.unflatten("Contact: {skip: true}") == "Contact: {skip: true}"


def test_preflight_checks_the_timezone_setting() -> None:
    unset = preflight.timezone_check(None)
    assert unset.status == "WARN"
    assert "00:00 UTC" in unset.detail
    wrong = preflight.timezone_check("Mars/Olympus")
    assert wrong.failed
    good = preflight.timezone_check("America/Los_Angeles")
    assert good.status == "PASS"
    assert "timezone=America/Los_Angeles" in good.detail


def test_preflight_with_get_schema_refused_warns_instead_of_blaming_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a 403 is not a credentials answer (that is 401): only the key count is lost
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with serving(export_script(REFUSED)) as url:
        config = {"account_id": "A", "passcode": "P", "api_url": url}
        checks = preflight.run_checks(
            {**config, "mappings_file": str(PRESET), "timezone": "UTC"}
        )
    assert [(c.name, c.status) for c in checks] == [
        ("credentials and region", "WARN"),
        ("time zone", "PASS"),
    ]
    assert "(no 401), but CleverTap answered HTTP 403" in checks[0].detail
    assert "cannot be counted" in checks[0].detail
