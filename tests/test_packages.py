"""Every plugin installs, imports and answers `--about`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = ["target-clevertap", "tap-clevertap", "target-salesforce"]


@pytest.mark.parametrize("plugin", PLUGINS)
def test_plugin_about_lists_its_name_and_settings(plugin: str) -> None:
    module = plugin.replace("-", "_")
    out = subprocess.run(
        [sys.executable, "-m", module, "--about", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    about = json.loads(out)
    assert about["name"] == plugin
    assert about["settings"]["properties"]


def test_both_targets_carry_the_same_expression_language_module() -> None:
    # One language, one text: each target ships its own copy so that it installs
    # on its own (see the module docstring); the copies must not drift.
    root = Path(__file__).resolve().parents[1]
    clevertap = root / "target-clevertap" / "target_clevertap" / "exprlang.py"
    salesforce = root / "target-salesforce" / "target_salesforce" / "exprlang.py"
    assert clevertap.read_bytes() == salesforce.read_bytes()


def test_both_targets_carry_the_same_stopping_module() -> None:
    # How a signal or an error ends a target's reading is one text in both
    # targets; each ships its own copy so that it installs on its own.
    root = Path(__file__).resolve().parents[1]
    clevertap = root / "target-clevertap" / "target_clevertap" / "stopping.py"
    salesforce = root / "target-salesforce" / "target_salesforce" / "stopping.py"
    assert clevertap.read_bytes() == salesforce.read_bytes()


def test_both_targets_carry_the_same_yaml_lines_module() -> None:
    # Reading a mapping document with the line of each key is one text in both
    # targets; each ships its own copy so that it installs on its own.
    root = Path(__file__).resolve().parents[1]
    clevertap = root / "target-clevertap" / "target_clevertap" / "yaml_lines.py"
    salesforce = root / "target-salesforce" / "target_salesforce" / "yaml_lines.py"
    assert clevertap.read_bytes() == salesforce.read_bytes()


def test_every_plugin_carries_the_same_preflight_output_module() -> None:
    # The `--preflight` result lines, report and option are one text in the three
    # plugins; each ships its own copy so that it installs on its own.
    root = Path(__file__).resolve().parents[1]
    copies = [
        root / plugin / plugin.replace("-", "_") / "preflight_cli.py"
        for plugin in PLUGINS
    ]
    assert len({path.read_bytes() for path in copies}) == 1
