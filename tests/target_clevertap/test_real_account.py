"""Behaviour against a real account (issue 14): what CleverTap really does.

5xx after store, ingestion lag, in-progress reads, future days, delete bodies,
account-wide caps, old events, request size, dryRun=1 and unmatched replies.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from contextlib import redirect_stdout
from typing import Any

import pytest
import requests
from target_clevertap import batches, client, replies
from target_clevertap.client import CleverTapClient, CleverTapError
from target_clevertap.reconcile import day_range
from target_clevertap.target import TargetCleverTap

from tests.target_clevertap.conftest import FIXTURES


def _subjects(emulator: Any) -> list[str]:
    return sorted(
        e["evtData"]["Subject"] for e in emulator.events(evtName="Task Created")
    )


def _export_reads(emulator: Any) -> int:
    return sum(
        1
        for r in emulator.requests_log()
        if r["path"] == "/1/events.json" and r["method"] == "POST"
    )


# ------------------------------------------------------------- 5xx after store


@pytest.mark.parametrize("status", [500, 502, 504])
def test_5xx_after_the_batch_was_stored_sends_no_duplicate_event(
    clevertap_emulator, ct_config, run_target, status
):
    run_target(ct_config, "contacts_five.singer")
    clevertap_emulator.fault(
        "status_after_store", status=status, path="/1/upload", times=1
    )
    run = run_target(ct_config, "tasks_only.singer")
    assert _subjects(clevertap_emulator) == ["Call 1", "Call 2", "Call 3"]
    assert _export_reads(clevertap_emulator) >= 1  # settled by reading, not resending
    assert run.stats("Task")["accepted"] == 3
    assert run.states


def test_503_and_429_on_events_stay_plain_retries(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "contacts_five.singer")
    clevertap_emulator.fault("status", status=503, path="/1/upload", times=1)
    clevertap_emulator.fault("status", status=429, path="/1/upload", times=1)
    run_target(ct_config, "tasks_only.singer")
    assert _subjects(clevertap_emulator) == ["Call 1", "Call 2", "Call 3"]
    assert _export_reads(clevertap_emulator) == 0


@pytest.mark.parametrize("status", [501, 520])
def test_a_gateway_5xx_after_the_store_is_checked_in_get_events_not_resent(
    clevertap_emulator, ct_config, run_target, status
):
    # any 5xx but 503 may come after the batch was stored (a CDN's 520-524
    # too): the events are looked up before anything is sent again
    run_target(ct_config, "contacts_five.singer")
    clevertap_emulator.fault("status_after_store", status=status, path="/1/upload")
    run = run_target(ct_config, "tasks_only.singer")
    assert _subjects(clevertap_emulator) == ["Call 1", "Call 2", "Call 3"]
    assert _export_reads(clevertap_emulator) >= 1
    assert run.states


def test_an_event_time_in_the_future_is_sent_as_now_and_checked_not_resent(
    clevertap_emulator, ct_config, run_target
):
    # a deal won before its CloseDate (2099): Get Events is never asked about a
    # day not begun, so the event goes at the time of sending, which a lost
    # reply's check can find; its key keeps the record's time
    run_target(ct_config, "contacts_five.singer")
    clevertap_emulator.fault("status_after_store", status=502, path="/1/upload")
    before = int(time.time())
    run = run_target(ct_config, "opportunity_won_future.singer")
    (won,) = clevertap_emulator.events(evtName="Opportunity Won")
    assert before <= won["ts"] <= int(time.time())
    assert run.stats("Opportunity")["event_times_in_future"] == 1
    assert run.states


def test_ingestion_lag_is_waited_for_before_anything_is_resent(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "contacts_five.singer")
    clevertap_emulator.fault("status_after_store", status=500, path="/1/upload")
    # the events only show from the second export query on
    clevertap_emulator.fault("ingestion_lag", reads=2, path="/1/upload", times=1)
    config = {**ct_config, "reconcile_lag_seconds": 1, "reconcile_checks": 3}
    run = run_target(config, "tasks_only.singer")
    assert _subjects(clevertap_emulator) == ["Call 1", "Call 2", "Call 3"]
    assert _export_reads(clevertap_emulator) == 2
    assert run.states


def test_events_not_visible_within_the_checks_are_not_resent_blindly(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "contacts_five.singer")
    clevertap_emulator.fault("status_after_store", status=502, path="/1/upload")
    clevertap_emulator.fault("ingestion_lag", seconds=30, path="/1/upload", times=1)
    config = {**ct_config, "reconcile_lag_seconds": 60, "reconcile_checks": 1}
    out = io.StringIO()
    with pytest.raises(CleverTapError, match="in doubt"), redirect_stdout(out):
        run_target(config, "tasks_only.singer")
    assert out.getvalue() == ""  # no STATE past events in doubt
    assert len(clevertap_emulator.events(evtName="Task Created")) == 3  # not resent


@pytest.mark.parametrize(
    "fault",
    [
        # a cursor page answers "still in progress" twice
        {"method": "GET", "fetches": 2},
        # the cursor request itself (POST) does
        {"method": "POST", "requests": 2},
    ],
    ids=["page", "cursor-request"],
)
def test_in_progress_is_retried_whatever_the_http_status(
    clevertap_emulator, ct_config, run_target, monkeypatch, fault
):
    monkeypatch.setattr(CleverTapClient, "in_progress_wait", 0.0)
    run_target(ct_config, "contacts_five.singer")
    clevertap_emulator.fault("lost_reply", path="/1/upload", times=1)
    clevertap_emulator.fault(
        "in_progress", path="/1/events.json", http_status=400, **fault
    )
    run = run_target(ct_config, "tasks_only.singer")
    assert _subjects(clevertap_emulator) == ["Call 1", "Call 2", "Call 3"]
    assert run.states


def test_reconciliation_never_asks_for_a_day_in_the_future() -> None:
    zone = dt.timezone(dt.timedelta(hours=-8))
    now = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC).timestamp()  # Dec 6 there
    assert day_range([int(now) - 60], zone, now) == (20261205, 20261206)
    assert day_range([int(now) - 5 * 86_400], zone, now) == (20261130, 20261202)


# ------------------------------------------------------------- profile deletes


def test_a_delete_counts_only_when_the_body_says_success(
    ct_config, run_target, read_rejects, monkeypatch
):
    run_target(ct_config, "contacts_five.singer")
    monkeypatch.setattr(
        CleverTapClient,
        "delete_profiles",
        lambda _self, _ids: 'CleverTap did not confirm the delete: {"status": "fail"}',
    )
    run = run_target(
        {**ct_config, "deleted_records": "delete_profile"}, "deleted_rows.singer"
    )
    assert run.stats("Contact")["profiles_deleted"] == 0
    (reject,) = read_rejects()
    assert reject["code"] == "delete_not_confirmed"
    assert reject["key"] == "003C0002"


def test_delete_reply_without_success_status_is_not_done() -> None:
    api = CleverTapClient(account_id="A", passcode="P", api_url="http://x", max_tries=1)

    def reply(*_a: Any, **_k: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"status":"fail","error":"no such identity"}'
        return response

    api._request = reply  # type: ignore[method-assign]
    assert "no such identity" in (api.delete_profiles(["a"]) or "")


# ------------------------------------------------------------------ the caps


def test_a_new_event_name_past_the_account_cap_is_a_reject_not_a_drop(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    run_target(ct_config, "contacts_five.singer")
    run = run_target({**ct_config, "account_event_names": 512}, "tasks_only.singer")
    assert clevertap_emulator.events() == []
    rejects = read_rejects()
    assert {r["code"] for r in rejects} == {"event_name_cap"}
    assert {r["field"] for r in rejects} == {"Task Created"}
    assert run.stats("Task")["rejected"] == 3


def test_event_names_sent_are_remembered_and_80_percent_warns(
    clevertap_emulator, ct_config, run_target, read_rejects, caplog
):
    run_target(ct_config, "contacts_five.singer")
    config = {**ct_config, "account_event_names": 511}
    run_target(config, "tasks_only.singer")
    assert "80% warning" in caplog.text
    assert len(clevertap_emulator.events()) == 3
    # the name is the target's own now: a later run may send it again
    run = run_target(config, "tasks_only.singer")
    assert run.stats("Task")["rejected"] == 0
    assert read_rejects() == []


def test_a_new_custom_profile_key_past_the_cap_is_a_reject(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    run = run_target(
        {**ct_config, "account_custom_profile_keys": 256}, "contacts_five.singer"
    )
    assert clevertap_emulator.profiles() == []
    rejects = read_rejects()
    assert rejects
    assert {r["code"] for r in rejects} == {"profile_key_cap"}
    assert "256" in rejects[0]["message"]
    assert run.stats("Contact")["rejected"] == len(rejects)


# ------------------------------------------------------------------ old events


def test_old_events_are_counted_by_age_and_warned_once(ct_config, run_target, caplog):
    run_target(ct_config, "contacts_five.singer")
    run = run_target(ct_config, "tasks_only.singer")
    assert run.stats("Task")["events_by_age"] == {"over_365d": 3}
    assert caplog.text.count("Historical events") == 1
    caplog.clear()
    run_target(ct_config, "tasks_only.singer")
    assert "Historical events" not in caplog.text  # warned on the first run only


def test_events_older_than_the_setting_are_skipped_and_reported(
    clevertap_emulator, ct_config, run_target
):
    run_target(ct_config, "contacts_five.singer")
    run = run_target(
        {**ct_config, "skip_events_older_than_days": 365}, "tasks_only.singer"
    )
    assert clevertap_emulator.events() == []
    stats = run.stats("Task")
    assert stats["skipped"] == {"event_too_old": 3}
    assert stats["old_events_skipped"] == 3
    assert stats["received"] == 3


# ---------------------------------------------------------------- request size


def test_batches_are_split_by_bytes_as_well_as_by_count() -> None:
    items = ["x" * 100] * 10
    out = batches.split(items, 1000, 350, len)
    assert [len(b) for b in out] == [3, 3, 3, 1]
    assert batches.split(["x" * 900], 1000, 350, len) == [["x" * 900]]  # alone
    assert [len(b) for b in batches.split(items, 4, 10_000, len)] == [4, 4, 2]


def test_uploads_above_the_byte_cap_are_split(clevertap_emulator, ct_config) -> None:
    target = TargetCleverTap(config=ct_config, parse_env_config=False)
    target.loader.ctx.max_request_bytes = 400
    with (
        redirect_stdout(io.StringIO()),
        (FIXTURES / "contacts_five.singer").open(encoding="utf-8") as fh,
    ):
        target.listen(fh)
    uploads = [r for r in clevertap_emulator.requests_log() if r["path"] == "/1/upload"]
    assert len(uploads) >= 3
    assert len(clevertap_emulator.profiles()) == 5


# ------------------------------------------------------------------ dryRun=1


def test_dry_run_remote_reports_server_rejects_and_stores_nothing(
    clevertap_emulator, ct_config, run_target, read_rejects
):
    clevertap_emulator.fault("record_failure", positions=[2], code=515)
    run = run_target({**ct_config, "dry_run_remote": True}, "contacts_and_tasks.singer")
    assert clevertap_emulator.profiles() == []
    assert clevertap_emulator.events() == []
    uploads = [r for r in clevertap_emulator.requests_log() if r["path"] == "/1/upload"]
    assert uploads
    assert all("dryRun=1" in r["query"] for r in uploads)
    assert {r["code"] for r in read_rejects()} == {"515"}
    assert run.states == []  # a dry run emits no STATE


# ------------------------------------------------------------ unmatched replies


def _strip_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    real = replies.match_unprocessed

    def unmatched(entries: Any, records: Any) -> replies.Matched:
        bare = [
            {"status": "fail", "code": e.get("code"), "error": "Profile data is bad"}
            for e in entries
        ]
        return real(bare if len(records) > 1 else entries, records)

    monkeypatch.setattr(client, "match_unprocessed", unmatched)


def test_unmatched_profile_entries_resend_the_profiles_once_each(
    clevertap_emulator, ct_config, run_target, read_rejects, monkeypatch
):
    _strip_numbers(monkeypatch)
    clevertap_emulator.fault(
        "record_failure", field="identity", value="SF_Contact_003C0002", code=515
    )
    run = run_target(ct_config, "contacts_five.singer")
    assert len(clevertap_emulator.profiles()) == 4
    (reject,) = read_rejects()
    assert (reject["key"], reject["code"]) == ("003C0002", "515")
    assert run.stats("Contact")["accepted"] == 4
    assert run.states


def test_unmatched_event_entries_are_reconciled_not_fatal(
    clevertap_emulator, ct_config, run_target, read_rejects, monkeypatch
):
    run_target(ct_config, "contacts_five.singer")
    _strip_numbers(monkeypatch)
    clevertap_emulator.fault(
        "record_failure", field="evtData.Subject", value="Call 2", code=512, times=1
    )
    run = run_target(ct_config, "tasks_only.singer")
    assert _subjects(clevertap_emulator) == ["Call 1", "Call 3"]
    (reject,) = read_rejects()
    assert (reject["key"], reject["code"]) == ("00T0002", "512")
    assert run.stats("Task")["accepted"] == 2
    assert run.states


def test_reply_json_shapes_are_never_fatal() -> None:
    matched = replies.match_unprocessed(
        ["not an object", {"a": 1, "b": 2}], [{"type": "event"}]
    )
    assert matched.rejections == []
    assert len(matched.unmatched) == 2
    assert json.dumps(replies.loose({"x": 1.0, "y": True})) == '{"x": "1", "y": "true"}'
