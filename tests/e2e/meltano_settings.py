"""Generate the local plugins' Meltano definitions from their --about.

Usage (from the repository root):
    .venv/bin/python tests/e2e/meltano_settings.py          # list what is out of date
    .venv/bin/python tests/e2e/meltano_settings.py --write  # rewrite it

Each plugin folder's `meltano-plugin.yml` is the entry another Meltano project
pastes into its own meltano.yml to install the plugin from this repository's git
URL; the plugin README shows it verbatim. This project's meltano.yml carries the
same entry lines between `# BEGIN <plugin>/meltano-plugin.yml` and
`# END <plugin>/meltano-plugin.yml` comments, with one difference: `pip_url`
installs the plugin folder of this checkout (`-e ./<plugin>`). Meltano 4.4 cannot
override one key of a plugin defined in an `include_paths` file (a second entry
with the same name replaces the first instead of merging with it), so the lines
are generated rather than included. The project's own keys (`config`, `select`)
follow the END comment; everything outside the markers stays as it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
LOCAL_PLUGINS = ("tap-clevertap", "target-clevertap", "target-salesforce")
_KINDS = {
    "string": "string",
    "integer": "integer",
    "boolean": "boolean",
    "number": "decimal",
    "array": "array",
    "object": "object",
}
_UPPER = {"id", "url", "api", "sf", "ca"}

DEFINITION_FILE = "meltano-plugin.yml"
# Placeholder repository: whoever publishes this repository replaces OWNER/REPO
# (and the tag) with their own; the README says so next to the snippet.
PIP_URL = "git+https://github.com/OWNER/REPO.git@v{version}#subdirectory={plugin}"
# This project's meltano.yml runs the same definitions, installed from the checkout.
LOCAL_PIP_URL = "-e ./{plugin}"
LOCAL_NOTE = "installed from this checkout (generated)"
REWRITE = ".venv/bin/python tests/e2e/meltano_settings.py --write"
# Singer SDK capability names (from --about) -> Meltano capability names. They are
# spelled the same; an unknown one fails the generator instead of being dropped.
_CAPABILITIES = {
    name: name
    for name in (
        "about",
        "activate-version",
        "batch",
        "catalog",
        "discover",
        "log-based",
        "properties",
        "schema-flattening",
        "state",
        "stream-maps",
        "structured-logging",
        "test",
        "validate-records",
    )
}
# Capability names Meltano knows per plugin type (meltano.schema.json in Meltano
# 4.4.1, `$defs.plugins.<type>.capabilities`; the same lists as the "Plugin
# Definition Syntax" reference). SDK capabilities outside them (validate-records)
# are left out of the definitions; tests/test_plugin_definitions.py checks these
# lists against the installed Meltano schema.
MELTANO_CAPABILITIES = {
    "extractors": (
        "properties",
        "catalog",
        "discover",
        "state",
        "about",
        "stream-maps",
        "activate-version",
        "batch",
        "test",
        "log-based",
        "schema-flattening",
        "structured-logging",
    ),
    "loaders": (
        "about",
        "stream-maps",
        "activate-version",
        "batch",
        "soft-delete",
        "hard-delete",
        "datatype-failsafe",
        "schema-flattening",
        "structured-logging",
    ),
}
# What a Meltano Hub entry shows besides --about: the product, its site, search
# keywords and how maintained the variant is (Hub's maintenance_status values:
# active, beta, development, inactive, deprecated, unknown). repo and docs use the
# same OWNER/REPO placeholder as pip_url.
REPO_URL = "https://github.com/OWNER/REPO"
HUB = {
    "tap-clevertap": {
        "label": "CleverTap",
        "description": "Customer engagement and retention platform",
        "domain_url": "https://clevertap.com",
        "keywords": ["api", "meltano_sdk", "clevertap", "engagement"],
    },
    "target-clevertap": {
        "label": "CleverTap",
        "description": "Customer engagement and retention platform",
        "domain_url": "https://clevertap.com",
        "keywords": ["api", "meltano_sdk", "clevertap", "reverse_etl"],
    },
    "target-salesforce": {
        "label": "Salesforce",
        "description": "Customer-relationship management & customer success platform",
        "domain_url": "https://www.salesforce.com",
        "keywords": ["api", "meltano_sdk", "salesforce", "crm", "reverse_etl"],
    },
}
MAINTENANCE_STATUS = "beta"
# Settings groups where the plugin has no required settings but alternatives:
# target-salesforce logs in with whichever flow is configured (the settings
# target_salesforce.auth.resolve_flow looks for, one group per flow).
SETTINGS_GROUPS = {
    "target-salesforce": [
        ["access_token", "instance_url"],
        ["client_id", "private_key", "username"],
        ["client_id", "private_key_path", "username"],
        ["client_id", "refresh_token"],
        ["password", "username"],
        ["client_id", "client_secret", "domain"],
    ],
}
# Plugin commands, the same for the three plugins (each CLI has --preflight). With
# `--config ENV` the Singer SDK reads the settings from the <PLUGIN>_<SETTING>
# environment variables Meltano sets for the plugin.
COMMANDS: dict[str, dict[str, str]] = {
    "preflight": {
        "args": "--config ENV --preflight",
        "description": "Check the configuration against the live API (writes "
        "nothing); one PASS/FAIL line per check, exit 1 on a failure.",
    }
}
# Commands only one plugin has, added to the common ones.
PLUGIN_COMMANDS: dict[str, dict[str, dict[str, str]]] = {
    "target-clevertap": {
        "rebuild-ledger": {
            "executable": "target-clevertap-rebuild-ledger",
            "args": "--config ENV",
            "description": "Rebuild the event ledger (duplicate protection) from "
            "CleverTap's export after the state store was lost; add --from "
            "YYYY-MM-DD --to YYYY-MM-DD [--event NAME].",
        }
    }
}
# Namespaces match meltano.yml; target-salesforce's differs from the Hub's variants.
_NAMESPACES = {"target-salesforce": "target_salesforce_clevertap"}
VARIANT = "clevertap-salesforce"
# The plugin README shows the definition between these markers.
README_BEGIN = "<!-- BEGIN meltano-plugin.yml -->"
README_END = "<!-- END meltano-plugin.yml -->"


def about(plugin: str) -> dict[str, Any]:
    """The plugin's `--about` JSON, from the development venv."""
    out = subprocess.run(
        [sys.executable, "-m", plugin.replace("-", "_"), "--about", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return dict(json.loads(out))


def _kind(spec: dict[str, Any]) -> str:
    types = spec.get("type") or []
    if isinstance(types, str):
        types = [types]
    if not types and "anyOf" in spec:
        types = [t["type"] for t in spec["anyOf"] if isinstance(t.get("type"), str)]
    types = [t for t in types if t != "null"]
    if spec.get("enum"):
        return "options"
    if types and types[0] == "string" and spec.get("format") in {"date-time", "date"}:
        return "date_iso8601"
    return _KINDS.get(types[0], "string") if types else "string"


def _label(name: str) -> str:
    return " ".join(
        w.upper() if w in _UPPER else w.capitalize() for w in name.split("_")
    )


def _setting(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    setting: dict[str, Any] = {
        "name": name,
        "kind": _kind(spec),
        "label": spec.get("title") or _label(name),
    }
    description = " ".join(str(spec.get("description") or "").split())
    if description:
        setting["description"] = description
    options = [v for v in spec.get("enum") or [] if v is not None]
    if options:
        setting["options"] = [{"label": str(v), "value": v} for v in options]
    if spec.get("default") is not None:
        setting["value"] = spec["default"]
    if spec.get("secret") or spec.get("writeOnly"):
        setting["sensitive"] = True
    return setting


def plugin_definition(plugin: str) -> dict[str, Any]:
    """One plugin's Meltano definition (a `plugins:` entry), built from --about."""
    info = about(plugin)
    settings = info["settings"]
    hub = HUB[plugin]
    known = MELTANO_CAPABILITIES[plugin_type(plugin)]
    definition: dict[str, Any] = {
        "name": plugin,
        "namespace": _NAMESPACES.get(plugin, plugin.replace("-", "_")),
        "variant": VARIANT,
        "label": hub["label"],
        "description": hub["description"],
        "repo": REPO_URL,
        "docs": f"{REPO_URL}/blob/main/{plugin}/README.md",
        "pip_url": PIP_URL.format(version=info["version"], plugin=plugin),
        "executable": plugin,
        "capabilities": [
            _CAPABILITIES[c] for c in info["capabilities"] if _CAPABILITIES[c] in known
        ],
        "commands": {**COMMANDS, **PLUGIN_COMMANDS.get(plugin, {})},
        "settings": [
            _setting(name, spec) for name, spec in settings["properties"].items()
        ],
    }
    groups = settings_groups(plugin, settings)
    if groups:
        definition["settings_group_validation"] = groups
    definition.update(
        keywords=hub["keywords"],
        maintenance_status=MAINTENANCE_STATUS,
        domain_url=hub["domain_url"],
    )
    return definition


def settings_groups(plugin: str, settings: dict[str, Any]) -> list[list[str]]:
    """The plugin's settings groups: its required settings, or SETTINGS_GROUPS."""
    required = sorted(settings.get("required") or [])
    return SETTINGS_GROUPS.get(plugin) or ([required] if required else [])


def plugin_type(plugin: str) -> str:
    """`extractors` for taps, `loaders` for targets."""
    return "extractors" if plugin.startswith("tap-") else "loaders"


def definition_text(plugin: str) -> str:
    """The generated content of `<plugin>/meltano-plugin.yml`."""
    body = yaml.safe_dump(
        {"plugins": {plugin_type(plugin): [plugin_definition(plugin)]}},
        sort_keys=False,
        width=88,
        allow_unicode=True,
    )
    header = (
        f"# Generated from `{plugin} --about` by tests/e2e/meltano_settings.py"
        " --definitions --write;\n"
        "# do not edit by hand. Paste the entry under `plugins:` in your meltano.yml"
        " and\n"
        "# replace OWNER/REPO (and the tag) in pip_url, repo and docs with the"
        " repository\n# you install from.\n"
    )
    return header + body


def readme_with_definition(readme: str, definition: str) -> str:
    """README text whose block between the markers shows `definition` as YAML."""
    head, found, rest = readme.partition(README_BEGIN + "\n")
    _, found_end, tail = rest.partition(README_END)
    if not (found and found_end):
        msg = f"README lacks the {README_BEGIN} ... {README_END} markers"
        raise ValueError(msg)
    block = f"```yaml\n{definition}```\n"
    return f"{head}{README_BEGIN}\n{block}{README_END}{tail}"


def definitions_main(*, write: bool) -> int:
    """Print drift in, or rewrite, each plugin's meltano-plugin.yml and README block."""
    stale = []
    for plugin in LOCAL_PLUGINS:
        path = REPO / plugin / DEFINITION_FILE
        readme = REPO / plugin / "README.md"
        text = definition_text(plugin)
        updated = {path: text, readme: readme_with_definition(readme.read_text(), text)}
        for target, content in updated.items():
            if target.exists() and target.read_text() == content:
                continue
            if write:
                target.write_text(content)
            else:
                stale.append(str(target.relative_to(REPO)))
    if stale:
        sys.stdout.write(
            f"out of date: {', '.join(stale)}; rerun with --definitions --write\n"
        )
        return 1
    return 0


def local_entry_lines(plugin: str, definition: str | None = None) -> list[str]:
    """meltano.yml's entry for `plugin`: the definition's lines, installed locally.

    The lines are `<plugin>/meltano-plugin.yml`'s entry verbatim (the file indents
    it as meltano.yml does), between the BEGIN/END marker comments, except for
    `pip_url`, which installs this checkout's folder in editable mode.
    """
    text = definition_text(plugin) if definition is None else definition
    lines = text.splitlines()
    entry = lines[lines.index(f"  - name: {plugin}") :]
    published = f"    pip_url: {PIP_URL.format(version=_version(entry), plugin=plugin)}"
    if published not in entry:
        msg = f"{plugin}'s definition has no {published.strip()!r} line"
        raise ValueError(msg)
    local = LOCAL_PIP_URL.format(plugin=plugin)
    entry[entry.index(published)] = f"    pip_url: {local}"
    return [local_begin(plugin), *entry, local_end(plugin)]


def _version(entry: list[str]) -> str:
    line = next(x for x in entry if x.startswith("    pip_url: "))
    return line.partition("@v")[2].partition("#")[0]


def local_begin(plugin: str) -> str:
    """The comment line that opens `plugin`'s generated entry in meltano.yml."""
    return f"  # BEGIN {plugin}/{DEFINITION_FILE}, {LOCAL_NOTE}"


def local_end(plugin: str) -> str:
    """The comment line that closes `plugin`'s generated entry in meltano.yml."""
    return f"    # END {plugin}/{DEFINITION_FILE}; this project's own keys follow"


def regenerate(text: str) -> str:
    """meltano.yml text with the local plugins' generated entries rewritten."""
    lines = text.splitlines()
    for plugin in LOCAL_PLUGINS:
        begin, end = lines.index(local_begin(plugin)), lines.index(local_end(plugin))
        lines[begin : end + 1] = local_entry_lines(plugin)
    return "\n".join(lines) + "\n"


def meltano_yml_main(*, write: bool) -> int:
    """Print drift in, or rewrite, meltano.yml's generated plugin entries."""
    path = REPO / "meltano.yml"
    current = path.read_text()
    updated = regenerate(current)
    if updated == current:
        return 0
    if write:
        path.write_text(updated)
        return 0
    sys.stdout.write(f"out of date: meltano.yml; rerun with {REWRITE}\n")
    return 1


def main() -> int:
    """Check (exit 1 on drift) or, with --write, rewrite every generated file.

    `--definitions` is accepted for older instructions: both kinds of file are
    always checked or written together.
    """
    write = "--write" in sys.argv[1:]
    return definitions_main(write=write) | meltano_yml_main(write=write)


if __name__ == "__main__":
    sys.exit(main())
