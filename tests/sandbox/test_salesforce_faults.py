"""Fault injection, /_sandbox inspection, Apex REST and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import pytest
import requests
from sandbox.server import free_port
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

if TYPE_CHECKING:
    from pathlib import Path

    from sandbox.salesforce.testing import SalesforceHandle

# simple-salesforce types its dynamic attributes (sf.Contact, sf.bulk2.Contact) as a
# union of its handler classes and restful() as `Any | None`: the tests use the
# client as the untyped REST wrapper it is.
SF: TypeAlias = Any
# Its errors' `content` is the parsed JSON body, though declared as bytes.


def _sandbox(
    handle: SalesforceHandle, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    response = handle.session().request(
        method, f"{handle.base_url}/_sandbox/{path}", json=body, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_request_limit_fault_answers_403_until_cleared(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    _sandbox(salesforce_emulator, "POST", "faults", {"kind": "request_limit"})
    for _ in range(2):
        with pytest.raises(SalesforceRefusedRequest) as exc:
            sf.query("SELECT Id FROM Contact")
        assert (
            cast("list[dict[str, Any]]", exc.value.content)[0]["errorCode"]
            == "REQUEST_LIMIT_EXCEEDED"
        )
    _sandbox(salesforce_emulator, "DELETE", "faults")
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 30


def test_api_usage_fault_sets_the_header_and_the_limit_is_enforced(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    _sandbox(
        salesforce_emulator,
        "POST",
        "faults",
        {"kind": "api_usage", "used": 850, "limit": 1000},
    )
    sf.query("SELECT COUNT() FROM Contact")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (851, 1000)
    salesforce_emulator.fault("api_usage", used=1000)
    with pytest.raises(SalesforceRefusedRequest):
        sf.query("SELECT COUNT() FROM Contact")


def test_status_fault_answers_503_n_times_then_recovers(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    salesforce_emulator.fault("status", count=2, status=503, path="/composite/")
    sf.query("SELECT COUNT() FROM Contact")  # not matched by the path filter
    body = {"records": [{"attributes": {"type": "Account"}, "Name": "Retry Inc"}]}
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as exc:
            sf.restful("composite/sobjects", method="POST", json=body)
        assert exc.value.status == 503
    assert sf.restful("composite/sobjects", method="POST", json=body)[0]["success"]


def test_reset_fault_drops_the_connection(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    salesforce_emulator.fault("reset", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.query("SELECT Id FROM Contact")
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 30


def test_reset_after_processing_stores_the_write_but_loses_the_reply(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    salesforce_emulator.fault("reset", count=1, after_processing=True, method="PATCH")
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.Contact.upsert("CleverTap_Id__c/ct-lost-reply", {"LastName": "Lost"})
    stored = [
        r
        for r in salesforce_emulator.records("Contact")
        if r["CleverTap_Id__c"] == "ct-lost-reply"
    ]
    assert len(stored) == 1


def test_latency_fault_delays_replies_past_a_client_timeout(
    salesforce_emulator: SalesforceHandle,
) -> None:
    salesforce_emulator.fault("latency", seconds=0.5, count=1)
    session = salesforce_emulator.session()
    url = f"{salesforce_emulator.base_url}/services/data/v61.0/limits"
    headers = {"Authorization": f"Bearer {salesforce_emulator.access_token}"}
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(url, headers=headers, timeout=0.2)
    assert session.get(url, headers=headers, timeout=5).status_code == 200


def test_revoke_invalidates_issued_tokens_and_faults_are_listed(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    salesforce_emulator.fault("lock_row", count=3, path="/composite/")
    listed = _sandbox(salesforce_emulator, "GET", "faults")
    assert listed == [
        {"kind": "lock_row", "count": 3, "path": "/composite/", "method": None}
    ]
    _sandbox(
        salesforce_emulator,
        "POST",
        "faults",
        {"kind": "invalid_session", "revoke": True},
    )
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT COUNT() FROM Contact")
    token = _sandbox(salesforce_emulator, "POST", "token")["access_token"]
    fresh = Salesforce(
        session_id=token,
        instance_url=salesforce_emulator.base_url,
        session=salesforce_emulator.session(),
    )
    assert fresh.query("SELECT COUNT() FROM Contact")["totalSize"] == 30


def test_unknown_fault_kind_is_refused(salesforce_emulator: SalesforceHandle) -> None:
    response = salesforce_emulator.session().post(
        f"{salesforce_emulator.base_url}/_sandbox/faults",
        json={"kind": "meteor"},
        timeout=10,
    )
    assert response.status_code == 400
    assert "unknown fault kind" in response.json()["error"]


def test_sandbox_endpoints_inspect_reset_and_reseed(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    sf.Contact.create({"LastName": "Inspect"})
    rows = _sandbox(salesforce_emulator, "GET", "records/Contact")
    assert len(rows) == 31
    counts = _sandbox(salesforce_emulator, "GET", "records")
    assert counts["Contact"] == 31
    log = _sandbox(salesforce_emulator, "GET", "requests")
    create = next(r for r in log if r["method"] == "POST")
    assert create["status"] == 201
    assert "Inspect" in create["body"]
    assert "authorization" not in create["headers"]
    _sandbox(salesforce_emulator, "POST", "reset")
    assert _sandbox(salesforce_emulator, "GET", "records")["Contact"] == 0
    seeded = _sandbox(salesforce_emulator, "POST", "seed", {"size": "small"})
    assert seeded["records"] > 200
    assert len(_sandbox(salesforce_emulator, "GET", "records/Contact")) == 30


# --- Apex REST ------------------------------------------------------------------------


def test_apexecute_nps_updates_the_contact_by_email_and_is_recorded(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    contact = salesforce_emulator.records("Contact")[5]
    payload = {
        "email": contact["Email"].upper(),
        "npsScore": 8,
        "leadScore": 77,
        "city": "Pune",
        "feedback": "Love the offers",
    }
    result = sf.apexecute("ct/nps", method="POST", data=payload)
    assert result["success"] is True
    assert result["id"] == contact["Id"]
    stored = next(
        r for r in salesforce_emulator.records("Contact") if r["Id"] == contact["Id"]
    )
    assert stored["NPS_Score__c"] == 8
    assert stored["Lead_Score__c"] == 77
    assert stored["MailingCity"] == "Pune"
    assert stored["Last_Feedback__c"] == "Love the offers"
    calls = _sandbox(salesforce_emulator, "GET", "apex")
    assert calls[-1]["body"] == payload
    assert calls[-1]["mapping"] == "/ct/nps/*"
    assert salesforce_emulator.apex_calls() == calls


def test_apexecute_nps_list_reports_per_item_and_single_errors_map_to_4xx(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    lead = salesforce_emulator.records("Lead")[3]
    results = sf.apexecute(
        "ct/nps/v1",
        method="POST",
        data=[
            {"email": lead["Email"], "leadScore": 55},
            {"email": "nobody@nowhere.example", "npsScore": 5},
        ],
    )
    assert [r["success"] for r in results] == [True, False]
    assert results[0]["sobject"] == "Lead"
    with pytest.raises(SalesforceResourceNotFound):
        sf.apexecute("ct/nps", method="POST", data={"email": "x@nowhere.example"})
    assert sf.apexecute("ct/events", method="POST", data=[{"a": 1}, {"b": 2}]) == {
        "success": True,
        "received": 2,
    }
    with pytest.raises(SalesforceResourceNotFound):
        sf.apexecute("other/thing", method="POST", data={})


def test_apex_dml_failure_answers_500_apex_error_and_rolls_the_call_back(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    # /ct/contacts/* does not catch its DML, so a refused record is an APEX_ERROR
    first, second = [
        c for c in salesforce_emulator.records("Contact") if c["CleverTap_Id__c"]
    ][:2]
    score = 3 if first["NPS_Score__c"] != 3 else 4
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.apexecute(
            "ct/contacts/v1",
            method="POST",
            data=[
                {
                    "identity": first["CleverTap_Id__c"],
                    "name": first["LastName"],
                    "score": score,
                },
                {
                    "identity": second["CleverTap_Id__c"],
                    "name": second["LastName"],
                    "score": 11,
                },
            ],
        )
    assert exc.value.status == 500
    [error] = cast("list[dict[str, Any]]", exc.value.content)
    assert error["errorCode"] == "APEX_ERROR"
    exception, stack = error["message"].split("\n\n")
    assert exception.startswith("System.DmlException: Upsert failed. ")
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in exception
    assert stack.startswith("Class.")
    assert stack.endswith(", column 1")
    # the whole call was rolled back: the good first record is unchanged too
    kept = next(
        c for c in salesforce_emulator.records("Contact") if c["Id"] == first["Id"]
    )
    assert kept["NPS_Score__c"] == first["NPS_Score__c"]
    assert kept["NPS_Score__c"] != score


def test_apex_contacts_class_upserts_and_a_required_field_missing_is_apex_error(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    good = {"identity": "ct-apex-1", "name": "Kaur", "email": "kaur@example.com"}
    [result] = sf.apexecute("ct/contacts/v1", method="POST", data=[good])
    assert (result["success"], result["created"]) == (True, True)
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.apexecute(
            "ct/contacts/v1",
            method="POST",
            data={
                "records": [
                    {"identity": "ct-apex-2", "name": "Bose"},
                    {"identity": "x"},
                ]
            },
        )
    [error] = cast("list[dict[str, Any]]", exc.value.content)
    assert error["errorCode"] == "APEX_ERROR"
    # the recorded form: "...first error: REQUIRED_FIELD_MISSING, Required fields
    # are missing: [DurationInMinutes]: [DurationInMinutes]\n\nClass..."
    assert (
        "Upsert failed. First exception on row 1; first error: "
        "REQUIRED_FIELD_MISSING, Required fields are missing: [LastName]: [LastName]"
        "\n\nClass.CtContactsResource.doPost: line 31, column 1"
    ) in error["message"]
    ids = {c["CleverTap_Id__c"] for c in salesforce_emulator.live_records("Contact")}
    assert "ct-apex-1" in ids
    assert "ct-apex-2" not in ids  # rolled back with the failing record


def test_apex_path_without_a_class_answers_404_not_found(sf: SF) -> None:
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.apexecute("nothing/here", method="POST", data={})
    [error] = cast("list[dict[str, Any]]", exc.value.content)
    assert error["errorCode"] == "NOT_FOUND"
    assert error["message"].startswith("Could not find a match for URL")


@pytest.mark.parametrize(
    ("which", "text"),
    [
        ("concurrent", "ConcurrentRequests (Concurrent API Requests) Limit exceeded."),
        ("long_txn", "ConcurrentPerOrgLongTxn Limit exceeded"),
    ],
)
def test_concurrent_limit_fault_answers_the_transient_texts(
    salesforce_emulator: SalesforceHandle, sf: SF, which: str, text: str
) -> None:
    salesforce_emulator.fault("concurrent_limit", which=which, count=1)
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Contact LIMIT 1")
    assert exc.value.status == 403
    assert cast("list[dict[str, Any]]", exc.value.content) == [
        {"message": text, "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 30


def test_registered_apex_handler_is_routed_by_longest_mapping(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    def handler(request: Any, context: Any) -> tuple[int, Any]:
        del context
        return 201, {"path": request.path, "method": request.method}

    salesforce_emulator.register_apex("/ct/events/special/*", handler)
    assert sf.apexecute("ct/events/special/1", method="PUT", data={}) == {
        "path": "/ct/events/special/1",
        "method": "PUT",
    }
    assert sf.apexecute("ct/events/other", method="POST", data={})["received"] == 1


# --- command line ---------------------------------------------------------------------


def test_cli_serves_https_with_the_sandbox_ca(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SANDBOX_SALESFORCE_SEED": "small"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "salesforce",
            "--port",
            str(port),
            "--tls",
            "--db",
            str(tmp_path / "org.db"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    session = requests.Session()
    try:
        session.trust_env = False
        session.verify = str(tmp_path / ".sandbox" / "tls" / "bundle.pem")
        url = f"https://127.0.0.1:{port}/_sandbox/records"
        deadline = time.monotonic() + 20
        while True:
            try:
                counts = session.get(url, timeout=2).json()
                break
            except (requests.ConnectionError, OSError):
                assert process.poll() is None, (
                    process.stderr.read() if process.stderr else ""
                )
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert counts["Contact"] == 30
        assert (
            tmp_path / ".sandbox" / "salesforce" / "jwt-private-key.pem"
        ).stat().st_mode & 0o077 == 0
    finally:
        session.close()
        process.terminate()
        try:
            # uvicorn may wait for the TLS shutdown of idle connections; no need here.
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
