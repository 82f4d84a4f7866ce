"""Contract tests: the emulator's Bulk 2.0 answers have the shape of the recordings.

Each test replays what a recorded real org did (copied to
`tests/fixtures/real_api_salesforce/` with its source line) against the
emulator, then hands the recorded answer to target-salesforce's parsing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.salesforce.app import LONG_TEXT_PAGE, _long_text_columns
from target_salesforce.bulk import parse_bulk_error, parse_csv
from target_salesforce.bulk_client import decode_csv

if TYPE_CHECKING:
    from sandbox.salesforce.testing import SalesforceHandle

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "real_api_salesforce"
TRACE = json.loads((RECORDINGS / "bulk2_update_trace.json").read_text("utf-8"))
ERRORS = json.loads((RECORDINGS / "misc_real_errors.json").read_text("utf-8"))
# CODE:message:fields -- (fields comma-separated, possibly none: `CODE:message:--`)
SF_ERROR = re.compile(r"^[A-Z_]+:.+:(?:[\w.,]+ )?--$", re.DOTALL)


class Api:
    """Raw Bulk 2.0 calls against the emulator, as the recorded client made them."""

    def __init__(self, handle: SalesforceHandle, version: str = "52.0") -> None:
        self.session = handle.session()
        self.headers = {"Authorization": f"Bearer {handle.access_token}"}
        self.base = f"{handle.base_url}/services/data/v{version}/jobs/ingest"

    def call(self, method: str, suffix: str = "", **kwargs: Any) -> Any:
        return self.session.request(
            method,
            f"{self.base}{suffix}",
            headers={**self.headers, **kwargs.pop("headers", {})},
            timeout=10,
            **kwargs,
        )

    def run_job(self, body: dict[str, Any], csv_text: str) -> dict[str, Any]:
        """Create, upload, close and poll a job; every answer, as received."""
        create = self.call("POST", json=body)
        job_id = create.json()["id"]
        upload = self.call(
            "PUT",
            f"/{job_id}/batches",
            data=csv_text.encode("utf-8"),
            headers={"Content-Type": "text/csv"},
        )
        close = self.call("PATCH", f"/{job_id}", json={"state": "UploadComplete"})
        polls = []
        for _ in range(10):
            polls.append(self.call("GET", f"/{job_id}"))
            if polls[-1].json()["state"] not in {"UploadComplete", "InProgress"}:
                break
        return {
            "id": job_id,
            "create": create,
            "upload": upload,
            "close": close,
            "polls": polls,
        }


def test_bulk2_update_job_answers_like_the_recorded_org(
    salesforce_emulator: SalesforceHandle,
) -> None:
    accounts = salesforce_emulator.live_records("Account")[:4]
    rows = "".join(f"{a['Id']},+1 555 0100\n" for a in accounts)
    api = Api(salesforce_emulator)
    job = api.run_job(
        {
            "object": TRACE["object"],
            "operation": TRACE["operation"],
            "contentType": "CSV",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        },
        TRACE["uploaded_header"] + "\n" + rows,
    )
    create = job["create"]
    assert create.status_code == 200
    assert create.headers["Content-Type"].startswith("application/json")
    assert set(create.json()) == set(TRACE["create"])
    assert create.json()["state"] == "Open"
    assert re.fullmatch(
        r"services/data/v52\.0/jobs/ingest/750\w{15}/batches",
        create.json()["contentUrl"],
    )
    assert job["upload"].status_code == TRACE["upload_status"]
    assert job["upload"].content == b""
    close = job["close"]
    assert close.status_code == 200
    # the close answers UploadComplete, with exactly the recorded keys
    assert close.json()["state"] == TRACE["close"]["state"]
    assert set(close.json()) == set(TRACE["close"])
    # then InProgress, then JobComplete over later polls
    assert [p.json()["state"] for p in job["polls"]] == TRACE["poll_states"]
    done = job["polls"][-1].json()
    assert set(TRACE["complete_excerpt"]) <= set(done)
    assert (
        done["numberRecordsProcessed"]
        == TRACE["complete_excerpt"]["numberRecordsProcessed"]
    )
    assert done["numberRecordsFailed"] == 0
    failed = api.call("GET", f"/{job['id']}/failedResults/")
    assert failed.headers["Content-Type"] == "text/csv"  # no charset, as recorded
    assert failed.text == TRACE["failed_results"]
    unprocessed = api.call("GET", f"/{job['id']}/unprocessedrecords/")
    assert unprocessed.headers["Content-Type"] == "text/csv"
    assert unprocessed.text == TRACE["unprocessed_records"]


def test_recorded_result_files_parse_as_header_only() -> None:
    """Replay: the recorded clean job's result files hold no row for the target."""
    assert parse_csv(decode_csv(TRACE["failed_results"].encode())) == []
    assert parse_csv(decode_csv(TRACE["unprocessed_records"].encode())) == []


def test_bulk_sf_error_has_the_recorded_format(
    salesforce_emulator: SalesforceHandle,
) -> None:
    contact = salesforce_emulator.live_records("Contact")[0]
    api = Api(salesforce_emulator)
    job = api.run_job(
        {"object": "Contact", "operation": "update", "lineEnding": "LF"},
        f"Id,AccountId\n{contact['Id']},001000000000000AAA\n",
    )
    assert job["polls"][-1].json()["numberRecordsFailed"] == 1
    failed = api.call("GET", f"/{job['id']}/failedResults/")
    rows = parse_csv(decode_csv(failed.content))
    recorded = ERRORS["bulk_sf_error"]["example"]
    assert SF_ERROR.match(recorded)
    assert SF_ERROR.match(rows[0]["sf__Error"]), rows[0]["sf__Error"]
    code, _, fields = parse_bulk_error(rows[0]["sf__Error"])
    assert code == "INVALID_CROSS_REFERENCE_KEY"
    assert fields == ("AccountId",)


def test_recorded_sf_errors_parse_into_code_message_and_fields() -> None:
    recorded = ERRORS["bulk_sf_error"]["example"]
    assert parse_bulk_error(recorded) == (
        "INVALID_CROSS_REFERENCE_KEY",
        "invalid cross reference id",
        (),
    )
    code, message, fields = parse_bulk_error(ERRORS["duplicate_external_id"]["example"])
    assert code == "DUPLICATE_EXTERNAL_ID"
    assert message.startswith("CIS Account Number: more than one record found")
    assert fields == ()
    assert parse_bulk_error(
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --"
    ) == (
        "REQUIRED_FIELD_MISSING",
        "Required fields are missing: [LastName]",
        ("LastName",),
    )


def test_upsert_matching_several_records_names_the_field_label(
    salesforce_emulator: SalesforceHandle,
) -> None:
    """DUPLICATE_EXTERNAL_ID per row, its message led by the label (recorded)."""
    sf_session = salesforce_emulator.session()
    headers = {"Authorization": f"Bearer {salesforce_emulator.access_token}"}
    records = [
        {
            "attributes": {"type": "Lead"},
            "LastName": f"Twin {i}",
            "Company": "Twins",
            "CleverTap_Id__c": "ct-twin",
        }
        for i in range(2)
    ]
    created = sf_session.post(
        f"{salesforce_emulator.base_url}/services/data/v62.0/composite/sobjects",
        json={"allOrNone": True, "records": records},
        headers=headers,
        timeout=10,
    ).json()
    assert all(r["success"] for r in created), created
    api = Api(salesforce_emulator, "62.0")
    job = api.run_job(
        {
            "object": "Lead",
            "operation": "upsert",
            "externalIdFieldName": "CleverTap_Id__c",
            "lineEnding": "LF",
        },
        "CleverTap_Id__c,Company\nct-twin,Twins Inc\n",
    )
    failed = api.call("GET", f"/{job['id']}/failedResults/")
    row = parse_csv(decode_csv(failed.content))[0]
    code, message, fields = parse_bulk_error(row["sf__Error"])
    recorded_code = ERRORS["duplicate_external_id"]["example"].split(":")[0]
    assert code == recorded_code
    assert message.startswith("CleverTap ID: more than one record found")
    assert fields == ("CleverTap_Id__c",)


def test_query_all_pages_point_at_query_and_follow_the_page_size(
    make_salesforce_emulator: Any,
) -> None:
    """A queryAll's `nextRecordsUrl` reads `.../query/<locator>-<n>` (REST guide)."""
    handle = make_salesforce_emulator(query_page_size=5)
    session = handle.session()
    headers = {"Authorization": f"Bearer {handle.access_token}"}
    base = f"{handle.base_url}/services/data/v62.0"
    total = len(handle.records("Contact"))
    assert total > 5
    page = session.get(
        f"{base}/queryAll",
        params={"q": "SELECT Id FROM Contact"},
        headers=headers,
        timeout=10,
    ).json()
    assert len(page["records"]) == 5
    assert re.fullmatch(r"/services/data/v62\.0/query/01g\w+-5", page["nextRecordsUrl"])
    seen = {r["Id"] for r in page["records"]}
    while not page["done"]:
        page = session.get(
            handle.base_url + page["nextRecordsUrl"], headers=headers, timeout=10
        ).json()
        seen |= {r["Id"] for r in page["records"]}
    assert len(seen) == total


def test_only_custom_long_text_areas_count_toward_the_200_row_page() -> None:
    """Two or more selected custom long text areas cap a page at 200 (SOQL guide)."""
    contact = {
        "attributes": {"type": "Contact"},
        "Last_Feedback__c": "x",  # custom, 32,768 characters: counts
        "Description": "y",  # standard long text: does not
        "LastName": "z",
    }
    assert _long_text_columns([contact]) == 1
    assert _long_text_columns([]) == 0
    assert LONG_TEXT_PAGE == 200
