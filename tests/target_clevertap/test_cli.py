"""The `target-clevertap` command: exit codes, STATE on stdout, clear fatal errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "target_clevertap"


def _cli(
    config: dict[str, Any], tmp_path: Path, fixture: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "target_clevertap",
            "--config",
            str(path),
            "--input",
            str(FIXTURES / fixture),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_run_emits_final_state_on_stdout(ct_config, tmp_path, clevertap_emulator):
    result = _cli(ct_config, tmp_path, "contacts_and_tasks.singer")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"bookmarks": {"Task": {"n": 3}}}
    ]
    assert "Summary for stream Task" in result.stderr
    assert len(clevertap_emulator.events()) == 3


def test_cli_fatal_error_exits_1_with_a_clear_message(ct_config, tmp_path):
    config = {**ct_config, "passcode": "NOT-THE-PASSCODE-42"}
    result = _cli(config, tmp_path, "contacts_five.singer")
    assert result.returncode == 1
    assert (
        "target-clevertap stopped: CleverTap refused the credentials" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "NOT-THE-PASSCODE-42" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_cli_bad_mapping_is_a_config_error_naming_the_line(ct_config, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("Contact:\n  profile:\n    identity: {feild: Email}\n")
    result = _cli(
        {**ct_config, "mappings_file": str(bad)}, tmp_path, "contacts_five.singer"
    )
    assert result.returncode == 1
    assert "line 3" in result.stderr
    assert "unknown key 'feild'" in result.stderr


def test_cli_bad_input_line_is_one_clear_error(ct_config, tmp_path):
    result = _cli(ct_config, tmp_path, "not_json.singer")
    assert result.returncode == 1
    assert "target-clevertap stopped: Unable to parse line as JSON" in result.stderr
    assert "Traceback" not in result.stderr
