"""The three plugins' meltano-plugin.yml files, for the definition tests."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parents[1]
PLUGINS = ("tap-clevertap", "target-clevertap", "target-salesforce")


def definition_file(plugin: str) -> Path:
    """The plugin's meltano-plugin.yml."""
    return REPO / plugin / "meltano-plugin.yml"


def definition_entry(plugin: str) -> tuple[str, dict[str, Any]]:
    """The plugin type (extractors/loaders) and the single entry of its file."""
    plugins = yaml.safe_load(definition_file(plugin).read_text())["plugins"]
    assert len(plugins) == 1
    [(kind, entries)] = plugins.items()
    assert len(entries) == 1
    return kind, dict(entries[0])


def write_scratch_project(root: Path, pip_url: Callable[[str], str]) -> None:
    """`root/meltano.yml`: a new project pasting the three definitions.

    Args:
        root: the project folder.
        pip_url: what each plugin installs from (given the plugin's name).
    """
    plugins: dict[str, list[dict[str, Any]]] = {}
    for plugin in PLUGINS:
        kind, definition = definition_entry(plugin)
        definition["pip_url"] = pip_url(plugin)
        plugins.setdefault(kind, []).append(definition)
    project = {
        "project_id": str(uuid.uuid4()),
        "send_anonymous_usage_stats": False,
        "plugins": plugins,
    }
    (root / "meltano.yml").write_text(yaml.safe_dump(project, sort_keys=False))
