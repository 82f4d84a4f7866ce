"""The README settings table is the one `--about --format=markdown` prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from target_clevertap import readme

README = Path(__file__).resolve().parents[2] / "target-clevertap" / "README.md"


def test_readme_settings_table_matches_about_output() -> None:
    about = subprocess.run(
        [sys.executable, "-m", "target_clevertap", "--about", "--format=markdown"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    section = about.split("## Settings", 1)[1]
    table = [line for line in section.splitlines() if line.startswith("|")]
    text = README.read_text(encoding="utf-8")
    block = text.split(readme.BEGIN, 1)[1].split(readme.END, 1)[0]
    assert block.strip().splitlines() == table, (
        "README settings table drifted: run `python -m target_clevertap.readme`"
    )
    assert readme.main(["--check", "--readme", str(README)]) == 0


def test_readme_check_detects_drift(tmp_path: Path) -> None:
    stale = tmp_path / "README.md"
    stale.write_text(f"x\n{readme.BEGIN}\n| old |\n{readme.END}\n", encoding="utf-8")
    assert readme.main(["--check", "--readme", str(stale)]) == 1
    assert readme.main(["--readme", str(stale)]) == 0
    assert "| passcode | True |" in stale.read_text(encoding="utf-8")


def test_about_output_never_contains_the_passcode(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"account_id": "A", "passcode": "SUPER-SECRET-XYZ"}')
    result = subprocess.run(
        [sys.executable, "-m", "target_clevertap", "--config", str(config), "--about"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "passcode" in result.stdout
    assert "SUPER-SECRET-XYZ" not in result.stdout + result.stderr
