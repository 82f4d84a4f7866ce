"""`target-salesforce --preflight` against the Salesforce emulator's sample org."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from target_salesforce import preflight, preflight_cli
from target_salesforce.target import TargetSalesforce

from tests.conftest import run_preflight

if TYPE_CHECKING:
    from tests.target_salesforce.conftest import Harness

PRESET = Path(__file__).resolve().parents[2] / "transforms"


def _config(harness: Harness, **extra: Any) -> dict[str, Any]:
    config = harness.config(
        streams={}, mappings_file=str(PRESET / "clevertap_to_salesforce.apex.yml")
    )
    config.update(extra)
    return _settings(config)


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings as the target reads them (schema defaults filled in)."""
    return preflight.with_defaults(TargetSalesforce.config_jsonschema, config)


def _lines(checks: list[preflight_cli.Check], status: str) -> list[str]:
    return [c.line() for c in checks if c.status == status]


def _the_one_failure(harness: Harness, stream: str, mapping: dict[str, Any]) -> str:
    """The one FAIL line of a preflight of `mapping` (for `stream`) alone."""
    checks = preflight.run_checks(_config(harness, streams={stream: mapping}))
    [line] = _lines(checks, "FAIL")
    return line


def test_preflight_passes_on_the_sample_org_for_the_apex_preset(
    harness: Harness,
) -> None:
    checks = preflight.run_checks(_config(harness))

    assert not _lines(checks, "FAIL")
    names = {c.name for c in checks}
    assert {"login", "api requests", "apex /services/apexrest/ct/nps/v1"} <= names
    assert "upsert key CleverTap_Engagement__c.CleverTap_Event_Id__c" in names
    assert "duplicate rules CleverTap_Engagement__c" in names
    # Nothing was written: only reads reached the org.
    assert harness.handle.apex_calls()[0]["method"] == "GET"
    assert {r["method"] for r in harness.handle.requests_log()} <= {"GET", "POST"}


def test_preflight_finds_a_missing_field_with_its_fix(harness: Harness) -> None:
    mapping = {
        "object": "Contact",
        "action": "update",
        "fields": {"Id": "id", "Missing_Score__c": "score"},
    }
    line = _the_one_failure(harness, "scores", mapping)
    assert line.startswith("FAIL field Contact.Missing_Score__c: scores -> Contact")
    assert "does not exist" in line
    assert "cd salesforce-org && sf project deploy start --source-dir force-app" in line


def test_preflight_finds_an_upsert_key_that_is_not_an_external_id(
    harness: Harness,
) -> None:
    mapping = {
        "object": "Contact",
        "external_id_field": "Last_Engagement_Event__c",
        "fields": {"Last_Engagement_Event__c": "event", "LastName": "name"},
    }
    line = _the_one_failure(harness, "people", mapping)
    assert line.startswith("FAIL upsert key Contact.Last_Engagement_Event__c")
    assert "is not an External ID field" in line
    assert "fix: tick External ID" in line


def test_preflight_finds_a_missing_apex_class(harness: Harness) -> None:
    harness.handle.emulator.apex._handlers.clear()  # the class is not deployed

    checks = preflight.run_checks(_config(harness))

    [line] = _lines(checks, "FAIL")
    assert line.startswith("FAIL apex /services/apexrest/ct/nps/v1: HTTP 404")
    assert "CleverTapNpsService" in line


def test_preflight_warns_about_active_duplicate_rules_on_created_objects(
    harness: Harness,
) -> None:
    mapping = {"object": "Lead", "action": "insert", "fields": {"LastName": "n"}}
    checks = preflight.run_checks(_config(harness, streams={"leads": mapping}))

    [warn] = _lines(checks, "WARN")
    assert warn.startswith(
        "WARN duplicate rules Lead: active: Standard Lead Duplicate Rule"
    )
    assert "DUPLICATES_DETECTED" in warn
    assert not _lines(checks, "FAIL")


def test_preflight_reports_a_failed_login_with_the_fix(harness: Harness) -> None:
    config = harness.login_config("refresh_token", refresh_token="wrong")  # noqa: S106 - a wrong value on purpose
    config.update(streams={}, mappings_file=str(PRESET / "clevertap_to_salesforce.yml"))

    checks = preflight.run_checks(_settings(config))

    assert checks[-1].name == "login"
    assert checks[-1].failed
    assert "connected app" in checks[-1].fix


def test_limits_check_fails_above_quota_percent() -> None:
    limits = {"DailyApiRequests": {"Max": 15000, "Remaining": 1000}}

    check = preflight.limits_check(limits, 80)

    assert check.failed
    assert check.detail.startswith("1000 of 15000 left today (93.3% used)")


def test_cli_flag_prints_one_line_per_check_and_exits_1_on_failure(
    harness: Harness, tmp_path: Path
) -> None:
    mapping = {
        "object": "Contact",
        "action": "update",
        "fields": {"Id": "id", "Nope__c": "x"},
    }
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(_config(harness, streams={"s": mapping})))
    env = {
        k: v for k, v in os.environ.items() if not k.upper().startswith("HTTPS_PROXY")
    }
    env["REQUESTS_CA_BUNDLE"] = harness.handle.ca_bundle

    result = run_preflight("target_salesforce", config_path, env)

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "PASS mappings: 10 stream mappings read"
    assert any(line.startswith("FAIL field Contact.Nope__c") for line in lines)
    assert lines[-1].startswith("preflight: ")
    assert lines[-1].endswith(" 1 failed")


def test_preflight_passes_for_every_export_preset(harness: Harness) -> None:
    for preset in sorted(PRESET.glob("clevertap_to_salesforce*.yml")):
        checks = preflight.run_checks(_config(harness, mappings_file=str(preset)))

        assert not _lines(checks, "FAIL"), preset
