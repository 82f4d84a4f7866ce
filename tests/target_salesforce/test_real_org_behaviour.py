"""How the target copes with answers real orgs give (issue 13).

APEX_ERROR, configuration errors that stop the run, the two meanings of
REQUEST_LIMIT_EXCEEDED, duplicate rules, upsert on `Id`, JWT audience with My
Domain, refresh tokens without the secret, and SOAP login from API v65.0.
"""

from __future__ import annotations

from typing import Any

import pytest
from target_salesforce.auth import AuthError, login
from target_salesforce.client import make_session
from target_salesforce.mapping import MappingError, load_mappings
from target_salesforce.preflight import with_defaults
from target_salesforce.target import TargetSalesforce

from tests.target_salesforce.conftest import APEX_LIST

# /ct/nps/* (CleverTapNpsService) catches its DML and answers per record; the
# sample class /ct/contacts/* does not, so a refused record is an APEX_ERROR.
APEX_RECORD = {
    "nps_feedback": {
        "mode": "apex",
        "apex": {
            "path": "ct/nps/feedback",
            "payload": {"email": "{profile.email}", "npsScore": "{score}"},
        },
    }
}
UNCAUGHT_PAYLOAD = {"identity": "{identity}", "name": "{identity}", "score": "{score}"}
UNCAUGHT_RECORD = {
    "nps_feedback": {
        "mode": "apex",
        "apex": {"path": "ct/contacts/upsert", "payload": UNCAUGHT_PAYLOAD},
    }
}
UNCAUGHT_LIST: dict[str, Any] = {
    "nps_feedback": {
        "mode": "apex",
        "apex": {
            "path": "ct/contacts/upsert",
            "batching": "list",
            "list_key": "records",
            "payload": UNCAUGHT_PAYLOAD,
        },
    }
}


def _emails(harness: Any, count: int) -> list[dict[str, Any]]:
    contacts = [c for c in harness.handle.live_records("Contact") if c.get("Email")]
    by_email: dict[str, dict[str, Any]] = {}
    for contact in contacts:
        by_email.setdefault(contact["Email"].lower(), contact)
    return list(by_email.values())[:count]


def _apex_input(harness: Any) -> tuple[str, list[dict[str, Any]]]:
    contacts = _emails(harness, 3)
    text = harness.fixture(
        "nps_apex_bad_score.singer",
        __EMAIL1__=contacts[0]["Email"],
        __EMAIL2__=contacts[1]["Email"],
        __EMAIL3__=contacts[2]["Email"],
    )
    return text, contacts


def _score(harness: Any, contact_id: str) -> Any:
    row = next(
        c for c in harness.handle.live_records("Contact") if c["Id"] == contact_id
    )
    return row["NPS_Score__c"]


def _upserted(harness: Any) -> dict[str, Any]:
    """CleverTap Id -> NPS score of the Contacts the fixture's records wrote."""
    return {
        c["CleverTap_Id__c"]: c["NPS_Score__c"]
        for c in harness.handle.live_records("Contact")
        if (c.get("CleverTap_Id__c") or "").startswith("ct-b-")
    }


# ------------------------------------------------------------------ APEX_ERROR


def _run_refused_by_collections(
    harness: Any, status: int, code: str, message: str, **config: Any
) -> Any:
    """nps_upsert_create.singer while every Collections call answers `status`/`code`."""
    harness.handle.fault(
        "status", status=status, code=code, message=message, path="composite"
    )
    return harness.run(
        harness.config(**config), harness.fixture("nps_upsert_create.singer")
    )


def _assert_stopped_without_state(run: Any, *phrases: str) -> None:
    """The run stopped with an error naming `phrases`: no STATE, nothing rejected."""
    for phrase in phrases:
        assert phrase in str(run.error)
    assert run.states == []
    assert run.rejects == []


def test_apex_error_rejects_the_call_records_and_the_run_goes_on(
    harness: Any,
) -> None:
    text, _ = _apex_input(harness)
    run = harness.run(harness.config(streams=UNCAUGHT_RECORD), text)
    assert run.error is None
    assert run.states  # the run went on and settled every record
    [reject] = run.rejects
    assert reject["code"] == "APEX_ERROR"
    assert reject["message"].startswith("System.DmlException: Upsert failed.")
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in reject["message"]
    assert reject["record"]["identity"] == "ct-b-2"
    # the others were written, the rejected one not
    assert _upserted(harness) == {"ct-b-1": 8, "ct-b-3": 6}
    # never retried: one call per record
    assert [c["status"] for c in harness.handle.apex_calls()] == [200, 500, 200]


def test_apex_error_in_list_mode_isolates_the_bad_record(harness: Any) -> None:
    text, _ = _apex_input(harness)
    run = harness.run(harness.config(streams=UNCAUGHT_LIST), text)
    assert run.error is None
    assert [r["record"]["identity"] for r in run.rejects] == ["ct-b-2"]
    assert run.rejects[0]["code"] == "APEX_ERROR"
    assert _upserted(harness) == {"ct-b-1": 8, "ct-b-3": 6}
    # the list call, then one call per record of it
    assert [c["status"] for c in harness.handle.apex_calls()] == [500, 200, 500, 200]
    assert run.summary["nps_feedback"]["succeeded"] == 2


def test_apex_error_in_list_mode_without_isolation_rejects_the_whole_call(
    harness: Any,
) -> None:
    text, _ = _apex_input(harness)
    streams = {
        "nps_feedback": {
            **UNCAUGHT_LIST["nps_feedback"],
            "apex": {**UNCAUGHT_LIST["nps_feedback"]["apex"], "isolate_errors": False},
        }
    }
    run = harness.run(harness.config(streams=streams), text)
    assert run.error is None
    assert {r["code"] for r in run.rejects} == {"APEX_ERROR"}
    assert len(run.rejects) == 3
    # Apex rolled the whole call back: nothing of it was written
    assert _upserted(harness) == {}
    assert len(harness.handle.apex_calls()) == 1
    assert run.states


# ------------------------------------------- /ct/nps: per-record DML outcomes


def _nps_run_rejecting_ct_b_2(
    harness: Any, streams: dict[str, Any]
) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """The /ct/nps run: it goes on, and ct-b-2's DML failure is its one reject."""
    text, contacts = _apex_input(harness)
    run = harness.run(harness.config(streams=streams), text)
    assert run.error is None
    assert run.states
    [reject] = run.rejects
    assert reject["code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert reject["record"]["identity"] == "ct-b-2"
    return run, contacts, reject


def test_nps_class_list_failures_are_rejects_with_the_dml_code(harness: Any) -> None:
    run, contacts, reject = _nps_run_rejecting_ct_b_2(harness, APEX_LIST)
    assert reject["message"]
    assert run.summary["nps_feedback"]["succeeded"] == 2
    assert _score(harness, contacts[0]["Id"]) == 8
    assert _score(harness, contacts[1]["Id"]) == contacts[1]["NPS_Score__c"]
    assert _score(harness, contacts[2]["Id"]) == 6
    # one 200 answer carried the failure: nothing to isolate or resend
    assert [c["status"] for c in harness.handle.apex_calls()] == [200]


def test_nps_class_single_object_400_is_a_reject_with_the_dml_code(
    harness: Any,
) -> None:
    run, contacts, _ = _nps_run_rejecting_ct_b_2(harness, APEX_RECORD)
    assert run.summary["nps_feedback"]["succeeded"] == 2
    assert _score(harness, contacts[0]["Id"]) == 8
    assert _score(harness, contacts[1]["Id"]) == contacts[1]["NPS_Score__c"]
    assert _score(harness, contacts[2]["Id"]) == 6
    # a 400 about the record is never retried
    assert [c["status"] for c in harness.handle.apex_calls()] == [200, 400, 200]


# ------------------------------------------------------- configuration errors


def test_apex_path_without_a_class_stops_without_state_or_rejects(
    harness: Any,
) -> None:
    streams = {
        "nps_feedback": {
            "mode": "apex",
            "apex": {"path": "ct_typo/nps", "payload": {"email": "{profile.email}"}},
        }
    }
    text, _ = _apex_input(harness)
    run = harness.run(harness.config(streams=streams, on_reject="continue"), text)
    _assert_stopped_without_state(
        run, "Could not find a match for URL", "settings problem"
    )
    # one call, then the stop: the other records were not tried
    assert len(harness.handle.apex_calls()) == 1


def test_apex_json_parser_error_stops_without_state(harness: Any) -> None:
    streams = {
        "nps_feedback": {
            "mode": "apex",
            "apex": {"path": "ct/nps/feedback", "payload": "{profile.email}"},
        }
    }
    text, _ = _apex_input(harness)
    run = harness.run(harness.config(streams=streams), text)
    _assert_stopped_without_state(run, "JSON_PARSER_ERROR")


def test_recorded_json_parser_error_on_collections_stops_without_state(
    harness: Any, real_errors: dict[str, Any]
) -> None:
    [recorded] = real_errors["json_parser_error"]["body"]
    run = _run_refused_by_collections(
        harness, 400, recorded["errorCode"], recorded["message"], on_reject="continue"
    )
    _assert_stopped_without_state(
        run, "JSON_PARSER_ERROR", "Cannot deserialize instance of datetime"
    )


def test_whole_collections_call_refused_for_a_field_stops_without_state(
    harness: Any,
) -> None:
    run = _run_refused_by_collections(
        harness,
        400,
        "INVALID_FIELD",
        "No such column 'Score__c' on sobject of type Contact",
    )
    _assert_stopped_without_state(run, "INVALID_FIELD", "settings problem")


def test_insufficient_access_stops_whatever_on_reject_says(harness: Any) -> None:
    run = _run_refused_by_collections(
        harness,
        403,
        "INSUFFICIENT_ACCESS",
        "insufficient access rights on object id",
        on_reject="continue",
    )
    _assert_stopped_without_state(run, "INSUFFICIENT_ACCESS", "fix access")


# ------------------------------------------------------ REQUEST_LIMIT_EXCEEDED


@pytest.mark.parametrize("which", ["concurrent", "long_txn"])
def test_concurrent_limit_is_retried_with_backoff(harness: Any, which: str) -> None:
    harness.handle.fault("concurrent_limit", which=which, count=3, path="composite")
    streams = {"nps": {**harness.nps_mapping, "action": "upsert"}}
    run = harness.run(
        harness.config(streams=streams), harness.fixture("nps_upsert_create.singer")
    )
    assert run.error is None
    assert run.rejects == []
    assert harness.contact("ct-test-1") is not None
    assert run.states
    refused = [
        r
        for r in harness.handle.requests_log()
        if "composite" in r["path"] and r["status"] == 403
    ]
    assert len(refused) == 3


def test_concurrent_limit_on_insert_is_retried_too(harness: Any) -> None:
    streams = {"nps": {"object": "Contact", "action": "insert", "fields": {
        "LastName": "name", "CleverTap_Id__c": "identity"}}}  # fmt: skip
    harness.handle.fault("concurrent_limit", count=2, path="composite")
    run = harness.run(
        harness.config(streams=streams), harness.fixture("nps_upsert_create.singer")
    )
    assert run.error is None
    assert harness.contact("ct-test-1") is not None


def test_concurrent_limit_outlasting_the_wait_stops_without_state(
    harness: Any,
) -> None:
    harness.handle.fault("concurrent_limit", count=None, path="composite")
    run = harness.run(
        harness.config(concurrent_limit_max_wait=0.05),
        harness.fixture("nps_upsert_create.singer"),
    )
    _assert_stopped_without_state(
        run, "ConcurrentRequests", "concurrent_limit_max_wait"
    )


def test_daily_limit_is_not_retried(harness: Any) -> None:
    harness.handle.fault("request_limit", path="composite")
    run = harness.run(harness.config(), harness.fixture("nps_upsert_create.singer"))
    assert "TotalRequests Limit exceeded." in str(run.error)
    refused = [r for r in harness.handle.requests_log() if "composite" in r["path"]]
    assert len(refused) == 1


# ------------------------------------------------------------- duplicate rules


def test_duplicate_rule_rejects_with_the_matched_ids(harness: Any) -> None:
    [seeded] = _emails(harness, 1)
    text = harness.fixture("nps_duplicate_email.singer", __EMAIL__=seeded["Email"])
    run = harness.run(harness.config(), text)
    assert run.error is None
    [reject] = run.rejects
    assert reject["code"] == "DUPLICATES_DETECTED"
    assert reject["key"] == "ct-dup-1"
    assert reject["matches"] == [seeded["Id"]]
    assert seeded["Id"] in reject["message"]
    assert harness.contact("ct-dup-1") is None
    assert harness.contact("ct-dup-2") is not None


def test_duplicate_rules_allow_save_sends_the_header(harness: Any) -> None:
    [seeded] = _emails(harness, 1)
    text = harness.fixture("nps_duplicate_email.singer", __EMAIL__=seeded["Email"])
    run = harness.run(harness.config(duplicate_rules="allow_save"), text)
    assert run.error is None
    assert run.rejects == []
    assert harness.contact("ct-dup-1") is not None
    sent = [r for r in harness.writes() if "composite" in r["path"]]
    assert sent
    assert all(
        r["headers"].get("sforce-duplicate-rule-header") == "allowSave=true"
        for r in sent
    )


def test_bulk_cannot_bypass_duplicate_rules(harness: Any) -> None:
    [seeded] = _emails(harness, 1)
    text = harness.fixture("nps_duplicate_email.singer", __EMAIL__=seeded["Email"])
    run = harness.run(
        harness.config(duplicate_rules="allow_save", bulk_threshold=0), text
    )
    assert run.error is None
    assert [r["code"] for r in run.rejects] == ["DUPLICATES_DETECTED"]
    assert harness.contact("ct-dup-2") is not None


# ------------------------------------------------------------- upsert on Id


def test_upsert_on_id_is_refused_at_start_up(harness: Any) -> None:
    streams = {"nps": {**harness.nps_mapping, "external_id_field": "Id"}}
    with pytest.raises(MappingError, match="action: update"):
        harness.run(
            harness.config(streams=streams),
            harness.fixture("nps_upsert_create.singer"),
        )
    assert harness.writes() == []


def test_upsert_on_id_is_refused_when_parsing_the_mapping() -> None:
    with pytest.raises(MappingError, match="External ID"):
        load_mappings(
            {"s": {"object": "Contact", "external_id_field": "Id", "fields": {}}},
            None,
        )


# ---------------------------------------------------------- JWT and My Domain


def test_jwt_to_my_domain_signs_for_the_login_audience(login_harness: Any) -> None:
    config = login_harness.login_config("jwt", domain="acme.my")
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    tokens = [
        r for r in login_harness.handle.requests_log() if "oauth2/token" in r["path"]
    ]
    assert len(tokens) == 1
    assert login_harness.contact("ct-test-1") is not None


def test_jwt_with_my_domain_audience_is_refused_as_salesforce_does(
    login_harness: Any,
) -> None:
    config = login_harness.login_config(
        "jwt", domain="acme.my", jwt_audience="https://acme.my.salesforce.com"
    )
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    assert "invalid_grant: audience is invalid" in str(run.error)
    assert run.states == []


def test_jwt_audience_defaults_follow_the_domain() -> None:
    from target_salesforce.auth import jwt_audience  # noqa: PLC0415 - one helper

    assert jwt_audience({"domain": "acme.my"}) == "https://login.salesforce.com"
    assert jwt_audience({"domain": "test"}) == "https://test.salesforce.com"
    sandbox = {"domain": "acme--uat.sandbox.my"}
    assert jwt_audience(sandbox) == "https://test.salesforce.com"
    assert jwt_audience({"jwt_audience": "https://x.example/"}) == "https://x.example"


def test_refresh_token_without_secret_when_the_app_allows_it(
    login_harness: Any,
) -> None:
    handle = login_harness.handle
    config = login_harness.login_config("refresh_token")
    del config["client_secret"]
    refused = login_harness.run(
        config, login_harness.fixture("nps_upsert_create.singer")
    )
    assert "invalid_client" in str(refused.error)
    handle.emulator.auth.refresh_requires_secret = False
    run = login_harness.run(config, login_harness.fixture("nps_upsert_create.singer"))
    assert run.error is None
    assert login_harness.contact("ct-test-1") is not None


# ------------------------------------------------------------- SOAP login


def test_soap_login_from_api_v65_is_refused_naming_the_oauth_flows() -> None:
    config = {
        "auth_flow": "password",
        "username": "u@example.com",
        "password": "pw",
        "api_version": "65.0",
    }
    session = make_session({})
    with pytest.raises(AuthError) as exc:
        login(with_defaults(TargetSalesforce.config_jsonschema, config), session)
    message = str(exc.value)
    assert "v65.0" in message
    for flow in ("JWT bearer", "client credentials", "refresh_token"):
        assert flow in message
