"""README drift: its settings table is `target-salesforce --about --format=markdown`."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "target-salesforce" / "README.md"
START = "<!-- settings:start -->\n"
END = "<!-- settings:end -->"


@functools.cache
def settings_table() -> str:
    about = subprocess.run(
        [sys.executable, "-m", "target_salesforce", "--about", "--format=markdown"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    section = about.split("## Settings\n", 1)[1]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_readme_settings_table_matches_about_output() -> None:
    text = README.read_text(encoding="utf-8")
    current = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert current == settings_table(), (
        "README settings table is stale; regenerate it from "
        "`target-salesforce --about --format=markdown`"
    )


def test_about_output_shows_no_secret_defaults() -> None:
    table = settings_table()
    for name in ("client_secret", "private_key", "refresh_token", "password"):
        row = next(r for r in table.splitlines() if r.startswith(f"| {name} |"))
        assert "| None |" in row
