"""Fault matrix: each fault x target, 0 lost, 0 duplicated, every record accounted for.

One row per cell: the fault is armed in the emulator, the target runs as a
subprocess on 60 records (STATE after every 10), and when the fault made the run
fail it is cleared and the target runs again on what a tap resumed from the last
STATE would send. The rig then compares what the emulator holds with the input.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.reliability.conftest import Cell, singer_lines, with_states

pytestmark = pytest.mark.timeout(90)


@dataclasses.dataclass(frozen=True)
class Fault:
    """A matrix row: how to arm it and what the run must do."""

    name: str
    faults: tuple[dict[str, Any], ...] = ()
    config: tuple[tuple[str, Any], ...] = ()
    invalid: frozenset[int] = frozenset()
    must_fail: bool = False
    failure_text: str = ""
    marks: tuple[Any, ...] = ()
    note: str = ""

    def param(self) -> Any:
        return pytest.param(self, id=self.name, marks=self.marks)


def _arm(handle: Any, faults: tuple[dict[str, Any], ...]) -> None:
    for spec in faults:
        handle.fault(**spec)


# ----------------------------------------------------------- target-clevertap

UPLOAD = "/1/upload"
CT_FAULTS = [
    Fault(
        "429 storm x3 (retried)",
        ({"kind": "status", "status": 429, "times": 3, "path": UPLOAD},),
    ),
    Fault(
        "429 storm outlasting retries, rerun",
        ({"kind": "status", "status": 429, "times": 50, "path": UPLOAD},),
        config=(("max_retries", 2),),
        must_fail=True,
        failure_text="target-clevertap stopped",
    ),
    Fault(
        "500 + 503 burst",
        (
            {"kind": "status", "status": 500, "times": 1, "path": UPLOAD},
            {"kind": "status", "status": 503, "times": 1, "path": UPLOAD},
        ),
    ),
    Fault("connection reset mid-request", ({"kind": "reset", "path": UPLOAD},)),
    Fault(
        "reply lost after store",
        ({"kind": "lost_reply", "path": UPLOAD, "times": 2},),
    ),
    Fault(
        "reply slower than timeout",
        ({"kind": "slow_reply", "path": UPLOAD, "seconds": 3},),
        config=(("request_timeout", 1),),
    ),
    Fault(
        "reply lost, event check down, rerun",
        (
            {"kind": "lost_reply", "path": UPLOAD},
            {"kind": "status", "status": 503, "times": 50, "path": "/1/events.json"},
        ),
        config=(("max_retries", 2), ("with_profile", False)),
        must_fail=True,
        failure_text="target-clevertap stopped",
    ),
    Fault(
        "partial unprocessed (invalid emails)",
        invalid=frozenset({3, 17, 42}),
    ),
    Fault(
        "5xx after store (500, 502, 504 on event batches)",
        (
            {"kind": "status_after_store", "status": 502, "times": 2, "path": UPLOAD},
            {"kind": "status_after_store", "status": 500, "times": 1, "path": UPLOAD},
            {"kind": "status_after_store", "status": 504, "times": 1, "path": UPLOAD},
        ),
        config=(("with_profile", False),),
    ),
    Fault(
        "ingestion lag during reconciliation",
        (
            {"kind": "status_after_store", "status": 500, "times": 2, "path": UPLOAD},
            {"kind": "ingestion_lag", "seconds": 1.5, "times": 2, "path": UPLOAD},
        ),
        config=(
            ("with_profile", False),
            ("reconcile_lag_seconds", 3),
            ("reconcile_checks", 4),
        ),
        note="events visible 1.5 s after store; re-checked over 3 s",
    ),
]


@pytest.mark.parametrize("fault", [f.param() for f in CT_FAULTS])
def test_clevertap_target_loses_and_duplicates_nothing_under_fault(
    ct_rig: Any, fault: Fault
) -> None:
    """Fatal stops of target-clevertap must also be one clear line, no traceback."""
    ct_rig.cell(
        fault.name,
        lambda: _arm(ct_rig.handle, fault.faults),
        invalid=fault.invalid,
        must_fail=fault.must_fail,
        failure_text=fault.failure_text,
        note=fault.note,
        **dict(fault.config),
    )
    assert not ct_rig.tracebacks, ct_rig.tracebacks[0]


def test_clevertap_target_rejects_server_side_unprocessed_with_their_code(
    ct_rig: Any,
) -> None:
    """`unprocessed` entries inside an HTTP 200 become rejects with CleverTap's code.

    The first upload (10 profiles) is processed for 5 records only; the other 5
    fail with code 555 and must be rejects, not silent drops.
    """
    ct_rig.cell(
        "partial unprocessed (server 555)",
        lambda: ct_rig.handle.fault("unprocessed_partial", path=UPLOAD, processed=5),
        expect_rejected=5,
    )
    codes = {str(r["code"]) for r in ct_rig.rejects()}
    assert codes == {"555"}


def test_clevertap_target_refuses_keys_past_the_account_cap_as_rejects(
    ct_rig: Any,
) -> None:
    """A full account: new custom profile keys are rejects, never silent drops.

    The account holds 256 custom profile keys: CleverTap would drop new ones
    silently (the emulator, lowered to that state, does); the target refuses each
    record with a new key as a `profile_key_cap` reject instead.
    """

    def arm() -> None:
        ct_rig.handle._call("POST", "caps", json={"max_custom_profile_keys": 0})

    ct_rig.cell(
        "cap reached (custom profile keys)",
        arm,
        expect_rejected=60,
        account_custom_profile_keys=256,
        note="every record carries new keys: all refused, none dropped",
    )
    codes = {str(r["code"]) for r in ct_rig.rejects()}
    assert codes == {"profile_key_cap"}
    assert ct_rig.handle.profiles() == []


# ---------------------------------------------------------- target-salesforce

COMPOSITE = "composite/sobjects"
INGEST = "jobs/ingest"
BULK = (("bulk_threshold", 10),)
SF_FAULTS = [
    Fault(
        "429 storm x3 (retried)",
        ({"kind": "status", "status": 429, "count": 3, "path": COMPOSITE},),
    ),
    Fault(
        "500 + 503 burst",
        (
            {"kind": "status", "status": 500, "count": 1, "path": COMPOSITE},
            {"kind": "status", "status": 503, "count": 1, "path": COMPOSITE},
        ),
    ),
    Fault(
        "connection reset mid-request",
        ({"kind": "reset", "count": 1, "path": COMPOSITE},),
    ),
    Fault(
        "reply lost after store",
        ({"kind": "reset", "count": 1, "after_processing": True, "path": COMPOSITE},),
    ),
    Fault(
        "reply slower than timeout",
        ({"kind": "latency", "seconds": 2.5, "count": 1, "path": COMPOSITE},),
        config=(("request_timeout", 1),),
    ),
    Fault("partial failure (validation rule)", invalid=frozenset({4, 33, 59})),
    Fault("INVALID_SESSION_ID once", ({"kind": "invalid_session", "count": 1},)),
    Fault(
        "REQUEST_LIMIT_EXCEEDED, rerun",
        ({"kind": "request_limit", "path": COMPOSITE},),
        must_fail=True,
        failure_text="REQUEST_LIMIT_EXCEEDED",
    ),
    Fault("UNABLE_TO_LOCK_ROW x3", ({"kind": "lock_row", "count": 3},)),
    Fault(
        "Bulk 2.0: 503 burst",
        ({"kind": "status", "status": 503, "count": 2, "path": INGEST},),
        config=BULK,
    ),
    Fault(
        "Bulk 2.0: job ends Failed, rerun",
        ({"kind": "bulk_job_failed", "count": 1, "message": "reliability"},),
        config=BULK,
        must_fail=True,
    ),
    Fault(
        # the job stores 7 rows of the first batch, then ends Failed: those are
        # settled before the run stops; the rerun upserts (no duplicate)
        "Failed Bulk job with partial results",
        (
            {
                "kind": "bulk_job_failed",
                "count": 1,
                "processed": 7,
                "message": "reliability",
            },
        ),
        config=BULK,
        must_fail=True,
        failure_text="ended Failed",
    ),
    Fault(
        # an insert is never rerun over stored rows: the 13 unprocessed rows go
        # again in a new job and the run finishes
        "Failed Bulk insert job with partial results",
        (
            {
                "kind": "bulk_job_failed",
                "count": 1,
                "processed": 7,
                "message": "reliability",
            },
        ),
        config=(*BULK, ("action", "insert")),
    ),
    Fault(
        "Bulk 2.0: UNABLE_TO_LOCK_ROW x3",
        ({"kind": "lock_row", "count": 3},),
        config=BULK,
    ),
    Fault(
        "Bulk 2.0: reply lost after store",
        (
            {
                "kind": "reset",
                "count": 1,
                "after_processing": True,
                "path": INGEST,
                "method": "PATCH",
            },
        ),
        config=BULK,
    ),
    Fault(
        "Bulk 2.0: partial failure",
        invalid=frozenset({2, 25, 41}),
        config=BULK,
    ),
]


@pytest.mark.parametrize("fault", [f.param() for f in SF_FAULTS])
def test_salesforce_target_loses_and_duplicates_nothing_under_fault(
    sf_rig: Any, fault: Fault
) -> None:
    sf_rig.cell(
        fault.name,
        lambda: _arm(sf_rig.handle, fault.faults),
        invalid=fault.invalid,
        must_fail=fault.must_fail,
        failure_text=fault.failure_text,
        note=fault.note,
        **dict(fault.config),
    )


def test_salesforce_target_stopped_by_a_bad_line_settles_its_jobs_in_flight(
    sf_rig: Any,
) -> None:
    """A line that is not JSON after 60 records, two Bulk jobs still out: no rerun.

    The run stops with that error's one line and no STATE, once the jobs out are
    settled: every record is already accepted or in the rejects file.
    """
    sf_rig.handle.fault("slow_bulk", polls=5, count=3)  # windows 2 and 3 stay out
    invalid = {2, 25, 41, 59}  # refused by the validation rule, in every window
    records = sf_rig.make_records(60, invalid)
    messages = with_states(sf_rig.schema(), records, sf_rig.every, sf_rig.stream)
    text = "".join(singer_lines(messages)) + "this line is not JSON\n"
    config = sf_rig.config(bulk_threshold=10, bulk_jobs_in_flight=3)
    run = sf_rig.run_text(config, text)
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.states == []
    assert "not valid JSON" in run.stderr.strip().splitlines()[-1]
    tally = sf_rig.tally(records)
    sf_rig.report.add(
        Cell(
            sf_rig.plugin,
            "bad JSON line, 3 Bulk 2.0 jobs in flight",
            1,
            tally.received,
            tally.accepted,
            tally.rejected,
            tally.lost,
            tally.duplicated,
            "stops without STATE after settling the jobs out; no rerun needed",
        )
    )
    assert tally.rejected == len(invalid), tally
    assert tally.lost == 0, tally.unsettled[:10]
    assert tally.duplicated == 0, tally
    sf_rig.check_summary(run)


# -------------------------------------------------------------- tap-clevertap

EVENTS = "/1/events.json"
TAP_FAULTS = [
    # the tap's backoff is fixed (2 s doubling, no setting): these take ~7 s each
    Fault(
        "429 storm x2 (retried)",
        ({"kind": "status", "status": 429, "times": 2, "path": EVENTS},),
        marks=(pytest.mark.slow,),
    ),
    Fault(
        "500 + 503 burst",
        (
            {"kind": "status", "status": 500, "times": 1, "path": EVENTS},
            {"kind": "status", "status": 503, "times": 1, "path": EVENTS},
        ),
        marks=(pytest.mark.slow,),
    ),
    Fault(
        "connection reset mid-request",
        ({"kind": "reset", "times": 1, "path": EVENTS, "method": "GET"},),
    ),
    Fault(
        "reply lost after the server answered",
        ({"kind": "lost_reply", "times": 1, "path": EVENTS, "method": "GET"},),
    ),
    Fault(
        "reply slower than timeout",
        ({"kind": "slow_reply", "seconds": 2, "times": 1, "path": EVENTS},),
        config=(("request_timeout", 1),),
    ),
    Fault(
        # every cursor answers "in progress" once: one event, one window, one page
        "every cursor in progress once",
        ({"kind": "in_progress", "fetches": 1, "path": EVENTS},),
        config=(
            ("event_names", ["Charged"]),
            ("window_days", 7),
            ("batch_size", 4991),
        ),
    ),
    Fault(
        "repeated cursor (run fails), resume from STATE",
        ({"kind": "repeat_cursor", "times": 1, "path": EVENTS},),
        must_fail=True,
    ),
]


@pytest.mark.parametrize("fault", [f.param() for f in TAP_FAULTS])
def test_clevertap_tap_emits_every_seeded_event_once_under_fault(
    tap_rig: Any, fault: Fault
) -> None:
    tap_rig.cell(
        fault.name,
        lambda: _arm(tap_rig.handle, fault.faults),
        must_fail=fault.must_fail,
        **dict(fault.config),
    )
