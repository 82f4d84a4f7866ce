"""sObject Collections, Bulk API 2.0 ingest and Bulk API 1.0 on the emulator."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import pytest
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceOperationError,
)

if TYPE_CHECKING:
    from sandbox.salesforce.testing import SalesforceHandle

#: a real org's answer to aborting a completed Bulk 2.0 job, with its source
ABORT_COMPLETED = json.loads(
    (
        Path(__file__).resolve().parents[1]
        / "fixtures"
        / "real_api_salesforce"
        / "misc_real_errors.json"
    ).read_text("utf-8")
)["bulk2_abort_completed_job"]

# simple-salesforce types its dynamic attributes (sf.Contact, sf.bulk2.Contact) as a
# union of its handler classes and restful() as `Any | None`: the tests use the
# client as the untyped REST wrapper it is.
SF: TypeAlias = Any
# Its errors' `content` is the parsed JSON body, though declared as bytes.


def _finished(session: Any, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """Poll a job until it leaves UploadComplete/InProgress (a few polls at most)."""
    for _ in range(10):
        info = session.get(url, headers=headers, timeout=10).json()
        if info["state"] not in {"UploadComplete", "InProgress"}:
            return dict(info)
    raise AssertionError(info)


def _contact(records: list[dict[str, Any]], ct_id: str) -> dict[str, Any]:
    return next(r for r in records if r["CleverTap_Id__c"] == ct_id)


def _upsert(
    sf: SF, records: list[dict[str, Any]], *, all_or_none: bool = False
) -> list[dict[str, Any]]:
    body = {
        "allOrNone": all_or_none,
        "records": [{"attributes": {"type": "Contact"}, **r} for r in records],
    }
    return list(
        sf.restful(
            "composite/sobjects/Contact/CleverTap_Id__c", method="PATCH", json=body
        )
    )


# --- sObject Collections --------------------------------------------------------


def test_collection_upsert_reports_each_record_in_request_order(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    results = _upsert(
        sf,
        [
            {"CleverTap_Id__c": "ct-000000", "NPS_Score__c": 9},
            {"CleverTap_Id__c": "ct-col-new", "LastName": "New", "NPS_Score__c": 4},
            {"CleverTap_Id__c": "ct-col-bad", "LastName": "Bad", "NPS_Score__c": 42},
            {"CleverTap_Id__c": "ct-col-nolast", "FirstName": "NoLast"},
        ],
    )
    assert [r["success"] for r in results] == [True, True, False, False]
    # failed items carry no `created` (REST API guide, Collections upsert example)
    assert [r.get("created") for r in results] == [False, True, None, None]
    assert results[2]["errors"][0]["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert results[3]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    stored = salesforce_emulator.records("Contact")
    assert _contact(stored, "ct-000000")["NPS_Score__c"] == 9
    assert _contact(stored, "ct-col-new")["Id"] == results[1]["id"]
    assert not [r for r in stored if r["CleverTap_Id__c"] == "ct-col-bad"]


def test_collection_all_or_none_rolls_back_every_record(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    before = _contact(salesforce_emulator.records("Contact"), "ct-000000")
    results = _upsert(
        sf,
        [
            {"CleverTap_Id__c": "ct-000000", "Title": "Rolled back"},
            {"CleverTap_Id__c": "ct-aon-bad", "LastName": "Bad", "NPS_Score__c": -1},
        ],
        all_or_none=True,
    )
    assert [r["success"] for r in results] == [False, False]
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    after = _contact(salesforce_emulator.records("Contact"), "ct-000000")
    assert after == before


def test_collection_rejects_the_same_key_twice_in_one_request(sf: SF) -> None:
    results = _upsert(
        sf,
        [
            {"CleverTap_Id__c": "ct-twice", "LastName": "A"},
            {"CleverTap_Id__c": "ct-twice", "LastName": "B"},
        ],
    )
    assert [r["errors"][0]["statusCode"] for r in results] == ["DUPLICATE_VALUE"] * 2


def test_collection_create_update_delete_and_limit(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    created = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Lead"}, "LastName": "L1", "Company": "C"},
                {"attributes": {"type": "Lead"}, "LastName": "L2"},
                {"attributes": {"type": "Account"}, "Name": "Acme Two"},
            ],
        },
    )
    assert [r["success"] for r in created] == [True, False, True]
    assert created[1]["errors"][0]["fields"] == ["Company"]
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "records": [
                {
                    "attributes": {"type": "Lead"},
                    "id": created[0]["id"],
                    "Title": "CTO",
                },
            ]
        },
    )
    assert updated[0]["success"] is True
    deleted = sf.restful(
        "composite/sobjects",
        method="DELETE",
        params={"ids": f"{created[0]['id']},{created[2]['id']}"},
    )
    assert [r["success"] for r in deleted] == [True, True]
    lead = next(
        r for r in salesforce_emulator.records("Lead") if r["Id"] == created[0]["id"]
    )
    assert lead["Title"] == "CTO"
    assert lead["IsDeleted"] is True
    too_many = [{"attributes": {"type": "Lead"}, "LastName": "x", "Company": "c"}] * 201
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite/sobjects", method="POST", json={"records": too_many})
    assert (
        cast("list[dict[str, Any]]", exc.value.content)[0]["errorCode"]
        == "EXCEEDED_ID_LIMIT"
    )


def test_lock_row_fault_fails_the_next_records_then_clears(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    salesforce_emulator.fault("lock_row", count=2)
    results = _upsert(
        sf, [{"CleverTap_Id__c": f"ct-00000{i}", "Title": "T"} for i in range(3)]
    )
    codes = [r["errors"][0]["statusCode"] if r["errors"] else None for r in results]
    assert codes == ["UNABLE_TO_LOCK_ROW", "UNABLE_TO_LOCK_ROW", None]


# --- Bulk API 2.0 -------------------------------------------------------------------


def test_bulk2_upsert_reports_failed_and_successful_rows_as_csv(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    summary = sf.bulk2.Contact.upsert(
        records=[
            {"CleverTap_Id__c": "ct-000001", "Title": "Bulk title"},
            {"CleverTap_Id__c": "ct-bulk-new", "LastName": "Bulk", "NPS_Score__c": 3},
            {"CleverTap_Id__c": "ct-bulk-bad", "LastName": "Bad", "NPS_Score__c": 12},
        ],
        external_id_field="CleverTap_Id__c",
        wait=0,
    )
    assert summary[0]["numberRecordsProcessed"] == 3
    assert summary[0]["numberRecordsFailed"] == 1
    job_id = summary[0]["job_id"]
    failed = list(
        csv.DictReader(io.StringIO(sf.bulk2.Contact.get_failed_records(job_id)))
    )
    assert len(failed) == 1
    assert failed[0]["CleverTap_Id__c"] == "ct-bulk-bad"
    assert failed[0]["sf__Error"].startswith("FIELD_CUSTOM_VALIDATION_EXCEPTION:")
    ok = list(
        csv.DictReader(io.StringIO(sf.bulk2.Contact.get_successful_records(job_id)))
    )
    assert {r["CleverTap_Id__c"]: r["sf__Created"] for r in ok} == {
        "ct-000001": "false",
        "ct-bulk-new": "true",
    }
    # a finished job's unprocessed file is its header line alone (recorded)
    unprocessed = sf.bulk2.Contact.get_unprocessed_records(job_id)
    assert len(unprocessed.strip().splitlines()) == 1
    assert "CleverTap_Id__c" in unprocessed
    jobs = (
        salesforce_emulator.session()
        .get(f"{salesforce_emulator.base_url}/_sandbox/jobs", timeout=10)
        .json()
    )
    assert [j["id"] for j in jobs["ingest"]] == [job_id]
    assert jobs["ingest"][0]["numberRecordsFailed"] == 1
    stored = salesforce_emulator.records("Contact")
    assert _contact(stored, "ct-000001")["Title"] == "Bulk title"
    assert _contact(stored, "ct-bulk-new")["Id"] == next(
        r["sf__Id"] for r in ok if r["CleverTap_Id__c"] == "ct-bulk-new"
    )


def test_bulk2_csv_empty_cell_keeps_value_and_na_sets_null_with_crlf_pipes(
    salesforce_emulator: SalesforceHandle,
) -> None:
    before = _contact(salesforce_emulator.records("Contact"), "ct-000000")
    assert before["Title"] or before["Phone"] or before["MobilePhone"]
    # Built by hand: pipe-delimited, CRLF line endings.
    data = "Phone|CleverTap_Id__c|Title\r\n|ct-000000|#N/A\r\n"
    base = f"{salesforce_emulator.base_url}/services/data/v61.0/jobs/ingest"
    session = salesforce_emulator.session()
    headers = {"Authorization": f"Bearer {salesforce_emulator.access_token}"}
    job = session.post(
        base,
        headers=headers,
        timeout=10,
        json={
            "object": "Contact",
            "operation": "upsert",
            "externalIdFieldName": "CleverTap_Id__c",
            "contentType": "CSV",
            "columnDelimiter": "PIPE",
            "lineEnding": "CRLF",
        },
    ).json()
    assert job["state"] == "Open"
    put = session.put(
        f"{base}/{job['id']}/batches",
        data=data.encode(),
        timeout=10,
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert put.status_code == 201
    session.patch(
        f"{base}/{job['id']}",
        json={"state": "UploadComplete"},
        headers=headers,
        timeout=10,
    )
    info = _finished(session, f"{base}/{job['id']}", headers)
    assert info["state"] == "JobComplete"
    assert info["numberRecordsFailed"] == 0
    after = _contact(salesforce_emulator.records("Contact"), "ct-000000")
    assert after["Title"] is None
    assert after["Phone"] == before["Phone"]
    # A lowercase results path works too, as Salesforce documents it.
    text = session.get(
        f"{base}/{job['id']}/successfulresults", headers=headers, timeout=10
    ).text
    assert text.startswith('"sf__Id"|"sf__Created"|Phone')


def test_bulk2_relationship_column_sets_the_lookup_by_external_id(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    contact = salesforce_emulator.records("Contact")[0]
    summary = sf.bulk2.CleverTap_Engagement__c.upsert(
        records=[
            {
                "CleverTap_Event_Id__c": "evt-bulk-rel",
                "Event_Name__c": "Charged",
                "Contact__r.CleverTap_Id__c": contact["CleverTap_Id__c"],
            },
            {
                "CleverTap_Event_Id__c": "evt-bulk-norel",
                "Event_Name__c": "Charged",
                "Contact__r.CleverTap_Id__c": "ct-unknown",
            },
        ],
        external_id_field="CleverTap_Event_Id__c",
        wait=0,
    )
    assert summary[0]["numberRecordsFailed"] == 1
    stored = {
        r["CleverTap_Event_Id__c"]: r
        for r in salesforce_emulator.records("CleverTap_Engagement__c")
    }
    assert stored["evt-bulk-rel"]["Contact__c"] == contact["Id"]
    assert "evt-bulk-norel" not in stored
    failed = sf.bulk2.CleverTap_Engagement__c.get_failed_records(summary[0]["job_id"])
    assert "Foreign key external ID: ct-unknown not found" in failed


def test_bulk2_line_ending_mismatch_or_unknown_column_fails_the_job(
    salesforce_emulator: SalesforceHandle,
) -> None:
    base = f"{salesforce_emulator.base_url}/services/data/v61.0/jobs/ingest"
    session = salesforce_emulator.session()
    headers = {"Authorization": f"Bearer {salesforce_emulator.access_token}"}
    messages = []
    for data in ("LastName\r\nA\r\n", "LastName,Nope__c\nA,1\n"):
        job = session.post(
            base,
            headers=headers,
            timeout=10,
            json={
                "object": "Contact",
                "operation": "insert",
                "lineEnding": "LF",
            },
        ).json()
        session.put(
            f"{base}/{job['id']}/batches", data=data, headers=headers, timeout=10
        )
        session.patch(
            f"{base}/{job['id']}",
            json={"state": "UploadComplete"},
            headers=headers,
            timeout=10,
        )
        info = _finished(session, f"{base}/{job['id']}", headers)
        assert info["state"] == "Failed"
        messages.append(info["errorMessage"])
    assert "LineEnding is invalid" in messages[0]
    assert "Field name not found : Nope__c" in messages[1]


def test_bulk_job_failed_fault_raises_operation_error(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    salesforce_emulator.fault("bulk_job_failed", message="InvalidBatch : too busy")
    with pytest.raises(SalesforceOperationError, match="too busy"):
        sf.bulk2.Contact.insert(records=[{"LastName": "X"}], wait=0)
    assert not [
        r for r in salesforce_emulator.records("Contact") if r["LastName"] == "X"
    ]


def test_slow_bulk_fault_keeps_the_job_in_progress_for_n_polls(
    salesforce_emulator: SalesforceHandle,
) -> None:
    salesforce_emulator.fault("slow_bulk", polls=2)
    base = f"{salesforce_emulator.base_url}/services/data/v61.0/jobs/ingest"
    session = salesforce_emulator.session()
    headers = {"Authorization": f"Bearer {salesforce_emulator.access_token}"}
    job = session.post(
        base,
        headers=headers,
        timeout=10,
        json={"object": "Contact", "operation": "insert"},
    ).json()
    session.put(
        f"{base}/{job['id']}/batches",
        data="LastName\nSlow\n",
        headers=headers,
        timeout=10,
    )
    session.patch(
        f"{base}/{job['id']}",
        json={"state": "UploadComplete"},
        headers=headers,
        timeout=10,
    )
    states = [
        session.get(f"{base}/{job['id']}", headers=headers, timeout=10).json()["state"]
        for _ in range(3)
    ]
    assert states == ["InProgress", "InProgress", "JobComplete"]


def test_abort_stops_a_running_job_and_is_refused_for_a_finished_one(
    salesforce_emulator: SalesforceHandle,
) -> None:
    base = f"{salesforce_emulator.base_url}/services/data/v61.0/jobs/ingest"
    session = salesforce_emulator.session()
    headers = {"Authorization": f"Bearer {salesforce_emulator.access_token}"}

    def job(data: str) -> str:
        made = session.post(
            base,
            headers=headers,
            timeout=10,
            json={"object": "Contact", "operation": "insert"},
        ).json()
        url = f"{base}/{made['id']}"
        session.put(f"{url}/batches", data=data, headers=headers, timeout=10)
        session.patch(
            url, json={"state": "UploadComplete"}, headers=headers, timeout=10
        )
        return url

    def abort(url: str) -> Any:
        return session.patch(
            url, json={"state": "Aborted"}, headers=headers, timeout=10
        )

    salesforce_emulator.fault("slow_bulk", polls=100)
    salesforce_emulator.fault("bulk_job_failed", processed=1)
    running = job("LastName\nAbortA\nAbortB\n")
    assert abort(running).status_code == 200
    assert _finished(session, running, headers)["state"] == "Aborted"
    ok = session.get(f"{running}/successfulResults/", headers=headers, timeout=10)
    left = session.get(f"{running}/unprocessedrecords/", headers=headers, timeout=10)
    assert ok.text.splitlines()[1:] == [f'"{_id(ok.text)}","true","AbortA"']
    assert left.text.splitlines() == ["LastName", "AbortB"]

    done = job("LastName\nAbortC\n")
    assert _finished(session, done, headers)["state"] == "JobComplete"
    refused = abort(done)
    # a real org's answer to aborting a completed job (restforce/restforce#905)
    assert refused.status_code == 400
    assert refused.json() == ABORT_COMPLETED["body"]


def _id(results_csv: str) -> str:
    return next(csv.DictReader(io.StringIO(results_csv)))["sf__Id"]


# --- Bulk API 1.0 -------------------------------------------------------------------


def test_bulk1_json_upsert_returns_per_record_results(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    results = sf.bulk.Contact.upsert(
        [
            {"CleverTap_Id__c": "ct-000002", "Title": "B1"},
            {"CleverTap_Id__c": "ct-b1-new", "LastName": "New"},
            {"CleverTap_Id__c": "ct-b1-bad", "FirstName": "NoLast"},
        ],
        "CleverTap_Id__c",
    )
    assert [r["success"] for r in results] == [True, True, False]
    assert [r["created"] for r in results][:2] == [False, True]
    assert results[2]["id"] is None
    assert results[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    stored = salesforce_emulator.records("Contact")
    assert _contact(stored, "ct-000002")["Title"] == "B1"


def test_bulk1_query_returns_csv_with_the_selected_columns(
    salesforce_emulator: SalesforceHandle,
) -> None:
    session = salesforce_emulator.session()
    base = f"{salesforce_emulator.base_url}/services/async/61.0"
    headers = {
        "X-SFDC-Session": salesforce_emulator.access_token,
        "Content-Type": "application/json",
    }
    job = session.post(
        f"{base}/job",
        headers=headers,
        timeout=10,
        json={"operation": "queryAll", "object": "Campaign", "contentType": "CSV"},
    ).json()
    batch = session.post(
        f"{base}/job/{job['id']}/batch",
        timeout=10,
        data="SELECT Id,Name,IsActive,CleverTap_Sent__c FROM Campaign",
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert batch.status_code == 201
    # added Queued, as the Bulk API guide shows; the first poll is Completed
    assert "<state>Queued</state>" in batch.text
    batch_id = batch.text.split("<id>")[1].split("</id>")[0]
    status = session.get(
        f"{base}/job/{job['id']}/batch/{batch_id}", headers=headers, timeout=10
    ).text
    assert "<state>Completed</state>" in status
    listing = session.get(
        f"{base}/job/{job['id']}/batch/{batch_id}/result", headers=headers, timeout=10
    ).text
    result_id = listing.split("<result>")[1].split("</result>")[0]
    text = session.get(
        f"{base}/job/{job['id']}/batch/{batch_id}/result/{result_id}",
        headers=headers,
        timeout=10,
    ).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(salesforce_emulator.records("Campaign"))
    assert {r["IsActive"] for r in rows} <= {"true", "false"}
    missing = session.get(f"{base}/job/750000000000000AAA", headers=headers, timeout=10)
    assert missing.status_code == 400
    assert missing.headers["Content-Type"] == "application/json"
    assert missing.json()["exceptionCode"] == "InvalidJob"


def test_bulk1_json_query_and_delete_with_simple_salesforce(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    rows = sf.bulk.Contact.query("SELECT Id, Email FROM Contact WHERE Email != null")
    assert {r["Id"] for r in rows} == {
        r["Id"] for r in salesforce_emulator.records("Contact") if r["Email"]
    }
    target = rows[0]["Id"]
    assert sf.bulk.Contact.delete([{"Id": target}])[0]["success"] is True
    live = sf.bulk.Contact.query("SELECT Id FROM Contact")
    assert target not in {r["Id"] for r in live}
    every = sf.bulk.Contact.query_all("SELECT Id FROM Contact")
    assert target in {r["Id"] for r in every}
