"""docs/architecture.md names only modules that exist, and every plugin module."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGES = (
    ROOT / "target-clevertap" / "target_clevertap",
    ROOT / "tap-clevertap" / "tap_clevertap",
    ROOT / "target-salesforce" / "target_salesforce",
)
# modules every package has that the page need not name
ENTRY_POINTS = {"__init__.py", "__main__.py", "readme.py"}


def _named() -> set[str]:
    return set(re.findall(r"`([a-z_]+\.py)`", DOC.read_text(encoding="utf-8")))


def test_architecture_page_names_only_existing_modules() -> None:
    modules = {p.name for package in PACKAGES for p in package.glob("*.py")}
    assert _named() - modules == set()


def test_architecture_page_or_a_readme_names_every_plugin_module() -> None:
    readmes = " ".join(
        (package.parent / "README.md").read_text(encoding="utf-8")
        for package in PACKAGES
    )
    for package in PACKAGES:
        for module in package.glob("*.py"):
            if module.name in ENTRY_POINTS:
                continue
            assert module.name in _named() or f"`{module.name}`" in readmes, (
                f"{package.name}/{module.name} is in neither docs/architecture.md "
                "nor its README's code layout"
            )
