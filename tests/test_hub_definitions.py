"""Each meltano-plugin.yml is ready for Meltano Hub, and installs and runs in Meltano.

Meltano Hub's own JSON schemas (the hub repository's schemas/plugin_definitions/)
could not be fetched here, so the Hub rules below are our own checker, written from
the facts of Meltano's "Plugin Definition Syntax" reference
(docs.meltano.com/reference/plugin-definition-syntax): the required keys, the
setting kinds, the maintenance_status values and the capabilities per plugin type
(those are tests/e2e/meltano_settings.py's MELTANO_CAPABILITIES, from the same page).
On top of that each definition is validated against the JSON schema Meltano itself
publishes for meltano.yml plugin entries (meltano/schemas/meltano.schema.json in the
installed Meltano 4.4.1), minus the keys only the Hub reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.e2e import meltano_settings
from tests.plugin_files import PLUGINS, definition_entry, write_scratch_project

REPO = Path(__file__).resolve().parents[1]
MELTANO = REPO / ".venv-meltano" / "bin" / "meltano"
MELTANO_SCHEMA = next(
    iter(
        (REPO / ".venv-meltano").glob(
            "lib/python*/site-packages/meltano/schemas/meltano.schema.json"
        )
    ),
    None,
)

# Facts from the Plugin Definition Syntax reference (see the module docstring).
HUB_REQUIRED = {
    "name": str,
    "namespace": str,
    "variant": str,
    "label": str,
    "description": str,
    "repo": str,
    "docs": str,
    "pip_url": str,
    "executable": str,
    "capabilities": list,
    "settings": list,
    "settings_group_validation": list,
    "keywords": list,
    "maintenance_status": str,
    "domain_url": str,
}
HUB_OPTIONAL = {"logo_url": str, "ext_repo": str, "python": str}
HUB_ONLY_KEYS = {"keywords", "maintenance_status", "domain_url"}
MAINTENANCE_STATUSES = {
    "active",
    "beta",
    "development",
    "inactive",
    "deprecated",
    "unknown",
}
SETTING_KINDS = {
    "string",
    "integer",
    "boolean",
    "decimal",
    "date_iso8601",
    "email",
    "file",
    "array",
    "object",
    "options",
}


def hub_problems(kind: str, entry: dict[str, Any]) -> list[str]:
    """What keeps ENTRY (a `kind` plugin definition) from being a Hub entry."""
    problems = [
        f"{key}: missing or not a {expected.__name__}"
        for key, expected in HUB_REQUIRED.items()
        if not isinstance(entry.get(key), expected) or not entry.get(key)
    ]
    problems += [
        f"{key}: not a {expected.__name__}"
        for key, expected in HUB_OPTIONAL.items()
        if key in entry and not isinstance(entry[key], expected)
    ]
    for key in ("repo", "docs", "domain_url"):
        if not str(entry.get(key, "")).startswith("https://"):
            problems.append(f"{key}: not an https URL")
    if entry.get("maintenance_status") not in MAINTENANCE_STATUSES:
        problems.append("maintenance_status: not a Hub status")
    if not all(isinstance(k, str) and k for k in entry.get("keywords") or []):
        problems.append("keywords: not a list of words")
    unknown = set(entry.get("capabilities") or []) - set(
        meltano_settings.MELTANO_CAPABILITIES[kind]
    )
    if unknown:
        problems.append(f"capabilities: not {kind} capabilities: {sorted(unknown)}")
    names = set()
    for setting in entry.get("settings") or []:
        names.add(setting.get("name"))
        problems += _setting_problems(setting)
    for group in entry.get("settings_group_validation") or []:
        if not group or not set(group) <= names:
            problems.append(f"settings_group_validation: {group} names no settings")
    return problems


def _setting_problems(setting: dict[str, Any]) -> list[str]:
    name = setting.get("name")
    problems = [
        f"settings[{name}].{key}: missing"
        for key in ("name", "label", "description")
        if not isinstance(setting.get(key), str) or not setting[key]
    ]
    if setting.get("kind") not in SETTING_KINDS:
        problems.append(f"settings[{name}].kind: {setting.get('kind')!r}")
    if "sensitive" in setting and not isinstance(setting["sensitive"], bool):
        problems.append(f"settings[{name}].sensitive: not a boolean")
    options = setting.get("options")
    if (setting.get("kind") == "options") != bool(options) or not all(
        {"label", "value"} <= set(o) for o in options or []
    ):
        problems.append(f"settings[{name}].options: do not match kind")
    return problems


@pytest.mark.parametrize("plugin", PLUGINS)
def test_definition_carries_what_a_hub_entry_needs(plugin: str) -> None:
    kind, entry = definition_entry(plugin)

    assert hub_problems(kind, entry) == []
    assert entry["variant"] == "clevertap-salesforce"
    assert entry["maintenance_status"] == "beta"


def test_hub_checker_reports_what_is_missing_or_wrong() -> None:
    kind, entry = definition_entry("tap-clevertap")
    del entry["keywords"]
    entry["maintenance_status"] = "stable"
    entry["capabilities"] = [*entry["capabilities"], "validate-records"]
    entry["settings"][0] = {**entry["settings"][0], "kind": "password"}
    entry["settings_group_validation"] = [["no_such_setting"]]

    problems = hub_problems(kind, entry)

    assert "keywords: missing or not a list" in problems
    assert "maintenance_status: not a Hub status" in problems
    assert any(p.startswith("capabilities:") for p in problems)
    assert any(p.endswith(".kind: 'password'") for p in problems)
    assert any(p.startswith("settings_group_validation:") for p in problems)


def test_every_sensitive_about_setting_is_sensitive_in_the_definition() -> None:
    for plugin in PLUGINS:
        about = meltano_settings.about(plugin)["settings"]["properties"]
        _, entry = definition_entry(plugin)
        sensitive = {s["name"] for s in entry["settings"] if s.get("sensitive")}
        assert sensitive == {n for n, s in about.items() if s.get("secret")}, plugin


@pytest.mark.skipif(MELTANO_SCHEMA is None, reason="no .venv-meltano (make install)")
def test_capability_lists_are_the_ones_meltano_publishes() -> None:
    assert MELTANO_SCHEMA is not None
    plugins = json.loads(MELTANO_SCHEMA.read_text())["$defs"]["plugins"]
    for kind in ("extractors", "loaders"):
        [published] = [
            part["properties"]["capabilities"]["items"]["enum"]
            for part in plugins[kind]["allOf"]
            if "capabilities" in part.get("properties", {})
        ]
        assert set(published) == set(meltano_settings.MELTANO_CAPABILITIES[kind])


@pytest.mark.skipif(MELTANO_SCHEMA is None, reason="no .venv-meltano (make install)")
@pytest.mark.parametrize("plugin", PLUGINS)
def test_definition_validates_against_meltanos_published_schema(plugin: str) -> None:
    assert MELTANO_SCHEMA is not None
    schema = json.loads(MELTANO_SCHEMA.read_text())
    kind, entry = definition_entry(plugin)
    project = {
        "plugins": {kind: [{k: v for k, v in entry.items() if k not in HUB_ONLY_KEYS}]}
    }

    jsonschema.Draft202012Validator(schema).validate(project)


# -- a scratch project installs each plugin from its folder and runs it -----------


def _run(root: Path, *args: str, timeout: float = 600) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {"HTTPS_PROXY", "HTTP_PROXY", "REQUESTS_CA_BUNDLE"}
        and not k.startswith(("TAP_", "TARGET_", "MELTANO_"))
    }
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    result = subprocess.run(
        [str(MELTANO), *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def scratch_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new Meltano project with the three definitions pasted, pip_url -> folders."""
    if not MELTANO.exists():
        pytest.skip("no .venv-meltano (make install)")
    root = tmp_path_factory.mktemp("hub-scratch")

    def copied_folder(plugin: str) -> str:
        # the folder instead of the git URL: a copy, so no build files land in it
        source = root / "src" / plugin
        shutil.copytree(
            REPO / plugin, source, ignore=shutil.ignore_patterns("*.egg-info", "build")
        )
        return str(source)

    write_scratch_project(root, copied_folder)
    _run(root, "install")
    return root


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("plugin", PLUGINS)
def test_scratch_project_installs_the_plugin_from_its_folder_and_runs_it(
    scratch_project: Path, plugin: str
) -> None:
    kind, entry = definition_entry(plugin)
    venv = scratch_project / ".meltano" / kind / plugin / "venv"

    about = json.loads(
        _run(scratch_project, "invoke", plugin, "--about", "--format=json")
    )

    assert about["name"] == plugin
    assert set(entry["capabilities"]) <= set(about["capabilities"])
    assert [s["name"] for s in entry["settings"]] == list(
        about["settings"]["properties"]
    )
    # installed from the folder, not editable: the package lives in the plugin venv
    assert not list(venv.glob("lib/python*/site-packages/__editable__*"))
