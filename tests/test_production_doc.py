"""docs/production.md names only commands, settings, files and schedules that exist.

Settings are checked against each plugin's `--about` (and meltano.yml for the
singer-io tap-salesforce), `<PLUGIN>_<SETTING>` variables against the same, Meltano
commands, jobs and schedules against meltano.yml, `.env` variables against
.env.example and meltano.yml, and paths against the repository.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import meltano_settings

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "production.md"
TEXT = DOC.read_text()
LOCAL = ("tap-clevertap", "target-clevertap", "target-salesforce")
# Backticked snake_case words that are not settings (none today).
NOT_SETTINGS: set[str] = set()


@functools.cache
def _about(plugin: str) -> dict[str, Any]:
    return meltano_settings.about(plugin)


@functools.cache
def _meltano() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "meltano.yml").read_text()))


def _plugins() -> dict[str, dict[str, Any]]:
    plugins = _meltano()["plugins"]
    return {p["name"]: p for kind in ("extractors", "loaders") for p in plugins[kind]}


def _settings(plugin: str) -> set[str]:
    if plugin in LOCAL:
        return set(_about(plugin)["settings"]["properties"])
    return {s["name"] for s in _plugins()[plugin].get("settings", [])}


def test_production_doc_is_linked_from_the_readme_top_section() -> None:
    readme = (REPO / "README.md").read_text()
    top = readme.split("\n## ", 1)[0]
    assert "(docs/production.md)" in top


def test_every_backticked_setting_is_a_plugin_setting() -> None:
    every = set().union(*(_settings(p) for p in _plugins()))
    named = set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`", TEXT)) - NOT_SETTINGS
    assert named
    assert named <= every, sorted(named - every)


def test_every_plugin_environment_variable_is_a_setting_of_that_plugin() -> None:
    found = re.findall(
        r"\b(TAP_SALESFORCE|TAP_CLEVERTAP|TARGET_CLEVERTAP|TARGET_SALESFORCE)_(_?[A-Z_]+)\b",
        TEXT,
    )
    assert found
    for prefix, rest in found:
        plugin = prefix.lower().replace("_", "-")
        if rest.startswith("_"):  # Meltano extras: TAP_SALESFORCE__SELECT
            assert rest == "_SELECT", rest
            assert "select" in _plugins()[plugin], plugin
            continue
        assert rest.lower() in _settings(plugin), f"{prefix}_{rest}"


def test_every_env_file_variable_is_in_env_example_and_meltano_yml() -> None:
    example = (REPO / ".env.example").read_text()
    meltano = (REPO / "meltano.yml").read_text()
    names = set(re.findall(r"`((?:SALESFORCE|CLEVERTAP)_[A-Z_]+)`", TEXT))
    assert names
    for name in names:
        assert f"\n{name}=" in example, name
        assert "${" + name + "}" in meltano, name


def test_every_meltano_invoke_run_and_schedule_exists() -> None:
    plugins = _plugins()
    invokes = re.findall(r"meltano --environment=prod invoke ([\w-]+):(\w+)", TEXT)
    assert {p for p, _ in invokes} == set(LOCAL)
    for plugin, command in invokes:
        assert command in plugins[plugin].get("commands", {}), (plugin, command)
    for tap, target in re.findall(
        r"meltano --environment=prod run ([\w-]+) ([\w-]+)", TEXT
    ):
        assert tap in plugins
        assert target in plugins
    schedules = {s["name"]: s["job"] for s in _meltano()["schedules"]}
    jobs = {j["name"] for j in _meltano()["jobs"]}
    for name in re.findall(r"schedule run ([\w-]+)", TEXT):
        assert name in schedules, name
    for name, job in re.findall(
        r"`([\w-]+-(?:hourly|daily|every-5-minutes))` \(job `([\w-]+)`\)", TEXT
    ):
        assert schedules.get(name) == job
        assert job in jobs
    assert "--environment=prod" in TEXT
    assert "prod" in {e["name"] for e in _meltano()["environments"]}


@pytest.mark.parametrize("plugin", LOCAL)
def test_the_preflight_flag_exists_on_every_plugin_cli(plugin: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", plugin.replace("-", "_"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "--preflight" in result.stdout
    assert (
        f"{plugin} --config config.json --preflight" in TEXT
        or plugin != "target-salesforce"
    )


def test_every_repository_path_and_salesforce_name_exists() -> None:
    paths = set(
        re.findall(r"`((?:transforms|salesforce-org|docs|output)/[\w./-]*)`", TEXT)
    )
    for path in paths:
        if path.startswith("output/"):
            continue  # written by the runs; checked as settings below
        assert (REPO / path).exists(), path
    config = {p["name"]: p.get("config", {}) for p in _plugins().values()}
    for path in re.findall(r"`(output/[\w./-]+)` \(`(\w+)`", TEXT):
        assert any(
            str(c.get(path[1], "")).endswith(path[0]) for c in config.values()
        ), path
    source = REPO / "salesforce-org" / "force-app" / "main" / "default"
    assert "--source-dir force-app" in TEXT
    assert (REPO / "salesforce-org" / "force-app").is_dir()
    for name in re.findall(r"--name (\w+)", TEXT):
        assert (source / "permissionsets" / f"{name}.permissionset-meta.xml").exists()
    for name in re.findall(r"--tests (\w+)", TEXT):
        assert (source / "classes" / f"{name}.cls").exists()
