"""meltano.yml stays consistent with the plugins, .env.example and the sandbox."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LOCAL_PLUGINS = ("tap-clevertap", "target-clevertap", "target-salesforce")


def _project() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "meltano.yml").read_text()))


def _plugins() -> dict[str, dict[str, Any]]:
    plugins = _project()["plugins"]
    return {p["name"]: p for kind in plugins.values() for p in kind}


def _environment(name: str) -> dict[str, Any]:
    return next(e for e in _project()["environments"] if e["name"] == name)


def _about(plugin: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", plugin.replace("-", "_"), "--about", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return dict(json.loads(out))


@pytest.mark.parametrize("plugin", LOCAL_PLUGINS)
def test_local_plugin_settings_mirror_about(plugin: str) -> None:
    about = _about(plugin)["settings"]["properties"]
    settings = {s["name"]: s for s in _plugins()[plugin]["settings"]}

    fix = "run: .venv/bin/python tests/e2e/meltano_settings.py --write"
    assert sorted(settings) == sorted(about), fix
    secret = {k for k, v in about.items() if v.get("secret") or v.get("writeOnly")}
    sensitive = {k for k, v in settings.items() if v.get("sensitive")}
    assert sensitive == secret, fix


@pytest.mark.parametrize("plugin", LOCAL_PLUGINS)
def test_local_plugin_is_installed_editable_from_its_folder(plugin: str) -> None:
    definition = _plugins()[plugin]

    assert definition["pip_url"] == f"-e ./{plugin}"
    assert definition["executable"] == plugin
    assert (REPO / plugin / "pyproject.toml").exists()


def test_tap_salesforce_is_the_pypi_release_fed_with_properties() -> None:
    tap = _plugins()["tap-salesforce"]

    assert tap["pip_url"] == "tap-salesforce==2.8.1"
    assert tap["capabilities"] == ["properties", "discover", "state"]
    assert tap["metadata"]["*"] == {
        "replication-method": "INCREMENTAL",
        "replication-key": "SystemModstamp",
    }
    assert {s["name"] for s in tap["settings"] if s.get("sensitive")} == {
        "client_secret",
        "refresh_token",
    }


def test_sandbox_environment_sets_only_the_three_client_variables() -> None:
    env = _environment("sandbox")["env"]

    assert sorted(env) == ["HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE"]
    assert (
        env["REQUESTS_CA_BUNDLE"] == "${MELTANO_PROJECT_ROOT}/.sandbox/tls/bundle.pem"
    )
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", env["HTTPS_PROXY"])
    assert "env" not in _project()


def test_prod_credentials_come_only_from_variables_listed_in_env_example() -> None:
    prod = _environment("prod")
    referenced = set(re.findall(r"\$\{(\w+)\}", json.dumps(prod)))
    example = {
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }

    assert referenced == example
    sensitive = {
        (p["name"], s["name"])
        for p in _plugins().values()
        for s in p.get("settings", [])
        if s.get("sensitive")
    }
    for kind in prod["config"]["plugins"].values():
        for plugin in kind:
            for key, value in plugin.get("config", {}).items():
                if (plugin["name"], key) in sensitive:
                    assert re.fullmatch(r"\$\{\w+\}", str(value)), (plugin, key)


def test_jobs_and_schedules_cover_both_directions() -> None:
    project = _project()
    jobs = {j["name"]: j["tasks"] for j in project["jobs"]}
    schedules = {s["job"]: s["interval"] for s in project["schedules"]}

    assert jobs == {
        "salesforce-to-clevertap": ["tap-salesforce target-clevertap"],
        "clevertap-to-salesforce": ["tap-clevertap target-salesforce"],
        "postgres-to-clevertap": ["tap-postgres target-clevertap--shop"],
        "clevertap-to-duckdb": [
            "tap-clevertap--warehouse target-duckdb duckdb-views:create"
        ],
    }
    assert schedules == {
        "salesforce-to-clevertap": "*/5 * * * *",
        "clevertap-to-salesforce": "@daily",
    }
    assert project["send_anonymous_usage_stats"] is False


def test_loaders_read_the_mapping_presets_from_transforms() -> None:
    plugins = _plugins()

    assert plugins["target-clevertap"]["config"]["mappings_file"] == (
        "${MELTANO_PROJECT_ROOT}/transforms/salesforce_to_clevertap.yml"
    )
    assert plugins["target-salesforce"]["config"]["mappings_file"] == (
        "${MELTANO_PROJECT_ROOT}/transforms/clevertap_to_salesforce.yml"
    )
