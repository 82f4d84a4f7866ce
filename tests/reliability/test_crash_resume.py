"""Crash and resume: SIGKILL a plugin at seeded points, then rerun from its STATE.

For the targets, a long input is fed on stdin a few lines at a time; once the
emulator's request log shows K write calls the target is killed with SIGKILL (no
cleanup, no flush). The rerun gets what a tap resumed from the last STATE the killed
run emitted would send, as `meltano run` would (the SDK emits STATE only at full
drains, so a target killed mid-input has usually emitted none: the rerun replays
everything, which is what the event ledger and upserts must make safe). The tap is
killed after K export pages and resumed with `--state` from its last STATE. Then:
0 lost, 0 duplicated, every record accounted for, and the killed run's last STATE
covered only records that were already settled.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.mark.parametrize("kill_after", [1, 4, 9])
def test_clevertap_target_killed_and_resumed_loses_and_duplicates_nothing(
    ct_rig: Any, kill_after: int
) -> None:
    ct_rig.crash_cell(kill_after)


@pytest.mark.parametrize("kill_after", [1, 3, 6])
def test_salesforce_target_killed_and_resumed_loses_and_duplicates_nothing(
    sf_rig: Any, kill_after: int
) -> None:
    sf_rig.crash_cell(kill_after, batch_size_rows=10)


@pytest.mark.parametrize("kill_after", [2, 4])
def test_salesforce_target_killed_during_bulk_and_resumed_loses_nothing(
    sf_rig: Any, kill_after: int
) -> None:
    sf_rig.crash_cell(
        kill_after, label=" (Bulk 2.0)", batch_size_rows=20, bulk_threshold=10
    )


@pytest.mark.parametrize("kill_after", [3, 7])
def test_salesforce_target_killed_with_bulk_jobs_in_flight_loses_nothing(
    sf_rig: Any, kill_after: int
) -> None:
    # every job stays InProgress for a few polls, so up to 3 are out when killed
    sf_rig.handle.fault("slow_bulk", polls=5, count=1000)
    sf_rig.crash_cell(
        kill_after,
        label=" (Bulk 2.0, 3 jobs in flight)",
        batch_size_rows=20,
        bulk_threshold=10,
        bulk_jobs_in_flight=3,
    )


@pytest.mark.parametrize("kill_after", [2, 6])
def test_clevertap_tap_killed_and_resumed_emits_every_event(
    tap_rig: Any, kill_after: int
) -> None:
    tap_rig.crash_cell(kill_after)


@pytest.mark.parametrize("kill_after", [2, 5])
def test_salesforce_insert_killed_during_bulk_and_resumed_inserts_nothing_twice(
    sf_rig: Any, kill_after: int
) -> None:
    # `action: insert` has no key: the insert journal (a Bulk job is recorded
    # before its upload completes) keeps the replay from inserting twice; without
    # it the unique CleverTap_Id__c refuses the replayed records (DUPLICATE_VALUE:
    # the tally sees no second row, but the rerun's summary counts the rejects)
    sf_rig.crash_cell(
        kill_after,
        label=" (Bulk 2.0 insert)",
        action="insert",
        batch_size_rows=20,
        bulk_threshold=10,
    )
    streams = json.loads(sf_rig.summary_path.read_text(encoding="utf-8"))["streams"]
    assert [(s["rejected"], s["rejected_by_code"]) for s in streams] == [(0, {})]
