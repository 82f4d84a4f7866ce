"""Fatal stops: a clear last line naming the cause, no traceback, no STATE past it.

A run that cannot go on (API limit used up, a Bulk job that failed, wrong
credentials, a looping export cursor) must end with a non-zero exit code and a
message an operator can act on, not a Python traceback. target-clevertap's fatal
stops (retries exhausted, events in doubt, HTTP 401) are checked in the fault matrix
and in test_security.py.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.timeout(60)

TRACEBACK = "Traceback (most recent call last)"


def _messages(rig: Any, n: int) -> list[dict[str, Any]]:
    records = rig.make_records(n, set())
    return [
        rig.schema(),
        *({"type": "RECORD", "stream": rig.stream, "record": r} for r in records),
    ]


def _sf_request_limit(rig: Any) -> tuple[Any, str]:
    rig.handle.fault("request_limit", path="composite")
    return rig.run(rig.config(), _messages(rig, 5)), "REQUEST_LIMIT_EXCEEDED"


def _sf_bulk_failed(rig: Any) -> tuple[Any, str]:
    rig.handle.fault("bulk_job_failed", count=1, message="reliability failure")
    run = rig.run(rig.config(bulk_threshold=2), _messages(rig, 5))
    return run, "Failed"


def _tap_repeat_cursor(rig: Any) -> tuple[Any, str]:
    rig.handle.fault("repeat_cursor", times=1, path="/1/events.json")
    return rig.sync(rig.config(), None), "cursor"


def _tap_wrong_passcode(rig: Any) -> tuple[Any, str]:
    return rig.sync(rig.config(passcode="WRONG-passcode-fatal-2"), None), "401"


CASES = [
    pytest.param(
        "sf_rig",
        _sf_request_limit,
        id="target-salesforce REQUEST_LIMIT_EXCEEDED",
    ),
    pytest.param(
        "sf_rig",
        _sf_bulk_failed,
        id="target-salesforce Bulk job Failed",
    ),
    pytest.param(
        "tap_rig",
        _tap_repeat_cursor,
        id="tap-clevertap repeated cursor",
    ),
    pytest.param(
        "tap_rig",
        _tap_wrong_passcode,
        id="tap-clevertap 401",
    ),
]


@pytest.mark.parametrize(("rig_name", "provoke"), CASES)
def test_fatal_stop_ends_with_one_clear_line_and_no_traceback(
    request: pytest.FixtureRequest, rig_name: str, provoke: Any
) -> None:
    rig = request.getfixturevalue(rig_name)
    run, cause = provoke(rig)
    assert run.returncode != 0
    assert not [m for m in run.messages if m.get("type") == "STATE" or "type" not in m]
    assert cause in run.stderr
    assert TRACEBACK not in run.stderr, run.stderr[-3000:]
