"""Fault matrix rows for answers real orgs give (issue 13): 0 lost, 0 duplicated.

- APEX_ERROR: the stream goes to an Apex REST class (`/ct/contacts/*`, which
  upserts Contacts and does not catch its DML); three records break the org's
  validation rule, so their list calls answer HTTP 500 APEX_ERROR. The target
  resends those calls' records one by one and rejects only the bad ones.
- Concurrent-limit burst: REQUEST_LIMIT_EXCEEDED "ConcurrentRequests" three
  times on sObject Collections; retried with backoff.
- 404 Apex path: the class is not deployed, so the path answers 404; the run
  stops without STATE whatever `on_reject` says, the class is deployed (the fix)
  and the rerun settles every record.
"""

from __future__ import annotations

from typing import Any

import pytest
from sandbox.salesforce.apex import contacts_handler

pytestmark = pytest.mark.timeout(90)

PAYLOAD = {
    "identity": "{identity}",
    "name": "{name}",
    "email": "{email}",
    "score": "{score}",
}


def _apex_stream(path: str) -> dict[str, Any]:
    return {
        "nps": {
            "mode": "apex",
            "apex": {
                "path": path,
                "batching": "list",
                "list_key": "records",
                "max_records_per_call": 5,
                "payload": PAYLOAD,
            },
        }
    }


def test_apex_error_rejects_only_the_bad_records(sf_rig: Any) -> None:
    sf_rig.cell(
        "APEX_ERROR in Apex list calls (isolated)",
        lambda: None,
        invalid=frozenset({4, 33, 59}),
        streams=_apex_stream("ct/contacts/upsert"),
    )
    codes = {r["code"] for r in sf_rig.rejects()}
    assert codes == {"APEX_ERROR"}


def test_concurrent_limit_burst_is_retried(sf_rig: Any) -> None:
    sf_rig.cell(
        "REQUEST_LIMIT_EXCEEDED ConcurrentRequests x3 (retried)",
        lambda: sf_rig.handle.fault(
            "concurrent_limit", count=3, path="composite/sobjects"
        ),
    )
    refused = [r for r in sf_rig.handle.requests_log() if r["status"] == 403]
    assert len(refused) == 3


def test_apex_path_404_stops_and_the_rerun_settles_everything(sf_rig: Any) -> None:
    handle = sf_rig.handle
    clear = sf_rig.clear_faults

    def fix_and_clear() -> None:
        clear()
        handle.register_apex("/ctsync/*", contacts_handler)  # deploy the class

    sf_rig.clear_faults = fix_and_clear
    sf_rig.cell(
        "404 Apex path (class not deployed), rerun",
        lambda: None,
        must_fail=True,
        failure_text="Could not find a match for URL",
        streams=_apex_stream("ctsync/contacts"),
        on_reject="continue",
    )
    assert sf_rig.rejects() == []
