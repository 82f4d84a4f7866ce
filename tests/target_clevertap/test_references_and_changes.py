"""References to any mapped stream, `no_person` skips, and change tracking.

Against the CleverTap emulator, one Singer file per behaviour.
"""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from target_clevertap import ledger
from target_clevertap.client import CleverTapError

OPPORTUNITY_NO_PERSON = {"Opportunity": {"profile": {"identity": {"ref": "AccountId"}}}}


def _db(config: dict[str, Any]) -> Path:
    (db,) = Path(config["state_dir"]).glob("*.sqlite")
    return db


# --------------------------------------------------------- gap 1: any stream's Ids


def test_events_only_stream_makes_its_ids_resolvable_for_references(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    # Case maps only events; CaseHistory {ref: CaseId} comes before the Case
    run = run_target(ct_config, "case_history_ref.singer")
    (changed,) = clevertap_emulator.events(evtName="Case Status Changed")
    assert changed["identity"] == "SF_Contact_003C0021"
    assert changed["evtData"]["Previous Status"] == "New"
    assert changed["evtData"]["New Status"] == "Working"
    assert run.stats("CaseHistory")["skipped"] == {"condition_false": 1}
    assert read_rejects() == []
    assert run.states[-1] == {"bookmarks": {"Case": {"n": 1}}}


def test_stream_ids_stay_resolvable_in_a_later_run(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    run_target(ct_config, "case_history_ref.singer")
    with sqlite3.connect(_db(ct_config)) as db:
        row = db.execute(
            "SELECT idents FROM identities WHERE obj='Case' AND id='500K0001'"
        ).fetchone()
    assert row == ('["SF_Contact_003C0021"]',)
    run = run_target(ct_config, "case_history_next.singer")
    events = clevertap_emulator.events(evtName="Case Status Changed")
    assert [e["evtData"]["New Status"] for e in events] == ["Working", "Closed"]
    assert {e["identity"] for e in events} == {"SF_Contact_003C0021"}
    assert run.stats("CaseHistory")["accepted"] == 1
    assert read_rejects() == []


# -------------------------------------------- gap 2: seen-but-nobody vs never seen


def test_reference_to_a_record_that_names_nobody_is_skipped_as_no_person(
    clevertap_emulator, ct_config, run_target, read_rejects, caplog
):
    config = {**ct_config, "mappings": OPPORTUNITY_NO_PERSON}
    run = run_target(config, "opportunity_no_contacts.singer")
    assert run.stats("Opportunity")["skipped"] == {"account_without_contacts": 1}
    history = run.stats("OpportunityHistory")
    assert history["skipped"] == {"no_person": 1}
    assert history["accepted"] == 1
    assert history["rejected_by_code"] == {"unresolved_reference": 1}
    (event,) = clevertap_emulator.events(evtName="Opportunity Stage Changed")
    assert event["identity"] == "SF_Contact_003C0031"
    (reject,) = read_rejects()
    assert (reject["stream"], reject["key"]) == ("OpportunityHistory", "008H0033")
    assert reject["code"] == "unresolved_reference"
    assert "006NEVERSEEN was never seen" in reject["message"]
    explained = [
        r.getMessage() for r in caplog.records if "(no_person)" in r.getMessage()
    ]
    assert len(explained) == 1
    assert "Opportunity 006O0032" in explained[0]
    assert "names nobody" in explained[0]
    assert run.states[-1] == {"bookmarks": {"OpportunityHistory": {"n": 3}}}


def test_no_person_outcome_is_kept_across_runs(ct_config, run_target, read_rejects):
    config = {**ct_config, "mappings": OPPORTUNITY_NO_PERSON}
    run_target(config, "opportunity_no_contacts.singer")
    with sqlite3.connect(_db(ct_config)) as db:
        row = db.execute(
            "SELECT idents FROM identities WHERE obj='Opportunity' AND id='006O0032'"
        ).fetchone()
    assert row == ("[]",)  # seen, names nobody
    rerun = run_target(config, "opportunity_no_contacts.singer")
    assert rerun.stats("OpportunityHistory")["skipped"] == {"no_person": 1}
    codes = [r["code"] for r in read_rejects()]
    assert codes == ["unresolved_reference", "unresolved_reference"]  # 008H0033 x2


# ------------------------------------------------------------ gap 3: change events


def test_first_sighting_of_a_record_sends_no_change_event(
    clevertap_emulator, ct_config, run_target
):
    run = run_target(ct_config, "opportunity_stage_first.singer")
    assert clevertap_emulator.events(evtName="Opportunity Stage Changed") == []
    assert len(clevertap_emulator.events(evtName="Opportunity Created")) == 1
    assert run.stats("Opportunity")["accepted"] == 1
    db = _db(ct_config)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT stream, key, version, vals FROM tracked").fetchall()
    assert rows == [
        (
            "Opportunity",
            "006O0041",
            1704445200,
            '{"Amount": 5000, "StageName": "Prospecting"}',
        )
    ]


def test_changed_field_sends_an_event_with_previous_and_new_values(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "opportunity_stage_first.singer")
    run_target(ct_config, "opportunity_stage_changes.singer")
    events = clevertap_emulator.events(evtName="Opportunity Stage Changed")
    changes = [
        (
            e["ts"],
            e["evtData"]["Previous Stage"],
            e["evtData"]["New Stage"],
            e["evtData"]["Previous Amount"],
            e["evtData"]["Amount"],
        )
        for e in sorted(events, key=lambda e: e["ts"])
    ]
    assert changes == [
        (1706788800, "Prospecting", "Negotiation", 5000, 5500),  # SystemModstamp
        (1709307000, "Negotiation", "Closed Won", 5500, 5500),
    ]
    assert {e["identity"] for e in events} == {"SF_Contact_003C0041"}


def test_replays_of_tracked_records_send_no_change_event_again(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "opportunity_stage_first.singer")
    run_target(ct_config, "opportunity_stage_changes.singer")
    again = run_target(ct_config, "opportunity_stage_changes.singer")
    # an older version replayed after newer ones: stale, not a change back
    older = run_target(ct_config, "opportunity_stage_first.singer")
    assert len(clevertap_emulator.events(evtName="Opportunity Stage Changed")) == 2
    assert again.stats("Opportunity")["events_sent"] == 0
    assert older.stats("Opportunity")["events_sent"] == 0
    with sqlite3.connect(_db(ct_config)) as conn:
        (vals,) = conn.execute("SELECT vals FROM tracked").fetchone()
    assert '"StageName": "Closed Won"' in vals


def test_failed_run_does_not_remember_values_so_the_rerun_sends_the_change(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "opportunity_stage_first.singer")
    clevertap_emulator.fault("status", status=503, times=100, path="/1/upload")
    with pytest.raises(CleverTapError, match="503"):
        run_target({**ct_config, "max_retries": 2}, "opportunity_stage_changes.singer")
    clevertap_emulator.clear_faults()
    run_target(ct_config, "opportunity_stage_changes.singer")
    events = clevertap_emulator.events(evtName="Opportunity Stage Changed")
    assert sorted(e["evtData"]["Previous Stage"] for e in events) == [
        "Negotiation",
        "Prospecting",
    ]
    store = ledger.StateStore(ct_config["state_dir"], ct_config["account_id"])
    try:
        version, values = store.tracked("Opportunity", "006O0041") or (None, {})
    finally:
        store.close()
    assert (version, values["StageName"]) == (1709307000, "Closed Won")


def test_dry_run_does_not_remember_tracked_values(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "opportunity_stage_first.singer")
    run_target({**ct_config, "dry_run": True}, "opportunity_stage_changes.singer")
    run_target(ct_config, "opportunity_stage_changes.singer")
    assert len(clevertap_emulator.events(evtName="Opportunity Stage Changed")) == 2


def test_dry_run_sees_changes_across_windows_without_remembering_them(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "opportunity_stage_first.singer")
    dry = {**ct_config, "dry_run": True, "batch_size_rows": 1}  # a window per record
    run_target(dry, "opportunity_stage_changes.singer")
    lines = Path(ct_config["dry_run_path"]).read_text(encoding="utf-8").splitlines()
    changes = [line for line in lines if "Opportunity Stage Changed" in line]
    assert len(changes) == 2
    assert "Negotiation" in changes[1]  # the stage before, from the previous window
    run_target(ct_config, "opportunity_stage_changes.singer")
    assert len(clevertap_emulator.events(evtName="Opportunity Stage Changed")) == 2


HISTORY_TRACKED = {
    "OpportunityHistory": {
        "track_key": "OpportunityId",
        "version_field": "CreatedDate",
        "events": [
            {
                "name": "Opportunity Stage Changed",
                "identity": {"ref": "OpportunityId"},
                "when": "changed(StageName)",
                "properties": {
                    "include": ["StageName", "Amount"],
                    "rename": {"StageName": "New Stage"},
                    "previous": {"StageName": "Previous Stage"},
                },
            }
        ],
    }
}


def test_history_rows_tracked_per_parent_carry_the_previous_stage(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    config = {**ct_config, "mappings": HISTORY_TRACKED}
    # the history rows come first and wait for the Opportunity and Contact
    run = run_target(config, "opportunity_history_stages.singer")
    events = clevertap_emulator.events(evtName="Opportunity Stage Changed")
    changes = sorted(
        (e["ts"], e["evtData"]["Previous Stage"], e["evtData"]["New Stage"])
        for e in events
    )
    assert changes == [
        (1707472800, "Prospecting", "Negotiation"),  # CreatedDate 2024-02-09T10:00Z
        (1708423200, "Negotiation", "Closed Won"),
    ]
    assert {e["identity"] for e in events} == {"SF_Contact_003C0051"}
    assert run.stats("OpportunityHistory")["skipped"] == {"condition_false": 2}
    assert read_rejects() == []
    replay = run_target(config, "opportunity_history_stages.singer")
    assert replay.stats("OpportunityHistory")["events_sent"] == 0
    assert len(clevertap_emulator.events(evtName="Opportunity Stage Changed")) == 2
