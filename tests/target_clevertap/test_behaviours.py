"""target-clevertap against the CleverTap emulator: one Singer file per behaviour."""

from __future__ import annotations

import gzip
import io
import json
import stat
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from target_clevertap import counters, ledger
from target_clevertap.client import CleverTapClient, CleverTapError
from target_clevertap.target import TargetCleverTap


def _profile(emulator: Any, identity: str) -> dict[str, Any]:
    found: list[dict[str, dict[str, Any]]] = emulator.profiles(identity=identity)
    assert len(found) == 1, found
    return found[0]["profileData"]


def test_typed_values_become_clevertap_types(clevertap_emulator, ct_config, run_target):
    run = run_target(ct_config, "typed_values.singer")
    data = _profile(clevertap_emulator, "SF_Contact_003C0001")
    assert data["DOB"] == {"$date": 642902400}  # 1990-05-17, midnight UTC
    assert data["CreatedDate"] == {"$date": 1704186000}
    assert data["NumberOfEmployees__c"] == 3001.5
    assert (
        _profile(clevertap_emulator, "SF_Contact_003C0002")["NumberOfEmployees__c"]
        == 42
    )
    assert data["MSG-email"] is False
    assert data["MSG-sms"] is True
    assert data["MSG-whatsapp"] is True
    assert data["Name"] == "First1 Last1"
    assert data["Job Title"] == "CTO"
    assert data["Source"] == "Salesforce"
    assert "HasOptedOutOfEmail" not in data
    assert run.stats("Contact")["accepted"] == 2
    assert run.states[-1] == {"bookmarks": {"Contact": {"n": 2}}}


def test_phone_numbers_become_e164_and_an_invalid_one_is_left_out_of_the_profile(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    # CleverTap refuses a whole profile for an invalid Phone (code 516): the
    # field is left out so the rest (Email, opt-outs, name) still arrives
    run = run_target(ct_config, "phone_e164.singer")
    assert (
        _profile(clevertap_emulator, "SF_Contact_003C0001")["Phone"] == "+14155551234"
    )
    assert (
        _profile(clevertap_emulator, "SF_Contact_003C0002")["Phone"] == "+442079460958"
    )
    third = _profile(clevertap_emulator, "SF_Contact_003C0003")
    assert "Phone" not in third
    assert third["Email"] == "person3@example.com"
    assert read_rejects() == []
    stats = run.stats("Contact")
    assert (stats["accepted"], stats["rejected"]) == (3, 0)
    assert stats["dropped_fields"] == {"Phone": 1}


def test_multi_picklist_becomes_a_deduplicated_list_of_at_most_100(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "multi_picklist.singer")
    first = _profile(clevertap_emulator, "SF_Contact_003C0001")
    assert first["Interests__c"] == ["Golf", "Tennis", "Chess"]
    second = _profile(clevertap_emulator, "SF_Contact_003C0002")
    assert len(second["Interests__c"]) == 100


def test_address_objects_are_flattened(clevertap_emulator, ct_config, run_target):
    run_target(ct_config, "address_flattening.singer")
    data = _profile(clevertap_emulator, "SF_Contact_003C0001")
    assert data["MailingCity"] == "Springfield"
    assert data["MailingPostalCode"] == "62701"
    assert data["MailingLatitude"] == 39.78
    assert "MailingAddress" not in data


def test_missing_identity_is_rejected_with_reason(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    config = {**ct_config, "mappings_file": None}  # default mapping: keyed on Email
    run = run_target(config, "missing_identity.singer")
    assert [p["identity"] for p in clevertap_emulator.profiles()] == [
        "person1@example.com"
    ]
    rejects = read_rejects()
    assert [(r["key"], r["code"], r["field"]) for r in rejects] == [
        ("003C0002", "missing_identity", "Email"),
        ("003C0003", "missing_identity", "Email"),
    ]
    stats = run.stats("Contact")
    assert stats["received"] == 3
    assert stats["accepted"] + stats["rejected"] == 3


def test_invalid_email_is_rejected_and_the_rest_load(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    run_target(ct_config, "invalid_email.singer")
    assert len(clevertap_emulator.profiles()) == 2
    (reject,) = read_rejects()
    assert (reject["key"], reject["code"], reject["field"]) == (
        "003C0002",
        "invalid_email",
        "Email",
    )


def test_schema_invalid_record_is_a_reject_not_a_crash(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    run = run_target(ct_config, "invalid_record.singer")
    assert len(clevertap_emulator.profiles()) == 2
    (reject,) = read_rejects()
    assert reject["code"] == "invalid_record"
    assert reject["field"] == "NumberOfEmployees__c"
    assert reject["record"]["NumberOfEmployees__c"] == "many"
    assert run.states  # the run completed


def test_decimal_under_multiple_of_is_checked_not_a_crash(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    # `multipleOf` (database taps declare it for NUMERIC columns) on decimal
    # input stopped the run inside fastjsonschema; now it is checked exactly
    run = run_target(ct_config, "decimal_multiple_of.singer")
    assert len(clevertap_emulator.profiles()) == 3
    (reject,) = read_rejects()
    assert (reject["key"], reject["code"]) == ("003C0002", "invalid_record")
    assert reject["field"] == "NumberOfEmployees__c"
    assert "multiple of 0.01" in reject["message"]
    assert run.states


def test_partial_failure_writes_rejects_with_code(
    clevertap_emulator, ct_config, run_target, read_rejects, tmp_path
):
    clevertap_emulator.fault("record_failure", path="/1/upload", position=2, code=555)
    run = run_target(ct_config, "contacts_five.singer")
    assert len(clevertap_emulator.profiles()) == 4
    (reject,) = read_rejects()
    assert reject["code"] == "555"
    assert reject["key"] == "003C0002"
    assert reject["record"]["Email"] == "person2@example.com"
    assert reject["record"]["CreatedDate"] == "2024-01-02T09:00:00.000000Z"  # as input
    assert ct_config["passcode"] not in (tmp_path / "rejects.jsonl").read_text()
    mode = stat.S_IMODE((tmp_path / "rejects.jsonl").stat().st_mode)
    assert mode == 0o600
    stats = run.stats("Contact")
    assert (stats["accepted"], stats["rejected"]) == (4, 1)


def test_unprocessed_partial_maps_every_entry_to_its_record(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    clevertap_emulator.fault("unprocessed_partial", path="/1/upload", processed=3)
    run_target(ct_config, "contacts_five.singer")
    assert sorted(r["key"] for r in read_rejects()) == ["003C0004", "003C0005"]
    assert len(clevertap_emulator.profiles()) == 3


def test_429_storm_is_retried_until_it_passes(
    clevertap_emulator, ct_config, run_target
):
    clevertap_emulator.fault("status", status=429, times=6, path="/1/upload")
    run = run_target(ct_config, "contacts_and_tasks.singer")
    assert len(clevertap_emulator.profiles()) == 3
    assert len(clevertap_emulator.events(evtName="Task Created")) == 3
    assert run.target.loader.client.retries == 6
    assert run.states


def test_500_then_success_loads_everything_once(
    clevertap_emulator, ct_config, run_target
):
    clevertap_emulator.fault("status", status=500, times=1, path="/1/upload")
    clevertap_emulator.fault("status", status=503, times=1, path="/1/upload")
    run_target(ct_config, "contacts_and_tasks.singer")
    assert len(clevertap_emulator.profiles()) == 3
    assert len(clevertap_emulator.events()) == 3


def test_persistent_5xx_stops_the_run_without_state(
    clevertap_emulator, ct_config, run_target
):
    clevertap_emulator.fault("status", status=503, times=100, path="/1/upload")
    with pytest.raises(CleverTapError, match="503"):
        run_target({**ct_config, "max_retries": 3}, "contacts_five.singer")


def test_401_names_account_and_region_never_the_passcode(ct_config, run_target, caplog):
    config = {**ct_config, "passcode": "WRONG-SECRET-123", "region": "in1"}
    with pytest.raises(CleverTapError) as err:
        run_target(config, "contacts_five.singer")
    assert "SANDBOX-ACCOUNT" in str(err.value)
    assert "in1" in str(err.value)
    assert "WRONG-SECRET-123" not in str(err.value)
    assert "WRONG-SECRET-123" not in caplog.text


def test_progress_and_summary_are_logged(ct_config, run_target, caplog, monkeypatch):
    monkeypatch.setattr(counters, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(counters, "PROGRESS_CHECK_EVERY", 1)
    run_target(ct_config, "contacts_and_tasks.singer")
    assert "Progress: " in caplog.text
    assert "rec/s" in caplog.text
    assert "Summary for stream Task" in caplog.text
    assert '"events_sent": 3' in caplog.text
    assert ct_config["passcode"] not in caplog.text


def test_lost_reply_after_store_sends_no_duplicate_event(
    clevertap_emulator, ct_config, run_target
):
    clevertap_emulator.fault("lost_reply", path="/1/upload", times=2)
    run = run_target(ct_config, "contacts_and_tasks.singer")
    events = clevertap_emulator.events(evtName="Task Created")
    assert sorted(e["evtData"]["Subject"] for e in events) == [
        "Call 1",
        "Call 2",
        "Call 3",
    ]
    assert len(clevertap_emulator.profiles()) == 3
    assert run.states


def test_lost_reply_on_events_is_reconciled_not_resent(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "contacts_five.singer")  # people known from a first run
    clevertap_emulator.fault("lost_reply", path="/1/upload", times=1)
    run = run_target(ct_config, "tasks_only.singer")
    events = clevertap_emulator.events(evtName="Task Created")
    assert sorted(e["evtData"]["Subject"] for e in events) == [
        "Call 1",
        "Call 2",
        "Call 3",
    ]
    assert [r["fault"] for r in clevertap_emulator.requests_log()].count(
        "lost_reply"
    ) == 1
    assert any(r["path"] == "/1/events.json" for r in clevertap_emulator.requests_log())
    assert run.stats("Task")["accepted"] == 3
    assert run.states


def test_events_in_doubt_block_state_and_settle_on_the_next_run(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "contacts_five.singer")
    clevertap_emulator.fault("lost_reply", path="/1/upload", times=1)
    clevertap_emulator.fault("status", status=503, path="/1/events.json", times=100)
    out = io.StringIO()
    with pytest.raises(CleverTapError, match="in doubt"), redirect_stdout(out):
        run_target({**ct_config, "max_retries": 2}, "tasks_only.singer")
    assert out.getvalue() == ""  # no STATE past events in doubt
    assert len(clevertap_emulator.events(evtName="Task Created")) == 3  # they landed
    clevertap_emulator.clear_faults()
    rerun = run_target(ct_config, "tasks_only.singer")
    assert len(clevertap_emulator.events(evtName="Task Created")) == 3  # not twice
    assert rerun.stats("Task")["duplicates_suppressed"] == 3
    assert rerun.states


def test_connection_reset_before_storing_resends_the_events(
    clevertap_emulator, ct_config, run_target
):
    clevertap_emulator.fault("reset", path="/1/upload", times=2)
    run_target(ct_config, "contacts_and_tasks.singer")
    assert len(clevertap_emulator.events(evtName="Task Created")) == 3
    assert len(clevertap_emulator.profiles()) == 3


def test_replay_of_the_whole_input_sends_no_duplicate_events(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "contacts_and_tasks.singer")
    second = run_target(ct_config, "contacts_and_tasks.singer")
    assert len(clevertap_emulator.events()) == 3
    assert second.stats("Task")["duplicates_suppressed"] == 3
    assert second.stats("Task")["events_sent"] == 0
    assert second.states


def test_deleted_rows_are_ignored_by_default(clevertap_emulator, ct_config, run_target):
    run = run_target(ct_config, "deleted_rows.singer")
    assert [p["identity"] for p in clevertap_emulator.profiles()] == [
        "SF_Contact_003C0001"
    ]
    assert run.stats("Contact")["skipped"] == {"deleted": 1}


def test_deleted_rows_can_delete_the_profile(clevertap_emulator, ct_config, run_target):
    run_target(ct_config, "contacts_five.singer")
    run = run_target(
        {**ct_config, "deleted_records": "delete_profile"}, "deleted_rows.singer"
    )
    identities = {p["identity"] for p in clevertap_emulator.profiles()}
    assert "SF_Contact_003C0002" not in identities
    assert "SF_Contact_003C0001" in identities
    assert run.stats("Contact")["profiles_deleted"] == 1


def test_deleted_rows_can_become_an_event(clevertap_emulator, ct_config, run_target):
    run_target({**ct_config, "deleted_records": "event"}, "deleted_rows.singer")
    (event,) = clevertap_emulator.events(evtName="Contact Deleted")
    assert event["identity"] == "SF_Contact_003C0002"
    assert event["ts"] == 1705737600  # SystemModstamp 2024-01-20T08:00Z


def test_dry_run_writes_payloads_and_uploads_nothing(
    clevertap_emulator, ct_config, run_target, tmp_path
):
    run = run_target({**ct_config, "dry_run": True}, "contacts_and_tasks.singer")
    assert clevertap_emulator.requests_log() == []
    lines = (tmp_path / "dry-run.jsonl").read_text().splitlines()
    assert len(lines) == 6
    assert '"type":"profile"' in lines[0].replace(" ", "")
    assert run.states == []  # no STATE from a dry run


def test_task_whoid_resolves_to_the_contacts_identity(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    run = run_target(ct_config, "task_whoid.singer")
    created = clevertap_emulator.events(evtName="Task Created")
    # 003UNKNOWN was never loaded: the map cannot tell, but Contacts are keyed
    # on SF_Contact_{Id} and 003 is the Contact key prefix (refs.py)
    assert sorted(e["identity"] for e in created) == [
        "SF_Contact_003C0009",
        "SF_Contact_003UNKNOWN",
    ]
    (completed,) = clevertap_emulator.events(evtName="Task Completed")
    assert completed["ts"] == 1704452400  # CompletedDateTime 2024-01-05T11:00Z
    assert read_rejects() == []
    assert run.states[-1] == {"bookmarks": {"Contact": {"n": 1}}}


def test_lead_conversion_links_the_lead_to_the_contact(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "lead_conversion.singer")
    (event,) = clevertap_emulator.events(evtName="Task Created")
    assert event["identity"] == "SF_Contact_003C0007"
    assert {p["identity"] for p in clevertap_emulator.profiles()} == {
        "SF_Lead_00QL0001",
        "SF_Contact_003C0007",
    }


def test_identity_map_is_kept_across_runs(clevertap_emulator, ct_config, run_target):
    run_target(ct_config, "contacts_five.singer")
    path = Path(ct_config["state_dir"])
    (db,) = path.glob("*.sqlite")
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    run_target(ct_config, "contacts_and_tasks.singer")
    assert {e["identity"] for e in clevertap_emulator.events()} == {
        "SF_Contact_003C0001",
        "SF_Contact_003C0002",
        "SF_Contact_003C0003",
    }


def test_max_reject_ratio_fails_the_run_without_state(ct_config, run_target):
    with pytest.raises(CleverTapError, match="max_reject_ratio"):
        run_target({**ct_config, "max_reject_ratio": 0.1}, "invalid_email.singer")


def test_on_reject_fail_stops_at_the_first_reject(ct_config, run_target):
    with pytest.raises(CleverTapError, match="invalid_email"):
        run_target({**ct_config, "on_reject": "fail"}, "invalid_email.singer")


def test_crash_after_send_is_settled_at_the_start_of_the_next_run(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "contacts_and_tasks.singer")
    # as if the run had died after sending, before reading the reply
    store = ledger.StateStore(ct_config["state_dir"], ct_config["account_id"])
    rows = store.unsettled()
    assert rows == []
    keys = [e["evtData"]["ct_event_key"] for e in clevertap_emulator.events()]
    store.mark(keys, ledger.PENDING)
    # and one event that was marked pending but never reached CleverTap
    store.mark_pending([("0123456789abcdef0123", "Task Created", 1704340800, "Task")])
    store.close()
    rerun = run_target(ct_config, "contacts_and_tasks.singer")
    assert len(clevertap_emulator.events()) == 3
    assert rerun.stats("Task")["duplicates_suppressed"] == 3
    check = ledger.StateStore(ct_config["state_dir"], ct_config["account_id"])
    assert check.unsettled() == []
    assert check.event_statuses(["0123456789abcdef0123"]) == {}  # forgotten: resendable
    check.close()


def test_batch_messages_are_mapped_like_records(
    clevertap_emulator, ct_config, tmp_path
):
    lines = (
        (Path(__file__).parents[1] / "fixtures" / "target_clevertap")
        .joinpath("contacts_five.singer")
        .read_text()
        .splitlines()
    )
    schema = lines[0]
    records = [json.loads(x)["record"] for x in lines if '"RECORD"' in x]
    batch = tmp_path / "contacts.jsonl.gz"
    with gzip.open(batch, "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    message = {
        "type": "BATCH",
        "stream": "Contact",
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "manifest": [batch.as_uri()],
    }
    target = TargetCleverTap(config=ct_config, parse_env_config=False)
    with redirect_stdout(io.StringIO()):
        target.listen(io.StringIO(f"{schema}\n{json.dumps(message)}\n"))
    assert len(clevertap_emulator.profiles()) == 5
    assert target.loader.stream_stats("Contact").accepted == 5


def test_reconciliation_waits_for_an_export_still_in_progress(
    clevertap_emulator, ct_config, run_target, monkeypatch
):
    monkeypatch.setattr(CleverTapClient, "in_progress_wait", 0.0)
    run_target(ct_config, "contacts_five.singer")
    clevertap_emulator.fault("lost_reply", path="/1/upload", times=1)
    clevertap_emulator.fault(
        "in_progress", path="/1/events.json", method="GET", fetches=2
    )
    run = run_target(ct_config, "tasks_only.singer")
    assert len(clevertap_emulator.events(evtName="Task Created")) == 3
    assert run.states


def test_stream_without_mapping_or_email_is_skipped_with_one_warning(
    clevertap_emulator, ct_config, run_target, caplog
):
    run = run_target(ct_config, "no_mapping.singer")
    warnings = [
        r for r in caplog.records if "Campaign has no mapping" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert run.stats("Campaign")["skipped"] == {"no_mapping": 2}
    assert clevertap_emulator.requests_log() == []
    assert run.states == [{"bookmarks": {"Campaign": {"n": 2}}}]
