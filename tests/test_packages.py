"""Every plugin installs, imports and answers `--about`."""

from __future__ import annotations

import json
import subprocess
import sys

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
