"""`action: insert` survives a kill -9 without inserting twice (insert journal).

The target runs as a subprocess fed through a pipe; it is killed with SIGKILL
once the emulator stored some rows, then rerun on the whole input (records and
the STATE that covers them). Rows are counted in the emulator by their
`Description` (the record's identity). Task has no unique field and no
duplicate rule, so a second insert of a record is a second row, as it is for
most objects (the org's Contact duplicate rules would refuse it instead).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests
from target_salesforce.errors import ConfigurationError
from target_salesforce.journal import (
    AlreadyInserted,
    InsertJournal,
    JournalRow,
    Scope,
    item_digest,
    result_row_digest,
)
from target_salesforce.payloads import Prepared

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

KILL = "insert_journal_kill.singer"  # 10 records, then the STATE covering them
STATE_THEN_RECORDS = "insert_journal_state_then_records.singer"  # 4, STATE, 3
INSERT = {
    "nps": {
        "object": "Task",
        "action": "insert",
        "fields": {"Subject": "name", "Description": "identity"},
    }
}


def _config(harness: Any, *, bulk: bool, **extra: Any) -> dict[str, Any]:
    """Windows of 4 records, through Bulk 2.0 or through Collections."""
    settings: dict[str, Any] = {"batch_size_rows": 4, **extra}
    config: dict[str, Any] = harness.config(
        streams=INSERT,
        bulk_threshold=1 if bulk else 1000,
        **settings,
    )
    return config


def _stored(harness: Any, prefix: str = "ct-jrn-") -> collections.Counter[str]:
    """Stored Tasks per identity (Description)."""
    return collections.Counter(
        str(r["Description"])
        for r in harness.handle.live_records("Task")
        if str(r.get("Description") or "").startswith(prefix)
    )


def _journal(path: Path) -> tuple[list[tuple[str, int]], int]:
    """The journal's rows as (run id, seq), and its number of jobs."""
    if not path.exists():
        return [], 0
    db = sqlite3.connect(path, timeout=10)
    try:
        rows = db.execute("SELECT run_id, seq FROM rows ORDER BY seq").fetchall()
        (jobs,) = db.execute("SELECT COUNT(*) FROM jobs").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return [], 0
    finally:
        db.close()
    return [(str(r), int(s)) for r, s in rows], int(jobs)


def _run_and_kill(
    harness: Any, config: dict[str, Any], lines: list[str], ready: Callable[[], bool]
) -> int:
    """Run the CLI on `lines` through a pipe kept open; SIGKILL once `ready()`."""
    config_path = harness.tmp_path / "config-killed.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TARGET_")}
    env["REQUESTS_CA_BUNDLE"] = harness.handle.ca_bundle
    log = (harness.tmp_path / "killed.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "target_salesforce", "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=log,
        text=True,
        env=env,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write("".join(lines))
        proc.stdin.flush()  # and the pipe stays open: no end of input, no STATE
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None, (harness.tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "the target stored nothing in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:  # pragma: no cover - a failed assertion above
            proc.kill()
            proc.wait(timeout=30)
        proc.stdin.close()
        log.close()


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk2", "collections"])
def test_insert_killed_by_sigkill_is_not_inserted_twice_by_the_rerun(
    harness: Any, bulk: bool
) -> None:
    config = _config(harness, bulk=bulk)
    text = harness.fixture(KILL)
    lines = text.splitlines(keepends=True)
    assert '"STATE"' in lines[-1]

    def two_windows_stored_and_journaled() -> bool:
        rows, _ = _journal(harness.journal_path)
        return sum(_stored(harness).values()) == 8 and len(rows) == 8

    # the records but not the STATE: two windows of 4 go out, 2 records wait
    code = _run_and_kill(harness, config, lines[:-1], two_windows_stored_and_journaled)
    assert code == -signal.SIGKILL
    assert sum(_stored(harness).values()) == 8

    run = harness.run(config, text)  # the tap replays everything after its STATE
    assert run.error is None
    assert _stored(harness) == {f"ct-jrn-{i:02d}": 1 for i in range(1, 11)}
    summary = run.summary["nps"]
    assert (summary["received"], summary["succeeded"], summary["rejected"]) == (
        10,
        10,
        0,
    )
    # accepted counts include the 8 an earlier run stored (not sent again),
    # counted apart from the 2 this run created
    assert (summary["already_inserted"], summary["created"]) == (8, 2)
    assert run.states == [{"bookmarks": {"nps": {"n": 10}}}]
    assert _journal(harness.journal_path) == ([], 0)  # a normal end empties it


def test_a_bulk_job_still_running_at_the_kill_is_recovered_not_inserted_again(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # the first job stays InProgress for many polls (its rows are stored at its
    # close), and with one job in flight the target waits for it
    harness.handle.fault("slow_bulk", polls=400, count=1)
    config = _config(harness, bulk=True, bulk_jobs_in_flight=1)
    text = harness.fixture(KILL)
    lines = text.splitlines(keepends=True)

    def job_stored_and_journaled() -> bool:
        _, jobs = _journal(harness.journal_path)
        return sum(_stored(harness).values()) == 4 and jobs == 1

    code = _run_and_kill(harness, config, lines[:-1], job_stored_and_journaled)
    assert code == -signal.SIGKILL
    assert _journal(harness.journal_path)[1] == 1  # its results were never read

    caplog.set_level("INFO")
    run = harness.run({**config, "bulk_poll_interval": 0.001}, text)
    assert run.error is None
    assert _stored(harness) == {f"ct-jrn-{i:02d}": 1 for i in range(1, 11)}
    summary = run.summary["nps"]
    assert (summary["succeeded"], summary["already_inserted"]) == (10, 4)
    assert "with 4 rows stored; they will not be inserted again" in caplog.text
    assert (
        "4 records were stored by an earlier run that stopped before its STATE; "
        "not inserted again"
    ) in caplog.text
    assert _journal(harness.journal_path) == ([], 0)


def _open_job(harness: Any) -> str:
    """An insert job created (as a killed run left it) but never closed: its id."""
    handle = harness.handle
    response = requests.post(
        f"{handle.base_url}/services/data/v62.0/jobs/ingest",
        json={"object": "Task", "operation": "insert", "lineEnding": "CRLF"},
        headers={"Authorization": f"Bearer {handle.access_token}"},
        verify=handle.ca_bundle,
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def _job_state(harness: Any, job_id: str) -> str:
    handle = harness.handle
    response = requests.get(
        f"{handle.base_url}/services/data/v62.0/jobs/ingest/{job_id}",
        headers={"Authorization": f"Bearer {handle.access_token}"},
        verify=handle.ca_bundle,
        timeout=30,
    )
    return str(response.json()["state"])


def test_an_open_job_of_an_earlier_run_is_aborted_and_a_gone_one_dropped(
    harness: Any, caplog: pytest.LogCaptureFixture
) -> None:
    open_job = _open_job(harness)
    earlier = InsertJournal(harness.journal_path)  # another run id: an earlier run
    earlier.add_job(open_job, Scope("nps", "Task"), ["Subject", "Description"])
    scope = Scope("nps", "Task")
    earlier.add_job("750000000000000AAA", scope, ["Subject", "Description"])
    earlier.close()
    caplog.set_level("INFO")
    run = harness.run(_config(harness, bulk=True), harness.fixture(KILL))
    assert run.error is None
    assert _job_state(harness, open_job) == "Aborted"
    assert "750000000000000AAA on Task of an earlier run is gone" in caplog.text
    assert _stored(harness) == {f"ct-jrn-{i:02d}": 1 for i in range(1, 11)}
    assert run.summary["nps"]["already_inserted"] == 0
    assert _journal(harness.journal_path) == ([], 0)


def test_rows_behind_a_written_state_go_rows_after_it_stay_a_normal_end_clears(
    harness: Any,
) -> None:
    config = _config(harness, bulk=False, batch_size_rows=2)
    run = harness.run(config, harness.fixture(STATE_THEN_RECORDS))
    assert run.error is None
    assert run.states == [{"bookmarks": {"nps": {"n": 4}}}]
    rows, jobs = _journal(harness.journal_path)
    # records 5 to 7 (input lines 6 to 8) came after the last STATE: they stay
    assert [seq for _, seq in rows] == [6, 7, 8]
    assert jobs == 0
    # the next run ends normally with a final STATE: nothing is left
    run = harness.run(config, harness.fixture(KILL))
    assert run.error is None
    assert run.summary["nps"]["already_inserted"] == 0
    assert _journal(harness.journal_path) == ([], 0)


def test_a_normal_end_keeps_the_rows_another_stream_left(harness: Any) -> None:
    # another pipeline sharing the file (stream "tasks_other") was killed after
    # storing a row; this run (stream nps) ends normally: that row stays for
    # its own rerun, and no nps record matches it, identical as it may be
    config = _config(harness, bulk=False)
    text = harness.fixture(KILL)
    first = harness.run(config, text)
    assert first.error is None
    item = Prepared(
        inputs=[0], payload={"Subject": "Journal 1", "Description": "ct-jrn-01"}
    )
    other = InsertJournal(harness.journal_path)
    other.add_rows(
        Scope("tasks_other", "Task"), [JournalRow(item_digest(item), "00Tx", 1)]
    )
    other.close()
    run = harness.run(config, text)
    assert run.error is None
    assert run.summary["nps"]["already_inserted"] == 0
    assert set(_stored(harness).values()) == {2}  # nps inserted its 10 again
    rows, jobs = _journal(harness.journal_path)
    assert (len(rows), jobs) == (1, 0)  # the other stream's row


def test_insert_journal_off_inserts_again_as_before_and_writes_no_file(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(harness.tmp_path)
    config = _config(harness, bulk=False, insert_journal_path="")
    text = harness.fixture(KILL)
    first = harness.run(config, text)
    second = harness.run(config, text)
    assert first.error is None
    assert second.error is None
    assert second.summary["nps"]["already_inserted"] == 0
    assert set(_stored(harness).values()) == {2}  # no key: a rerun inserts again
    assert not list(harness.tmp_path.rglob("*.sqlite3"))


def test_the_default_journal_is_private_and_a_dry_run_creates_none(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(harness, bulk=False)
    del config["insert_journal_path"]
    live_dir = harness.tmp_path / "live"
    live_dir.mkdir()
    monkeypatch.chdir(live_dir)
    assert harness.run(config, harness.fixture(KILL)).error is None
    journal = live_dir / ".target-salesforce" / "insert-journal.sqlite3"
    assert journal.stat().st_mode & 0o777 == 0o600

    dry_dir = harness.tmp_path / "dry"
    dry_dir.mkdir()
    monkeypatch.chdir(dry_dir)
    run = harness.run({**config, "dry_run": True}, harness.fixture(KILL))
    assert run.error is None
    assert not (dry_dir / ".target-salesforce").exists()


# ---------------------------------------------------------------- the journal itself


def test_a_sent_item_and_its_bulk_result_row_have_one_digest() -> None:
    item = Prepared(inputs=[0], payload={"LastName": "Ng", "Email": None, "X__c": 1.5})
    # the job's columns come from its whole batch, in another order
    row = {"sf__Id": "003x", "Email": "#N/A", "Other__c": "", "LastName": "Ng"}
    row["X__c"] = "1.5"
    columns = ["Other__c", "Email", "LastName", "X__c"]
    assert result_row_digest(columns, row) == item_digest(item)
    row["X__c"] = "2"
    assert result_row_digest(columns, row) != item_digest(item)


def test_each_row_of_an_earlier_run_skips_one_record_of_its_own_stream_only() -> None:
    earlier = AlreadyInserted(
        [(1, "s", "Contact", "d1", "003a"), (2, "s", "Contact", "d1", None)]
    )
    contacts = Scope("s", "Contact")
    assert earlier.take(contacts, "d1") == (1, "003a")
    assert earlier.take(Scope("s", "Account"), "d1") is None
    assert earlier.take(Scope("other", "Contact"), "d1") is None
    assert earlier.take(contacts, "d1") == (2, None)
    assert earlier.take(contacts, "d1") is None


def test_two_runs_cannot_share_one_journal(tmp_path: Path) -> None:
    path = tmp_path / "j" / "insert-journal.sqlite3"
    first = InsertJournal(path)
    try:
        with pytest.raises(ConfigurationError, match="in use by another run"):
            InsertJournal(path)
    finally:
        first.close()
    InsertJournal(path).close()  # free again once the first run closed it


def test_a_journal_from_before_streams_opens_and_matches_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE rows (id INTEGER PRIMARY KEY, sobject TEXT NOT NULL, "
        "digest TEXT NOT NULL, sf_id TEXT, run_id TEXT NOT NULL, seq INTEGER NOT NULL);"
        "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, sobject TEXT NOT NULL, "
        "columns TEXT NOT NULL, run_id TEXT NOT NULL);"
        "INSERT INTO rows (sobject, digest, sf_id, run_id, seq) "
        "VALUES ('Task', 'd1', '00T1', 'old', 1);"
        "INSERT INTO jobs VALUES ('750x', 'Task', '[\"Subject\"]', 'old');"
    )
    db.commit()
    db.close()
    journal = InsertJournal(path)
    try:
        assert journal.earlier_rows().take(Scope("nps", "Task"), "d1") is None
        [job] = journal.open_jobs()
        assert (job.job_id, job.scope) == ("750x", Scope("", "Task"))
    finally:
        journal.close()
