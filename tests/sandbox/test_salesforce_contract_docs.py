"""Contract: answers the Salesforce guides and real-org client tests show.

The facts live in `tests/fixtures/real_api_salesforce/` (collections_docs.json,
bulk1_docs.json, bulk2_results_real.json), each with its source. Every test drives
the emulator into the documented situation and compares the answer's shape (keys,
states, CSV layout, error text) with the recorded one.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from target_salesforce.bulk import parse_csv
from target_salesforce.bulk_client import decode_csv
from target_salesforce.results import collections_results

if TYPE_CHECKING:
    import requests
    from sandbox.salesforce.testing import SalesforceHandle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real_api_salesforce"
COLLECTIONS = json.loads((FIXTURES / "collections_docs.json").read_text("utf-8"))
BULK1 = json.loads((FIXTURES / "bulk1_docs.json").read_text("utf-8"))
BULK2 = json.loads((FIXTURES / "bulk2_results_real.json").read_text("utf-8"))
V = "v62.0"


def _call(
    handle: SalesforceHandle, method: str, path: str, **kwargs: Any
) -> requests.Response:
    headers = {"Authorization": f"Bearer {handle.access_token}"}
    headers.update(kwargs.pop("headers", {}))
    return handle.session().request(
        method, f"{handle.base_url}{path}", headers=headers, timeout=10, **kwargs
    )


def _shape(item: dict[str, Any]) -> list[str]:
    return sorted(item)


def _account(name: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"attributes": {"type": "Account"}}
    if name is not None:
        record["Name"] = name
    return record


# --- sObject Collections ---------------------------------------------------------


@pytest.mark.parametrize(
    ("all_or_none", "recording"),
    [
        (False, "create_some_failed_all_or_none_false"),
        (True, "create_some_failed_all_or_none_true"),
    ],
    ids=["failure", "rollback"],
)
def test_collections_create_failure_or_rollback_has_no_id_key_like_the_guide(
    salesforce_emulator: SalesforceHandle, *, all_or_none: bool, recording: str
) -> None:
    answer = _call(
        salesforce_emulator,
        "POST",
        f"/services/data/{V}/composite/sobjects",
        json={"allOrNone": all_or_none, "records": [_account(None), _account("Acme")]},
    ).json()
    recorded = COLLECTIONS[recording]
    assert [_shape(i) for i in answer] == [_shape(i) for i in recorded]
    assert [i["success"] for i in answer] == [False, not all_or_none]
    if all_or_none:  # the valid record is rolled back with the guide's words
        assert answer[1]["errors"] == recorded[1]["errors"]


def test_collections_update_rollback_keeps_the_record_id_like_the_guide(
    salesforce_emulator: SalesforceHandle,
) -> None:
    contact = salesforce_emulator.live_records("Contact")[0]
    account_id = salesforce_emulator.live_records("Account")[0]["Id"]
    answer = _call(
        salesforce_emulator,
        "PATCH",
        f"/services/data/{V}/composite/sobjects",
        json={
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Contact"}, "id": contact["Id"], "Title": "VP"},
                # as in the guide: an Account Id where a Contact's is expected
                {"attributes": {"type": "Contact"}, "id": account_id},
            ],
        },
    ).json()
    recorded = COLLECTIONS["update_some_failed_all_or_none_true"]
    assert [_shape(i) for i in answer] == [_shape(i) for i in recorded]
    assert answer[0]["id"] == contact["Id"]
    assert answer[0]["errors"] == recorded[0]["errors"]
    error, recorded_error = answer[1]["errors"][0], recorded[1]["errors"][0]
    assert (error["statusCode"], error["fields"]) == ("MALFORMED_ID", ["Id"])
    assert error["message"] == recorded_error["message"].replace(
        "001xx000003DGb2999", account_id
    )


def test_collections_upsert_results_have_the_guide_keys(
    salesforce_emulator: SalesforceHandle,
) -> None:
    contact = next(
        c for c in salesforce_emulator.live_records("Contact") if c["CleverTap_Id__c"]
    )

    def upsert(all_or_none: bool, records: list[dict[str, Any]]) -> Any:
        return _call(
            salesforce_emulator,
            "PATCH",
            f"/services/data/{V}/composite/sobjects/Contact/CleverTap_Id__c",
            json={
                "allOrNone": all_or_none,
                "records": [{"attributes": {"type": "Contact"}, **r} for r in records],
            },
        ).json()

    existing = {"CleverTap_Id__c": contact["CleverTap_Id__c"], "Title": "VP"}
    ok = upsert(False, [{"CleverTap_Id__c": "ct-docs-new", "LastName": "N"}, existing])
    assert [_shape(i) for i in ok] == [_shape(i) for i in COLLECTIONS["upsert_all_ok"]]
    assert [i["created"] for i in ok] == [True, False]

    bad = {"CleverTap_Id__c": "ct-docs-bad", "LastName": "B", "NPS_Score__c": 99}
    rolled = upsert(True, [existing, bad])
    recorded = COLLECTIONS["upsert_some_failed_all_or_none_true"]
    assert [_shape(i) for i in rolled] == [_shape(i) for i in recorded]
    assert rolled[0]["id"] == contact["Id"]
    assert rolled[0]["errors"] == recorded[0]["errors"]


def test_target_reads_the_documented_collections_results() -> None:
    """Replay: the guide's answers parse into per-record outcomes for the target."""
    results = collections_results(COLLECTIONS["upsert_some_failed_all_or_none_true"], 2)
    assert [r.success for r in results] == [False, False]
    assert results[0].record_id == "001xx0000004GxDAAU"
    assert results[1].record_id is None
    assert results[1].code == "MALFORMED_ID"
    create = COLLECTIONS["create_some_failed_all_or_none_false"]
    created = collections_results(create, 2)
    assert created[0].record_id is None
    assert created[1].record_id == "003RM0000068xVCYAY"


# --- Bulk API 1.0 ------------------------------------------------------------------


def _batch_info(text: str) -> dict[str, str]:
    """A batchInfo document's child elements, in order, without the namespace."""
    root = ET.fromstring(text)  # noqa: S314 - the emulator's or the guide's XML
    return {child.tag.split("}")[1]: child.text or "" for child in root}


def test_bulk1_add_batch_answers_queued_like_the_guide(
    salesforce_emulator: SalesforceHandle,
) -> None:
    base = f"/services/async/{V[1:]}"
    session = {"X-SFDC-Session": salesforce_emulator.access_token}
    job = _call(
        salesforce_emulator,
        "POST",
        f"{base}/job",
        json={"operation": "queryAll", "object": "Account", "contentType": "CSV"},
        headers=session,
    ).json()
    added = _call(
        salesforce_emulator,
        "POST",
        f"{base}/job/{job['id']}/batch",
        data=b"SELECT Id, Name FROM Account",
        headers={**session, "Content-Type": "text/csv"},
    )
    answer = _batch_info(added.text)
    recorded = _batch_info(BULK1["add_batch_answer_xml"])
    assert list(answer) == list(recorded)
    for key in ("state", "numberRecordsProcessed", "numberRecordsFailed"):
        assert answer[key] == recorded[key], key
    polled = _call(
        salesforce_emulator,
        "GET",
        f"{base}/job/{job['id']}/batch/{answer['id']}",
        headers=session,
    )
    assert _batch_info(polled.text)["state"] == "Completed"


# --- Bulk API 2.0 ------------------------------------------------------------------


def _ingest(handle: SalesforceHandle, body: dict[str, Any], data: str) -> str:
    base = f"/services/data/{V}/jobs/ingest"
    job_id = str(_call(handle, "POST", base, json=body).json()["id"])
    _call(
        handle,
        "PUT",
        f"{base}/{job_id}/batches",
        data=data.encode(),
        headers={"Content-Type": "text/csv"},
    )
    _call(handle, "PATCH", f"{base}/{job_id}", json={"state": "UploadComplete"})
    for _ in range(5):
        if _call(handle, "GET", f"{base}/{job_id}").json()["state"] == "JobComplete":
            break
    return job_id


def _results(handle: SalesforceHandle, job_id: str, kind: str) -> str:
    path = f"/services/data/{V}/jobs/ingest/{job_id}/{kind}/"
    return decode_csv(_call(handle, "GET", path).content)


def test_bulk2_successful_results_are_laid_out_like_the_guide(
    salesforce_emulator: SalesforceHandle,
) -> None:
    recorded = BULK2["successful_results_docs"]
    header = "CleverTap_Id__c,LastName,Lead_Score__c"
    job_id = _ingest(
        salesforce_emulator,
        {
            "object": "Contact",
            "operation": "upsert",
            "externalIdFieldName": "CleverTap_Id__c",
            "lineEnding": "LF",
        },
        f"{header}\nct-docs-1,Docs,800\n",
    )
    answer = _results(salesforce_emulator, job_id, "successfulResults")
    recorded_lines = recorded["answer"].splitlines(keepends=True)
    lines = answer.splitlines(keepends=True)
    # the header: quoted sf__ cells, then the uploaded header exactly as sent
    recorded_header = recorded["uploaded"].split("\n")[0]
    assert lines[0] == recorded_lines[0].replace(recorded_header, header)
    # the rows: every value quoted, LF line ends
    for line in (recorded_lines[1], lines[1]):
        cells = next(csv.reader(io.StringIO(line)))
        assert line == ",".join(f'"{c}"' for c in cells) + "\n"
    assert next(csv.reader(io.StringIO(lines[1])))[1:] == [
        "true",
        "ct-docs-1",
        "Docs",
        "800",
    ]


def test_bulk2_row_errors_read_like_the_real_org(
    salesforce_emulator: SalesforceHandle,
) -> None:
    job_id = _ingest(
        salesforce_emulator,
        {"object": "Account", "operation": "insert", "lineEnding": "LF"},
        "Name,NumberOfEmployees,BillingState\nAcme,300,\n,,CA\n",
    )
    failed = parse_csv(_results(salesforce_emulator, job_id, "failedResults"))
    recorded = BULK2["required_field_missing"]
    assert [(r["sf__Id"], r["sf__Error"]) for r in failed] == [
        (recorded["sf__Id"], recorded["sf__Error"])
    ]
    deleted = _ingest(
        salesforce_emulator,
        {"object": "Account", "operation": "delete", "lineEnding": "LF"},
        "Id\n" + salesforce_emulator.live_records("Account")[1]["Id"] + "\n",
    )
    ok = parse_csv(_results(salesforce_emulator, deleted, "successfulResults"))
    recorded_created = BULK2["delete_not_created"]["sf__Created"]
    assert [r["sf__Created"] for r in ok] == [recorded_created]


def test_bulk2_row_with_the_wrong_cell_count_fails_alone_like_the_real_org(
    salesforce_emulator: SalesforceHandle,
) -> None:
    recorded = BULK2["ragged_row"]
    job_id = _ingest(
        salesforce_emulator,
        {"object": "Contact", "operation": "insert", "lineEnding": "LF"},
        "Email,LastName,FirstName,Title\nr1@example.com,Ragged,Row\n"
        "ok@example.com,Whole,Row,CTO\n",
    )
    info = _call(
        salesforce_emulator, "GET", f"/services/data/{V}/jobs/ingest/{job_id}"
    ).json()
    assert (info["state"], info["numberRecordsFailed"]) == ("JobComplete", 1)
    answer = _results(salesforce_emulator, job_id, "failedResults")
    expected_row = recorded["answer"].splitlines()[1]
    assert answer.splitlines()[1] == expected_row
    ok = parse_csv(_results(salesforce_emulator, job_id, "successfulResults"))
    assert len(ok) == 1
