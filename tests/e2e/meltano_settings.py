"""Regenerate the `settings:` of the local plugins in meltano.yml from their --about.

Usage (from the repository root):
    .venv/bin/python tests/e2e/meltano_settings.py          # print what would change
    .venv/bin/python tests/e2e/meltano_settings.py --write  # rewrite meltano.yml

Only the `settings:` and `settings_group_validation:` blocks of tap-clevertap,
target-clevertap and target-salesforce are replaced; comments and everything else in
meltano.yml stay as they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def settings_block(plugin: str) -> list[str]:
    """The YAML lines (indented for a plugin entry) for one plugin's settings."""
    settings = about(plugin)["settings"]
    lines = ["    settings:"]
    for name, spec in settings["properties"].items():
        lines += [
            f"    - name: {name}",
            f"      kind: {_kind(spec)}",
            f"      label: {spec.get('title') or _label(name)}",
        ]
        options = [v for v in spec.get("enum") or [] if v is not None]
        if options:
            lines.append("      options:")
            lines += [
                f"      - {{label: {json.dumps(str(v))}, value: {json.dumps(v)}}}"
                for v in options
            ]
        description = " ".join(str(spec.get("description") or "").split())
        if description:
            lines.append(f"      description: {json.dumps(description)}")
        if spec.get("secret") or spec.get("writeOnly"):
            lines.append("      sensitive: true")
    required = sorted(settings.get("required") or [])
    if required:
        lines += ["    settings_group_validation:", f"    - {json.dumps(required)}"]
    return lines


def _block_end(lines: list[str], start: int) -> int:
    end = start + 1
    while end < len(lines):
        line = lines[end]
        if line.startswith(("    - ", "      ")) or not line.strip():
            end += 1
            continue
        if line.startswith("    settings_group_validation:"):
            end += 1
            continue
        break
    return end


def regenerate(text: str) -> str:
    """meltano.yml text with the local plugins' settings blocks regenerated."""
    lines = text.splitlines()
    for plugin in LOCAL_PLUGINS:
        entry = lines.index(f"  - name: {plugin}")
        start = next(
            i for i in range(entry + 1, len(lines)) if lines[i] == "    settings:"
        )
        lines[start : _block_end(lines, start)] = settings_block(plugin)
    return "\n".join(lines) + "\n"


def main() -> int:
    """Print or write the regenerated meltano.yml; exit 1 when it differs."""
    path = REPO / "meltano.yml"
    current = path.read_text()
    updated = regenerate(current)
    if "--write" in sys.argv[1:]:
        path.write_text(updated)
        return 0
    if updated != current:
        sys.stdout.write("meltano.yml settings are out of date; rerun with --write\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
