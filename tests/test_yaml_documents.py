"""Every YAML document of the project loads without a repeated key.

PyYAML keeps the last of two equal keys silently, while Meltano (ruamel.yaml) refuses
the whole file; a merge that leaves two `commands:` blocks must fail here first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    [
        ROOT / "meltano.yml",
        *ROOT.glob("*/meltano-plugin.yml"),
        *ROOT.glob("transforms/*.yml"),
    ]
)


MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key repeated in one mapping."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:  # `<<: *anchor` may be overridden on purpose
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            msg = f"key {key!r} repeated at line {key_node.start_mark.line + 1}"
            raise yaml.constructor.ConstructorError(None, None, msg)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping,
)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_document_has_no_repeated_key(path: Path) -> None:
    yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def test_a_repeated_key_is_refused() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="'commands' repeated"):
        yaml.load("a:\n  commands: 1\n  commands: 2\n", Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
