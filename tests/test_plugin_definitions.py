"""Each plugin folder's meltano-plugin.yml mirrors --about and works in Meltano."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import meltano_settings
from tests.plugin_files import (
    PLUGINS,
    definition_entry,
    definition_file,
    write_scratch_project,
)

REPO = Path(__file__).resolve().parents[1]
MELTANO = REPO / ".venv-meltano" / "bin" / "meltano"
# JSON Schema type of a setting -> its Meltano kind (strings may also be dates).
KINDS = {
    "integer": {"integer"},
    "number": {"decimal"},
    "boolean": {"boolean"},
    "array": {"array"},
    "object": {"object"},
    "string": {"string", "date_iso8601"},
}
REGENERATE = "run: .venv/bin/python tests/e2e/meltano_settings.py --write"
# Keys meltano.yml adds after a local plugin's generated entry: this project's own.
PROJECT_KEYS = {"config", "select"}
# A value per required setting, for the scratch project's environment.
REQUIRED_VALUES = {
    "account_id": "SCRATCH-ACCOUNT",
    "passcode": "scratch-passcode",
    "start_date": "2024-01-01T00:00:00Z",
}


@functools.cache
def _about(plugin: str) -> dict[str, Any]:
    return dict(meltano_settings.about(plugin))


@pytest.mark.parametrize("plugin", PLUGINS)
def test_definition_file_is_what_the_generator_builds_from_about(plugin: str) -> None:
    expected = meltano_settings.definition_text(plugin)

    assert definition_file(plugin).read_text() == expected, REGENERATE


@pytest.mark.parametrize("plugin", PLUGINS)
def test_readme_section_shows_the_definition_file_verbatim(plugin: str) -> None:
    readme = (REPO / plugin / "README.md").read_text()
    section = readme.partition("\n## Use in your own Meltano project\n")[2]
    block = re.search(
        r"<!-- BEGIN meltano-plugin\.yml -->\n```yaml\n(.*?)```\n"
        r"<!-- END meltano-plugin\.yml -->",
        section.partition("\n## ")[0],
        re.DOTALL,
    )

    assert block is not None, "the section lacks the marked yaml block"
    assert block.group(1) == definition_file(plugin).read_text(), REGENERATE


@pytest.mark.parametrize("plugin", PLUGINS)
def test_definition_installs_the_plugin_folder_from_git(plugin: str) -> None:
    kind, entry = definition_entry(plugin)
    project = tomllib.loads((REPO / plugin / "pyproject.toml").read_text())["project"]

    assert kind == ("extractors" if plugin.startswith("tap-") else "loaders")
    assert entry["name"] == plugin
    assert entry["pip_url"] == (
        f"git+https://github.com/OWNER/REPO.git@v{project['version']}"
        f"#subdirectory={plugin}"
    )
    assert entry["executable"] == plugin
    assert plugin in project["scripts"]
    assert entry["variant"] == "clevertap-salesforce"


@pytest.mark.parametrize("plugin", PLUGINS)
def test_meltano_yml_runs_the_definition_file_text_with_a_local_pip_url(
    plugin: str,
) -> None:
    generator = meltano_settings
    lines = (REPO / "meltano.yml").read_text().splitlines()
    begin = lines.index(generator.local_begin(plugin))
    end = lines.index(generator.local_end(plugin))
    expected = generator.local_entry_lines(plugin, definition_file(plugin).read_text())

    assert lines[begin : end + 1] == expected, REGENERATE
    published = definition_file(plugin).read_text().splitlines()
    changed = sorted(set(expected[1:-1]) - set(published))
    assert changed == [f"    pip_url: -e ./{plugin}"]


@pytest.mark.parametrize("plugin", PLUGINS)
def test_meltano_yml_entry_is_the_definition_plus_project_keys(plugin: str) -> None:
    kind, definition = definition_entry(plugin)
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    [entry] = [e for e in project["plugins"][kind] if e["name"] == plugin]

    assert set(entry) - set(definition) <= PROJECT_KEYS
    assert {k: v for k, v in entry.items() if k not in PROJECT_KEYS} == {
        **definition,
        "pip_url": f"-e ./{plugin}",
    }


def test_target_salesforce_namespace_differs_from_the_hub_plugin() -> None:
    _, entry = definition_entry("target-salesforce")

    assert entry["namespace"] == "target_salesforce_clevertap"


@pytest.mark.parametrize("plugin", PLUGINS)
def test_definition_capabilities_and_settings_mirror_about(plugin: str) -> None:
    about = _about(plugin)
    properties = about["settings"]["properties"]
    kind, entry = definition_entry(plugin)
    settings = {s["name"]: s for s in entry["settings"]}

    known = meltano_settings.MELTANO_CAPABILITIES[kind]
    assert entry["capabilities"] == [c for c in about["capabilities"] if c in known]
    assert list(settings) == list(properties)
    for name, spec in properties.items():
        setting = settings[name]
        assert setting.get("sensitive", False) == bool(spec.get("secret")), name
        assert setting.get("value") == spec.get("default"), name
        assert setting["label"], name
        declared = spec.get("type") or "string"
        types = [declared] if isinstance(declared, str) else declared
        types = [t for t in types if t != "null"]
        if spec.get("enum"):
            assert setting["kind"] == "options", name
            assert [o["value"] for o in setting["options"]] == [
                v for v in spec["enum"] if v is not None
            ], name
        else:
            assert setting["kind"] in KINDS[types[0]], name
    groups = meltano_settings.settings_groups(plugin, about["settings"])
    assert entry.get("settings_group_validation", []) == groups


def _meltano(root: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(MELTANO), *args],
        cwd=root,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not MELTANO.exists(), reason="no .venv-meltano (make install)")
@pytest.mark.parametrize("plugin", PLUGINS)
def test_scratch_meltano_project_accepts_the_pasted_definition(
    plugin: str, tmp_path: Path
) -> None:
    write_scratch_project(tmp_path, lambda plugin: f"-e {REPO / plugin}")
    about = _about(plugin)["settings"]
    secrets = {k for k, v in about["properties"].items() if v.get("secret")}
    required = about.get("required") or []
    prefix = plugin.upper().replace("-", "_")
    env = {f"{prefix}_{name.upper()}": REQUIRED_VALUES[name] for name in required}
    if plugin == "target-salesforce":
        env[f"{prefix}_CLIENT_SECRET"] = "scratch-client-secret"

    listing = _meltano(tmp_path, env, "config", "list", plugin, "--all")
    printed = json.loads(_meltano(tmp_path, env, "config", "print", plugin))

    listed = dict(
        re.findall(
            r"^(\w+) (?:\(required by [^)]*\) )?\[env: (\w+)[,\]]",
            listing,
            re.MULTILINE,
        )
    )
    # Meltano 4.4 lists the Hub-only keys (keywords, maintenance_status, domain_url)
    # as plugin extras, `_keywords` etc.; they never reach the plugin's config
    extras = {name for name in listed if name.startswith("_")}
    assert extras == {"_keywords", "_maintenance_status", "_domain_url"}
    listed = {name: var for name, var in listed.items() if name not in extras}
    assert sorted(listed) == sorted(about["properties"])
    assert all(var == f"{prefix}_{name.upper()}" for name, var in listed.items())
    if required:
        assert f"Required settings: {', '.join(sorted(required))}" in listing
    for name in secrets & {n.removeprefix(f"{prefix}_").lower() for n in env}:
        redacted = rf"^{name} .*current value: \(redacted\)"
        assert re.search(redacted, listing, re.MULTILINE)
        assert env[f"{prefix}_{name.upper()}"] not in listing
        assert printed[name] == "*****"
    defaults = {
        k: v["default"] for k, v in about["properties"].items() if "default" in v
    }
    assert {k: printed[k] for k in defaults} == defaults
    for name in set(required) - secrets:
        assert printed[name] == REQUIRED_VALUES[name]
