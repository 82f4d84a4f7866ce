"""Both Meltano jobs on the sandbox: first run, a rerun, then changes on each side.

One module-scoped journey runs everything once, in order, and records what the
emulators hold after each phase; each test checks one behaviour of that journey.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sandbox.demo import (
    CleverTapSnapshot,
    clevertap_snapshot,
    salesforce_query,
    salesforce_session,
    salesforce_writes,
)

if TYPE_CHECKING:
    import subprocess

    from .conftest import MeltanoProject

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

JOBS = ("salesforce-to-clevertap", "clevertap-to-salesforce")
CLEVERTAP_AUTH = {
    "X-CleverTap-Account-Id": "SANDBOX-ACCOUNT",
    "X-CleverTap-Passcode": "SANDBOX-PASSCODE",
}


@dataclasses.dataclass
class Phase:
    """One run of both jobs and what the emulators held afterwards."""

    started: dt.datetime
    results: dict[str, subprocess.CompletedProcess[str]]
    clevertap: CleverTapSnapshot
    salesforce: dict[str, tuple[int, int]]


@dataclasses.dataclass
class Journey:
    """Everything the tests look at."""

    seeded: CleverTapSnapshot
    first: Phase
    rerun: Phase
    after_changes: Phase
    marker: str
    changed_contact: str
    event_identity: str
    engagement_rows: list[dict[str, Any]]


def _phase(project: MeltanoProject) -> Phase:
    # same clock as the emulators: every write of this phase comes after it, and
    # the previous phase's last writes (maybe within the same second) come before
    started = dt.datetime.now(dt.UTC)
    results = {job: project.run("run", job) for job in JOBS}
    return Phase(
        started,
        results,
        _clevertap(project),
        salesforce_writes(project.sandbox.client_env(), started),
    )


def _clevertap(project: MeltanoProject) -> CleverTapSnapshot:
    sandbox = project.sandbox
    return clevertap_snapshot(sandbox.ports["clevertap"], sandbox.tls_dir / "ca.pem")


def _change_a_contact(project: MeltanoProject, marker: str) -> str:
    session, instance = salesforce_session(project.sandbox.client_env())
    with session:
        contacts = salesforce_query(
            session,
            instance,
            "SELECT Id, Title FROM Contact WHERE SystemModstamp >= "
            "2000-01-01T00:00:00.000000Z ORDER BY SystemModstamp ASC",
        )
        contact_id = str(contacts[0]["Id"])
        response = session.patch(
            f"{instance}/services/data/v61.0/sobjects/Contact/{contact_id}",
            json={"Title": marker},
            timeout=30,
        )
        response.raise_for_status()
    return contact_id


def _add_a_clevertap_event(project: MeltanoProject, identity: str, marker: str) -> None:
    env = project.sandbox.client_env()
    with requests.Session() as session:
        session.trust_env = False
        response = session.post(
            "https://eu1.api.clevertap.com/1/upload",
            json={
                "d": [
                    {
                        "identity": identity,
                        "type": "event",
                        "evtName": "Survey Submitted",
                        "ts": int(time.time()),
                        "evtData": {"Score": 9, "Feedback": marker},
                    }
                ]
            },
            headers=CLEVERTAP_AUTH,
            proxies={"https": env["HTTPS_PROXY"]},
            verify=env["REQUESTS_CA_BUNDLE"],
            timeout=30,
        )
    response.raise_for_status()
    assert response.json().get("status") == "success", response.text


@pytest.fixture(scope="module")
def journey(meltano_project: MeltanoProject) -> Journey:
    seeded = _clevertap(meltano_project)
    first = _phase(meltano_project)
    rerun = _phase(meltano_project)
    marker = f"e2e-{uuid.uuid4().hex[:12]}"
    contact_id = _change_a_contact(meltano_project, marker)
    created = sorted(first.clevertap.profiles.keys() - seeded.profiles.keys())
    identity = created[0] if created else "e2e-unknown"
    _add_a_clevertap_event(meltano_project, identity, marker)
    after_changes = _phase(meltano_project)
    rows = _engagement_since(meltano_project, after_changes.started)
    return Journey(
        seeded, first, rerun, after_changes, marker, contact_id, identity, rows
    )


def _engagement_since(
    project: MeltanoProject, since: dt.datetime
) -> list[dict[str, Any]]:
    stamp = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fields = "Id, CleverTap_Id__c, Event_Name__c, Properties__c"
    where = f"SystemModstamp >= {stamp} ORDER BY SystemModstamp ASC"
    soql = f"SELECT {fields} FROM CleverTap_Engagement__c WHERE {where}"  # noqa: S608 - constants and a timestamp
    session, instance = salesforce_session(project.sandbox.client_env())
    with session:
        return salesforce_query(session, instance, soql)


def _failed(phase: Phase) -> dict[str, str]:
    return {
        job: (result.stdout + result.stderr)[-3000:]
        for job, result in phase.results.items()
        if result.returncode != 0
    }


def test_both_jobs_succeed_in_every_phase(journey: Journey) -> None:
    for phase in (journey.first, journey.rerun, journey.after_changes):
        assert _failed(phase) == {}


def test_first_run_lands_salesforce_records_as_clevertap_profiles_and_events(
    journey: Journey,
) -> None:
    assert journey.first.clevertap.new_profiles(journey.seeded) > 0
    assert sum(journey.first.clevertap.new_events(journey.seeded).values()) > 0


def test_first_run_writes_clevertap_engagement_to_salesforce(journey: Journey) -> None:
    created = sum(c for c, _ in journey.first.salesforce.values())
    updated = sum(u for _, u in journey.first.salesforce.values())
    assert created + updated > 0


def test_second_run_moves_nothing_new(journey: Journey) -> None:
    rerun, first = journey.rerun.clevertap, journey.first.clevertap
    assert rerun.new_profiles(first) == 0
    assert sum(rerun.new_events(first).values()) == 0
    assert {name: c for name, (c, _) in journey.rerun.salesforce.items() if c} == {}


def test_contact_changed_after_first_run_reaches_clevertap(
    journey: Journey, meltano_project: MeltanoProject
) -> None:
    sandbox = meltano_project.sandbox
    with requests.Session() as session:
        session.trust_env = False
        profiles: list[dict[str, Any]] = session.get(
            f"https://127.0.0.1:{sandbox.ports['clevertap']}/_sandbox/profiles",
            verify=str(sandbox.tls_dir / "ca.pem"),
            timeout=30,
        ).json()
    carrying = [p for p in profiles if journey.marker in str(p.get("profileData"))]
    assert len(carrying) == 1, f"Contact {journey.changed_contact} not in CleverTap"
    assert (
        journey.after_changes.clevertap.updated_profiles(journey.rerun.clevertap) >= 1
    )


def test_clevertap_event_added_after_first_run_reaches_salesforce(
    journey: Journey,
) -> None:
    created = {n: c for n, (c, _) in journey.after_changes.salesforce.items() if c}
    assert created == {"CleverTap_Engagement__c": 1}
    carrying = [row for row in journey.engagement_rows if journey.marker in str(row)]
    assert len(carrying) == 1
    assert carrying[0]["CleverTap_Id__c"] == journey.event_identity
    assert carrying[0]["Event_Name__c"] == "Survey Submitted"
