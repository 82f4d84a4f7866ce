"""YAML that remembers lines, so a mapping document's errors can name their line.

Shared text: target-clevertap and target-salesforce each carry this module,
byte-identical (tests/test_packages.py checks it), so that each installs on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pathlib import Path


class YamlFileError(ValueError):
    """A file that cannot be read or is not YAML; the message names it and the line."""


class LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings remember the line of each key."""


class LineDict(dict[str, Any]):
    """A YAML mapping with `line` (its own) and `lines` (each key's), 1-based."""

    line: int
    lines: dict[str, int]


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)  # resolve `<<:` merge keys first
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[str(key)] = key_node.start_mark.line + 1
    return result


LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def load(text: str) -> object:
    """Parse YAML, keeping the line of each mapping key (safe: no object tags).

    Args:
        text: the YAML text.

    Returns:
        The document; its mappings are `LineDict`s.
    """
    return yaml.load(text, Loader=LineLoader)  # noqa: S506 - a SafeLoader subclass


def read(path: Path, label: str) -> object:
    """Read and parse a YAML file, keeping the line of each mapping key.

    Args:
        path: the file.
        label: how messages name the file (e.g. `mappings_file <path>`).

    Returns:
        The document; its mappings are `LineDict`s.

    Raises:
        YamlFileError: the file cannot be read, or is not YAML (with its line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{label}: cannot read it ({exc.strerror})"
        raise YamlFileError(msg) from exc
    try:
        return load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        msg = f"{label}{where}: {problem}"
        raise YamlFileError(msg) from exc
