"""Each stream's run summary is logged once, marked only when the run stopped first."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

# `audit_log` (no mapping: skipped) logs its summary when the input ends; the
# nps Bulk batch settles after that and one of its rows is refused (NPS 11 breaks
# the org's validation rule): with on_reject fail the run stops there
SKIPPED_THEN_REFUSED = "skipped_stream_then_nps_refused.singer"


def _summaries(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(label, stream) of every summary line logged, in order."""
    found = []
    for record in caplog.records:
        label, _, rest = record.getMessage().partition(": ")
        if label.startswith("Run summary"):
            found.append((label, json.loads(rest)["stream"]))
    return found


def test_a_summary_logged_before_an_end_of_input_error_is_not_logged_again(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    summary_path = harness.tmp_path / "summary.json"
    config = harness.config(
        bulk_threshold=0,
        bulk_jobs_in_flight=3,
        on_reject="fail",
        summary_path=str(summary_path),
    )
    run = harness.run(config, harness.fixture(SKIPPED_THEN_REFUSED))
    assert "on_reject is 'fail'" in str(run.error)
    assert run.states == []
    assert _summaries(caplog) == [
        ("Run summary", "audit_log"),
        ("Run summary (run stopped)", "nps"),
    ]
    written = json.loads(summary_path.read_text(encoding="utf-8"))
    assert written["stopped"] is True
    assert {s["stream"]: s["received"] for s in written["streams"]} == {
        "audit_log": 1,
        "nps": 3,
    }


def test_a_schema_change_mid_stream_logs_one_complete_summary(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # the SDK replaces the stream's sink when its schema changes and cleans up
    # both at the end of the input: the stream's summary is logged once, whole
    caplog.set_level(logging.INFO)
    run = harness.run(
        harness.config(), harness.fixture("nps_schema_changes_mid_stream.singer")
    )
    assert run.error is None
    assert run.states == [{"bookmarks": {"nps": {"n": 5}}}]
    assert _summaries(caplog) == [("Run summary", "nps")]
    assert (run.summary["nps"]["received"], run.summary["nps"]["succeeded"]) == (5, 5)
