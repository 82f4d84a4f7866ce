"""The state store: a new one is never silent, and a lost one can be recovered.

A run on an ephemeral worker starts with an empty `state_dir` each time: the target
says so (start of run, run summary, summary file). `target-clevertap-rebuild-ledger`
restores duplicate protection from CleverTap's export, and references to Contacts
and Leads keyed on `SF_<Object>_{Id}` resolve without the identity map.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from target_clevertap.mapping_load import load_mappings
from target_clevertap.refs import ComputedReferences

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "target_clevertap"
NEW_STORE = "is new and empty"


def _new_store_lines(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if NEW_STORE in r.getMessage()]


def test_a_new_store_is_announced_at_the_start_and_in_the_summary(
    clevertap_emulator, ct_config, run_target, tmp_path, caplog
):
    """The holdout replay: the same input twice, each time on a fresh store."""
    summary_path = tmp_path / "summary.json"
    config = {**ct_config, "summary_path": str(summary_path)}
    for worker in ("worker-1", "worker-2"):
        caplog.clear()
        state_dir = tmp_path / worker
        run_target({**config, "state_dir": str(state_dir)}, "contacts_and_tasks.singer")
        (store,) = state_dir.glob("*.sqlite")
        start, summary = _new_store_lines(caplog)
        assert str(store) in start
        assert "duplicate protection covers only events sent from now on" in start
        messages = [r.getMessage() for r in caplog.records]
        assert messages.index(start) < min(
            i for i, m in enumerate(messages) if m.startswith("Summary for stream")
        )
        assert summary.startswith("Summary: ")
        assert str(store) in summary
        written = json.loads(summary_path.read_text())
        assert written["state_store"] == str(store)
        assert written["state_store_new"] is True
        assert summary_path.stat().st_mode & 0o777 == 0o600
    # what the warning is about: the second fresh store sent every event again
    assert len(clevertap_emulator.events(evtName="Task Created")) == 6
    caplog.clear()
    again = {**config, "state_dir": str(tmp_path / "worker-2")}
    run = run_target(again, "contacts_and_tasks.singer")
    assert _new_store_lines(caplog) == []
    assert json.loads(summary_path.read_text())["state_store_new"] is False
    assert run.stats("Task")["duplicates_suppressed"] == 3


def test_dry_run_without_state_url_does_not_import_psycopg(ct_config, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**ct_config, "dry_run": True}))
    script = (
        "import sys\n"
        "from target_clevertap.target import TargetCleverTap\n"
        "target = TargetCleverTap(config=sys.argv[1], parse_env_config=False)\n"
        "with open(sys.argv[2], encoding='utf-8') as fh:\n"
        "    target.listen(fh)\n"
        "print('psycopg' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(config),
            str(FIXTURES / "contacts_and_tasks.singer"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip().endswith("False"), done.stderr[-500:]
    assert (tmp_path / "dry-run.jsonl").exists()


def test_rebuilt_ledger_makes_a_load_on_a_fresh_store_send_no_event_again(
    clevertap_emulator, ct_config, run_target, tmp_path
):
    run_target(ct_config, "contacts_and_tasks.singer")
    assert len(clevertap_emulator.events(evtName="Task Created")) == 3
    fresh = tmp_path / "lost-and-new"
    # as Meltano runs the plugin command: settings in TARGET_CLEVERTAP_* variables
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_CLEVERTAP")}
    for name, value in {**ct_config, "state_dir": str(fresh)}.items():
        env[f"TARGET_CLEVERTAP_{name.upper()}"] = str(value)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "target_clevertap.rebuild",
            *("--config", "ENV", "--from", "2024-01-01", "--to", "2024-01-31"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Event 'Task Created': 3 event keys recorded as sent" in done.stderr
    assert ct_config["passcode"] not in done.stderr
    run = run_target(
        {**ct_config, "state_dir": str(fresh)}, "contacts_and_tasks.singer"
    )
    assert run.stats("Task")["events_sent"] == 0
    assert run.stats("Task")["duplicates_suppressed"] == 3
    assert len(clevertap_emulator.events(evtName="Task Created")) == 3


def test_references_resolve_without_the_map_from_salesforce_ids():
    refs = ComputedReferences.from_mappings(
        load_mappings(None, FIXTURES / "salesforce_mappings.yml")
    )
    assert refs.identities("Who", "003A00000012345AAA") == [
        "SF_Contact_003A00000012345AAA"
    ]
    assert refs.identities("Who", "00QA00000012345AAA") == [
        "SF_Lead_00QA00000012345AAA"
    ]
    assert refs.identities("Contact", "003B") == ["SF_Contact_003B"]
    assert refs.identities("Lead", "00QB") == ["SF_Lead_00QB"]
    assert refs.identities("Contact", "00QB") is None  # a Lead's Id, not a Contact's
    assert refs.identities("Who", "005B") is None  # a User: no person of ours
    assert refs.identities("Account", "001B") is None  # keyed by its contacts
    assert refs.identities("Opportunity", "006B") is None  # keyed by {ref: ...}


def test_a_lost_map_does_not_turn_references_into_rejects(
    clevertap_emulator, ct_config, run_target, read_rejects, tmp_path
):
    run_target(ct_config, "contacts_five.singer")
    lost = {**ct_config, "state_dir": str(tmp_path / "lost")}
    run = run_target(lost, "tasks_only.singer")
    assert read_rejects() == []
    assert run.stats("Task")["events_sent"] == 3
    created = clevertap_emulator.events(evtName="Task Created")
    assert sorted(e["identity"] for e in created) == [
        "SF_Contact_003C0001",
        "SF_Contact_003C0002",
        "SF_Contact_003C0003",
    ]


def test_a_state_url_that_is_not_postgresql_stops_without_showing_it(
    ct_config, tmp_path
):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({**ct_config, "state_url": "mysql://u:SECRET-PW-77@db/x"})
    )
    done = subprocess.run(
        [sys.executable, "-m", "target_clevertap", "--config", str(config)],
        input="",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "state_url must be a postgresql:// URL" in done.stderr
    assert "SECRET-PW-77" not in done.stderr + done.stdout


def test_an_unreachable_postgresql_store_stops_the_run_clearly(ct_config, tmp_path):
    from sandbox.server import free_port  # noqa: PLC0415 - test-only import

    url = f"postgresql://u:SECRET-PW-78@127.0.0.1:{free_port()}/db"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**ct_config, "state_url": url}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "target_clevertap",
            *("--config", str(config)),
            *("--input", str(FIXTURES / "contacts_and_tasks.singer")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "target-clevertap stopped: state store: cannot connect to" in done.stderr
    assert "postgresql://u@127.0.0.1:" in done.stderr
    assert "SECRET-PW-78" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert done.stdout.strip() == ""  # no STATE
