"""The installed CLI end to end: STATE on stdout, summary file, no secrets in logs."""

from __future__ import annotations

import json
from typing import Any


def test_cli_upsert_emits_state_and_private_summary(harness: Any) -> None:
    summary_path = harness.tmp_path / "summary.json"
    config = harness.config(summary_path=str(summary_path))
    result = harness.run_cli(config, harness.fixture("nps_invalid_score.singer"))
    assert result.returncode == 0, result.stderr
    assert [json.loads(x) for x in result.stdout.splitlines()] == [
        {"bookmarks": {"nps": {"ts": "2026-11-04T09:00:00Z"}}}
    ]
    assert "Run summary" in result.stderr
    assert harness.handle.access_token not in result.stderr
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["streams"][0]["rejected_by_code"] == {
        "FIELD_CUSTOM_VALIDATION_EXCEPTION": 1
    }
    assert summary_path.stat().st_mode & 0o777 == 0o600
    assert harness.rejects_path.stat().st_mode & 0o777 == 0o600


def test_cli_fatal_error_exits_non_zero_without_state(harness: Any) -> None:
    harness.handle.fault("request_limit", path="composite")
    result = harness.run_cli(
        harness.config(), harness.fixture("nps_upsert_create.singer")
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "REQUEST_LIMIT_EXCEEDED" in result.stderr
    assert harness.handle.access_token not in result.stderr
