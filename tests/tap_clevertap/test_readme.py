"""The README's settings block is what `tap-clevertap --about` prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "tap-clevertap" / "README.md"


def test_readme_settings_table_matches_about_output() -> None:
    about = subprocess.run(
        [sys.executable, "-m", "tap_clevertap", "--about", "--format=markdown"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    generated = about[about.index("## Capabilities") : about.index("A full list")]
    readme = README.read_text(encoding="utf-8")
    block = readme[
        readme.index("<!-- BEGIN ABOUT -->\n") + len("<!-- BEGIN ABOUT -->\n") : (
            readme.index("<!-- END ABOUT -->")
        )
    ]
    assert block.rstrip() == generated.rstrip(), (
        "README settings drifted; regenerate with "
        "`tap-clevertap --about --format=markdown`"
    )
    assert "| passcode | True |" in block


def test_readme_lists_every_static_stream() -> None:
    readme = README.read_text(encoding="utf-8")
    for stream in (
        "profiles",
        "campaigns",
        "campaign_reports",
        "message_reports",
        "event_counts",
        "event_trends",
        "event_schema",
        "user_properties",
    ):
        assert f"| `{stream}`" in readme
