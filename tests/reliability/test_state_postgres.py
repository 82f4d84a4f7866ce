"""target-clevertap's state store on PostgreSQL (`state_url`), on a real server.

The module starts one throwaway PostgreSQL server on 127.0.0.1 (Debian's server
binaries, `make postgres-server`) and runs the target's CLI as a subprocess, as
Meltano would. Every run gets a new, empty `state_dir`, as on an ephemeral worker
(container, pod, CI runner): only the PostgreSQL store carries state between runs.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

CONTACT_BY_EMAIL = {
    "Contact": {
        "profile": {
            "identity": {"field": "Email"},
            "properties": {"include": ["FirstName", "LastName"]},
        }
    },
    "Task": {
        "events": [
            {
                "name": "Task Created",
                "identity": {"ref": "WhoId"},
                "time": "CreatedDate",
                "properties": {"include": ["Subject"]},
            }
        ]
    },
}


# a process that opens the store of namespace `busy`, says so, and keeps it open
HOLDER = """
import sys, time
from target_clevertap.ledger import StateStore
store = StateStore("/nonexistent", "x", url=sys.argv[1], namespace="busy")
print("open", flush=True)
time.sleep(60)
"""


@dataclasses.dataclass
class Worker:
    """Runs on fresh workers: a new state_dir each time, one PostgreSQL store."""

    rig: Any
    url: str
    password: str
    namespace: str
    runs: int = 0

    def config(self, **extra: Any) -> dict[str, Any]:
        self.runs += 1
        fresh = self.rig.tmp_path / f"worker-{self.namespace}-{self.runs}"
        config: dict[str, Any] = self.rig.config(
            state_url=self.url,
            state_namespace=self.namespace,
            state_dir=str(fresh),
            **extra,
        )
        return config

    def run(self, messages: list[dict[str, Any]], **extra: Any) -> Any:
        config = self.config(**extra)
        run = self.rig.run(config, messages)
        for name, text in run.outputs():
            assert self.password not in text, f"the database password leaked: {name}"
        assert not list(self.rig.tmp_path.glob("worker-*/*.sqlite")), "SQLite used"
        return run


def _contacts(rig: Any, n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records = rig.make_records(n, set())
    messages = [rig.schema()]
    messages += [{"type": "RECORD", "stream": "Contact", "record": r} for r in records]
    messages.append({"type": "STATE", "value": {"bookmarks": {"Contact": {"n": n}}}})
    return records, messages


@pytest.fixture
def worker(ct_rig: Any, postgres_server: Any, request: Any) -> Worker:
    """A job whose namespace is unique to the test."""
    namespace = "job_" + request.node.name.split("[")[0][-40:]
    return Worker(ct_rig, postgres_server.url(), postgres_server.password, namespace)


def test_replay_on_a_new_worker_adds_no_event(ct_rig: Any, worker: Worker) -> None:
    records, messages = _contacts(ct_rig, 30)
    first = worker.run(messages)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "is new and empty" in first.stderr
    second = worker.run(messages)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "is new and empty" not in second.stderr
    summary = ct_rig.summary(second)
    assert summary["duplicates_suppressed"] == 30, summary
    assert summary["events_sent"] == 0, summary
    tally = ct_rig.tally(records)
    assert (tally.accepted, tally.lost, tally.duplicated) == (30, 0, 0), tally


@pytest.mark.parametrize("kill_after", [2, 6])
def test_killed_and_rerun_on_a_new_worker_loses_and_duplicates_nothing(
    ct_rig: Any, postgres_server: Any, kill_after: int
) -> None:
    namespace = f"crash_after_{kill_after}"
    tally = ct_rig.crash_cell(
        kill_after,
        label=" (state on PostgreSQL)",
        n=120,
        state_url=postgres_server.url(),
        state_namespace=namespace,
    )
    assert tally.accepted == 120, tally
    rows = postgres_server.psql(
        f'SELECT status, count(*) FROM "{namespace}".events GROUP BY status'  # noqa: S608 - a test's own namespace
    )
    assert rows.strip() == "accepted|120", rows


def test_jobs_with_their_own_namespaces_share_one_database_apart(
    ct_rig: Any,
    postgres_server: Any,
    make_clevertap_emulator: Any,
    tmp_path: Path,
) -> None:
    records, messages = _contacts(ct_rig, 20)
    url, password = postgres_server.url(), postgres_server.password
    job_a = Worker(ct_rig, url, password, "shared_db_job_a")
    assert job_a.run(messages).returncode == 0
    # job B: another account, same database, its own namespace
    other = make_clevertap_emulator(account_id="OTHER-ACCOUNT", passcode="pcB-123456")
    rig_b = type(ct_rig)(other, tmp_path / "b", ct_rig.report)
    (tmp_path / "b").mkdir()
    job_b = Worker(rig_b, url, password, "shared_db_job_b")
    run_b = job_b.run(messages)
    assert run_b.returncode == 0, run_b.stderr[-2000:]
    assert ct_rig.summary(run_b)["events_sent"] == 20  # A's ledger is not B's
    rerun_a = job_a.run(messages)
    assert ct_rig.summary(rerun_a)["duplicates_suppressed"] == 20
    assert ct_rig.tally(records).duplicated == 0
    assert rig_b.tally(records).duplicated == 0
    counts = postgres_server.psql(
        'SELECT (SELECT count(*) FROM "shared_db_job_a".events), '
        '(SELECT count(*) FROM "shared_db_job_b".events)'
    )
    assert counts.strip() == "20|20"


def test_two_runs_of_one_namespace_never_overlap(
    ct_rig: Any, postgres_server: Any
) -> None:
    """A run holding the namespace makes a second one stop, clearly, with no STATE."""
    holder = subprocess.Popen(  # holds the namespace's run lock for a while
        [
            sys.executable,
            "-c",
            HOLDER,
            postgres_server.url(),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        _records, messages = _contacts(ct_rig, 5)
        worker = Worker(ct_rig, postgres_server.url(), postgres_server.password, "busy")
        run = worker.run(messages)
        assert run.returncode == 1
        assert "another target-clevertap run is using the state store" in run.stderr
        assert run.states == []
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its holder (kill -9 included): the next run proceeds
    deadline = time.monotonic() + 10
    while True:
        run = worker.run(messages)
        if run.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert run.returncode == 0, run.stderr[-2000:]


def test_references_resolve_across_runs_on_new_workers(
    ct_rig: Any, worker: Worker
) -> None:
    """Contacts keyed on Email in one run; Tasks of a later run find them by WhoId."""
    records, contacts = _contacts(ct_rig, 5)
    assert worker.run(contacts, mappings=CONTACT_BY_EMAIL).returncode == 0
    task_schema = {
        "type": "SCHEMA",
        "stream": "Task",
        "schema": {
            "type": "object",
            "properties": {
                "Id": {"type": "string"},
                "WhoId": {"type": ["string", "null"]},
                "Subject": {"type": ["string", "null"]},
                "CreatedDate": {"type": ["string", "null"], "format": "date-time"},
            },
        },
        "key_properties": ["Id"],
    }
    tasks = [task_schema] + [
        {
            "type": "RECORD",
            "stream": "Task",
            "record": {
                "Id": f"00T{i:05d}",
                "WhoId": r["Id"],
                "Subject": "Call",
                "CreatedDate": r["CreatedDate"],
            },
        }
        for i, r in enumerate(records)
    ]
    run = worker.run(tasks, mappings=CONTACT_BY_EMAIL)
    assert run.returncode == 0, run.stderr[-2000:]
    assert ct_rig.rejects() == []
    events = ct_rig.handle.events(evtName="Task Created")
    assert sorted(e["identity"] for e in events) == sorted(r["Email"] for r in records)
