"""The REST data API of the Salesforce emulator, driven by simple-salesforce."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from sandbox.salesforce.testing import SalesforceHandle

# simple-salesforce types its dynamic attributes (sf.Contact, sf.bulk2.Contact) as a
# union of its handler classes and restful() as `Any | None`: the tests use the
# client as the untyped REST wrapper it is.
SF: TypeAlias = Any
# Its errors' `content` is the parsed JSON body, though declared as bytes.

DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


def _error(exc: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    content = cast("list[dict[str, Any]]", exc.value.content)
    assert isinstance(content, list)
    return dict(content[0])


def test_sobjects_list_names_the_seeded_and_custom_objects(sf: SF) -> None:
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert {
        "Lead",
        "Contact",
        "Account",
        "Opportunity",
        "Case",
        "Task",
        "Event",
        "User",
        "Campaign",
        "CampaignMember",
        "OpportunityHistory",
        "CaseHistory",
        "CleverTap_Engagement__c",
    } <= names


def test_describe_flags_external_ids_picklists_and_references(sf: SF) -> None:
    fields = {f["name"]: f for f in sf.Contact.describe()["fields"]}
    ct_id = fields["CleverTap_Id__c"]
    assert ct_id["externalId"] is True
    assert ct_id["unique"] is True
    assert ct_id["custom"] is True
    assert fields["LeadSource"]["type"] == "picklist"
    assert "Web" in [p["value"] for p in fields["LeadSource"]["picklistValues"]]
    assert fields["AccountId"]["referenceTo"] == ["Account"]
    assert fields["AccountId"]["relationshipName"] == "Account"
    assert fields["LastName"]["nillable"] is False
    assert fields["Name"]["createable"] is False
    assert fields["MailingAddress"]["type"] == "address"
    assert fields["Interests__c"]["type"] == "multipicklist"
    engagement = {f["name"]: f for f in sf.CleverTap_Engagement__c.describe()["fields"]}
    assert engagement["CleverTap_Event_Id__c"]["externalId"] is True
    assert engagement["Contact__c"]["referenceTo"] == ["Contact"]
    lead = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    assert lead["CleverTap_Id__c"]["externalId"] is True
    assert lead["CleverTap_Id__c"]["unique"] is False


def test_every_salesforce_field_type_is_seeded_with_values(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    seen: dict[str, int] = {}
    for name in ("Contact", "Account", "Lead", "Opportunity", "Campaign", "Task"):
        fields = sf.restful(f"sobjects/{name}/describe")["fields"]
        rows = salesforce_emulator.records(name)
        for field in fields:
            filled = sum(r.get(field["name"]) not in (None, "") for r in rows)
            seen[field["type"]] = seen.get(field["type"], 0) + filled
    for kind in (
        "id",
        "string",
        "picklist",
        "multipicklist",
        "boolean",
        "int",
        "double",
        "currency",
        "percent",
        "date",
        "datetime",
        "phone",
        "email",
        "url",
        "textarea",
        "address",
        "reference",
        "combobox",
    ):
        assert seen.get(kind, 0) > 0, kind


def test_create_returns_201_body_and_stores_the_record(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    result = sf.Contact.create({"LastName": "Rao", "Email": "rao@example.com"})
    assert result["success"] is True
    assert result["errors"] == []
    stored = next(
        r for r in salesforce_emulator.records("Contact") if r["Id"] == result["id"]
    )
    assert stored["Name"] == "Rao"
    assert DATETIME_RE.match(stored["CreatedDate"])
    got = sf.Contact.get(result["id"])
    assert got["Email"] == "rao@example.com"
    assert got["attributes"]["type"] == "Contact"


def test_update_returns_204_and_delete_hides_from_query_not_query_all(
    sf: SF,
) -> None:
    record_id = sf.Contact.create({"LastName": "Temp"})["id"]
    assert sf.Contact.update(record_id, {"Title": "CFO"}) == 204
    assert sf.Contact.get(record_id)["Title"] == "CFO"
    assert sf.Contact.delete(record_id) == 204
    soql = f"SELECT Id, IsDeleted FROM Contact WHERE Id = '{record_id}'"  # noqa: S608 - SOQL on a local emulator
    assert sf.query(soql)["totalSize"] == 0
    deleted = sf.query_all(soql, include_deleted=True)["records"]
    assert deleted[0]["IsDeleted"] is True
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.get(record_id)


def test_upsert_creates_201_then_updates_200(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    assert sf.Contact.upsert("CleverTap_Id__c/ct-new-1", {"LastName": "New"}) == 201
    response = sf.Contact.upsert(
        "CleverTap_Id__c/ct-new-1", {"Title": "VP"}, raw_response=True
    )
    assert response.status_code == 200
    assert response.json()["created"] is False
    rows = [
        r
        for r in salesforce_emulator.records("Contact")
        if r["CleverTap_Id__c"] == "ct-new-1"
    ]
    assert len(rows) == 1
    assert rows[0]["Title"] == "VP"
    assert (
        sf.Contact.get_by_custom_id("CleverTap_Id__c", "ct-new-1")["Id"]
        == rows[0]["Id"]
    )


def test_upsert_matching_two_records_answers_300(sf: SF) -> None:
    # The sample org has two leads sharing a (non-unique) CleverTap Id.
    with pytest.raises(SalesforceMoreThanOneRecord) as exc:
        sf.Lead.upsert("CleverTap_Id__c/ct-lead-000000", {"Title": "x"})
    assert len(cast("list[dict[str, Any]]", exc.value.content)) == 2


def test_upsert_on_a_field_that_is_not_an_external_id_answers_404(
    sf: SF,
) -> None:
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Contact.upsert("Title/CEO", {"LastName": "x"})
    assert _error(exc)["errorCode"] == "NOT_FOUND"


def test_upsert_value_with_slash_is_matched_when_url_quoted(sf: SF) -> None:
    assert sf.Contact.upsert("CleverTap_Id__c/a%2Fb%20c", {"LastName": "Q"}) == 201
    found = sf.query("SELECT CleverTap_Id__c FROM Contact WHERE LastName = 'Q'")
    assert found["records"][0]["CleverTap_Id__c"] == "a/b c"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"LastName": "x", "Bogus__c": 1}, "INVALID_FIELD", "Bogus__c"),
        ({"FirstName": "x"}, "REQUIRED_FIELD_MISSING", "LastName"),
        (
            {"LastName": "x", "NPS_Score__c": 11},
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "NPS_Score__c",
        ),
        (
            {"LastName": "x", "CleverTap_Id__c": "ct-000000"},
            "DUPLICATE_VALUE",
            "CleverTap_Id__c",
        ),
        ({"LastName": "x", "Email": "not-an-email"}, "INVALID_EMAIL_ADDRESS", "Email"),
        ({"LastName": "x", "Name": "y"}, "INVALID_FIELD_FOR_INSERT_UPDATE", "Name"),
        ({"LastName": "x", "AccountId": "nope"}, "MALFORMED_ID", "AccountId"),
        # a JSON type error refuses the whole request (misc_real_errors.md)
        ({"LastName": "x", "Birthdate": "yesterday"}, "JSON_PARSER_ERROR", "date"),
    ],
)
def test_create_rejections_are_shaped_as_salesforce_errors(
    sf: SF, body: dict[str, Any], code: str, field: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Contact.create(body)
    error = _error(exc)
    assert error["errorCode"] == code
    assert field in error.get("fields", []) or field in error["message"]


def test_relationship_by_external_id_sets_the_lookup(sf: SF) -> None:
    contact = sf.query(
        "SELECT Id, CleverTap_Id__c FROM Contact WHERE CleverTap_Id__c != null LIMIT 1"
    )["records"][0]
    result = sf.CleverTap_Engagement__c.create(
        {
            "CleverTap_Event_Id__c": "evt-rel-1",
            "Event_Name__c": "Charged",
            "Contact__r": {"CleverTap_Id__c": contact["CleverTap_Id__c"]},
        }
    )
    stored = sf.CleverTap_Engagement__c.get(result["id"])
    assert stored["Contact__c"] == contact["Id"]
    assert stored["Name"].startswith("CTE-")


def test_query_all_follows_next_records_url_pages(
    make_salesforce_emulator: Callable[..., SalesforceHandle],
) -> None:
    handle = make_salesforce_emulator(query_page_size=7)
    sf = Salesforce(
        session_id=handle.access_token,
        instance_url=handle.base_url,
        session=handle.session(),
    )
    first = sf.query("SELECT Id FROM Contact ORDER BY Id ASC")
    assert first["done"] is False
    assert first["totalSize"] == 30
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    every = sf.query_all("SELECT Id, Email FROM Contact ORDER BY Id ASC")["records"]
    assert [r["Id"] for r in every] == sorted(
        r["Id"] for r in handle.records("Contact")
    )


def test_tap_style_soql_with_unquoted_datetimes_filters_and_sorts(
    sf: SF,
) -> None:
    soql = (
        "SELECT Id,SystemModstamp FROM Account WHERE SystemModstamp >= "
        "2024-06-01T00:00:00Z  AND SystemModstamp < 2025-01-01T00:00:00.000000Z "
        " ORDER BY SystemModstamp ASC"
    )
    rows = sf.query_all(soql)["records"]
    stamps = [r["SystemModstamp"] for r in rows]
    assert stamps == sorted(stamps)
    assert all("2024-06-01" <= s < "2025-01-01" for s in stamps)
    assert all(DATETIME_RE.match(s) for s in stamps)


def test_target_style_lookups_with_in_and_equals(sf: SF) -> None:
    rows = sf.query(
        "SELECT Id, CleverTap_Id__c, Birthdate FROM Contact WHERE "
        "CleverTap_Id__c IN ('ct-000000', 'ct-000002', 'missing')"
    )["records"]
    assert {r["CleverTap_Id__c"] for r in rows} <= {"ct-000000", "ct-000002"}
    assert rows
    count = sf.query("SELECT COUNT() FROM Lead WHERE Status = 'Open - Not Contacted'")
    assert count["records"] == []
    assert count["totalSize"] >= 0


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
        ("SELECT Nope__c FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Nothing__c", "INVALID_TYPE"),
        ("SELEC Id FROM Contact", "MALFORMED_QUERY"),
    ],
)
def test_bad_queries_answer_400_with_the_salesforce_code(
    sf: SF, soql: str, code: str
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(soql)
    assert _error(exc)["errorCode"] == code


def test_every_response_carries_the_exact_quota_header(
    salesforce_emulator: SalesforceHandle, sf: SF
) -> None:
    sf.query("SELECT Id FROM Contact LIMIT 1")
    used, limit = salesforce_emulator.api_usage()
    assert sf.api_usage["api-usage"].used == used
    assert sf.api_usage["api-usage"].total == limit == 100_000
    response = salesforce_emulator.session().get(
        f"{salesforce_emulator.base_url}/services/data/v61.0/limits",
        headers={"Authorization": f"Bearer {salesforce_emulator.access_token}"},
        timeout=10,
    )
    assert re.fullmatch(r"api-usage=\d+/100000", response.headers["Sforce-Limit-Info"])
    assert response.json()["DailyApiRequests"]["Max"] == 100_000


def test_seed_is_deterministic_and_demo_size_has_thousands(
    make_salesforce_emulator: Callable[..., SalesforceHandle],
) -> None:
    one = make_salesforce_emulator()
    two = make_salesforce_emulator()
    assert one.records("Contact") == two.records("Contact")
    total = one.seed("demo")
    assert total > 3000
    assert len(one.records("Contact")) > 500
    assert one.seed("small") < 300


# ---------------------------------------------------------------- duplicate rules


def _new_contact(email: str) -> dict[str, Any]:
    return {"attributes": {"type": "Contact"}, "LastName": "Dup", "Email": email}


def test_duplicate_rule_blocks_creates_with_the_matched_ids(sf: SF) -> None:
    existing = sf.query("SELECT Id, Email FROM Contact WHERE Email != null LIMIT 1")
    seeded = existing["records"][0]
    body = {"allOrNone": False, "records": [_new_contact(seeded["Email"].upper())]}
    [result] = sf.restful("composite/sobjects", method="POST", json=body)
    assert result["success"] is False
    [error] = result["errors"]
    assert error["statusCode"] == "DUPLICATES_DETECTED"
    matches = error["duplicateResult"]["matchResults"]
    assert [r["record"]["Id"] for r in matches[0]["matchRecords"]] == [seeded["Id"]]
    # the single-record reply: HTTP 400 with real orgs' `duplicateResut` key
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Contact.create({"LastName": "Dup", "Email": seeded["Email"]})
    [single] = cast("list[dict[str, Any]]", exc.value.content)
    assert single["errorCode"] == "DUPLICATES_DETECTED"
    records = single["duplicateResut"]["matchResults"][0]["matchRecords"]
    assert records[0]["record"]["Id"] == seeded["Id"]


def test_duplicate_rule_header_allows_the_save_over_rest(sf: SF) -> None:
    lead = sf.query("SELECT Email FROM Lead WHERE Email != null LIMIT 1")
    email = lead["records"][0]["Email"]
    record = {"attributes": {"type": "Lead"}, "LastName": "Dup", "Company": "C"}
    body = {"allOrNone": False, "records": [{**record, "Email": email}]}
    [blocked] = sf.restful("composite/sobjects", method="POST", json=body)
    assert blocked["errors"][0]["statusCode"] == "DUPLICATES_DETECTED"
    [saved] = sf.restful(
        "composite/sobjects",
        method="POST",
        json=body,
        headers={"Sforce-Duplicate-Rule-Header": "allowSave=true"},
    )
    assert saved["success"] is True


def test_bulk_ingest_cannot_bypass_duplicate_rules(sf: SF) -> None:
    seeded = sf.query("SELECT Email FROM Contact WHERE Email != null LIMIT 1")
    email = seeded["records"][0]["Email"]
    sf.headers["Sforce-Duplicate-Rule-Header"] = "allowSave=true"
    results = sf.bulk2.Contact.insert(
        records=[{"LastName": "Dup", "Email": email}], wait=0
    )
    assert results[0]["numberRecordsFailed"] == 1
    failed = sf.bulk2.Contact.get_failed_records(results[0]["job_id"])
    assert "DUPLICATES_DETECTED" in failed


# ----------------------------------------------------------- whole-request errors


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ({"LastName": "x", "Bogus__c": 1}, "INVALID_FIELD"),
        ({"LastName": "x", "NPS_Score__c": "high"}, "JSON_PARSER_ERROR"),
    ],
)
def test_collections_refuse_the_whole_call_for_unknown_field_or_json_type(
    sf: SF, record: dict[str, Any], code: str
) -> None:
    good = {"attributes": {"type": "Contact"}, "LastName": "fine"}
    body = {"records": [good, {"attributes": {"type": "Contact"}, **record}]}
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite/sobjects", method="POST", json=body)
    assert exc.value.status == 400
    errors = cast("list[dict[str, Any]]", exc.value.content)
    assert errors[0]["errorCode"] == code
    found = sf.query("SELECT COUNT() FROM Contact WHERE LastName = 'fine'")
    assert found["totalSize"] == 0
