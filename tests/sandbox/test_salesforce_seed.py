"""The sample org's fidelity: standard fields and objects the presets rely on."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, TypeAlias

import pytest
from sandbox.salesforce import seed
from sandbox.salesforce.schema import OBJECTS
from sandbox.salesforce.store import Store
from sandbox.salesforce.values import parse_datetime

if TYPE_CHECKING:
    from sandbox.salesforce.testing import SalesforceHandle

# simple-salesforce types its dynamic attributes (sf.Contact, sf.bulk2.Contact) as a
# union of its handler classes and restful() as `Any | None`: the tests use the
# client as the untyped REST wrapper it is.
SF: TypeAlias = Any

Org = dict[str, list[dict[str, Any]]]


def _org(size: str) -> Org:
    out: Org = {}
    for name, record in seed._Seeder(Store(None), size).run():
        out.setdefault(name, []).append(record)
    return out


@pytest.fixture(scope="module", params=["small", "demo"])
def org(request: pytest.FixtureRequest) -> Org:
    return _org(request.param)


@pytest.fixture(scope="module")
def small() -> Org:
    return _org("small")


def test_new_fields_are_in_describe_with_their_salesforce_types() -> None:
    fields = {(o.name, f.name): f.type for o in OBJECTS.values() for f in o.fields}
    assert fields["Opportunity", "ContactId"] == "reference"
    assert fields["Task", "CompletedDateTime"] == "datetime"
    assert fields["Lead", "DoNotCall"] == "boolean"
    history = OBJECTS["OpportunityFieldHistory"].field_map
    assert set(history) >= {
        "Id",
        "OpportunityId",
        "Field",
        "OldValue",
        "NewValue",
        "CreatedDate",
        "CreatedById",
        "DataType",
        "IsDeleted",
    }
    assert history["OpportunityId"].reference_to == ("Opportunity",)
    assert OBJECTS["Opportunity"].field_map["ContactId"].reference_to == ("Contact",)
    assert not OBJECTS["OpportunityFieldHistory"].createable


def test_seed_with_new_fields_is_deterministic() -> None:
    assert _org("small") == _org("small")


def test_primary_contact_of_a_deal_belongs_to_its_account(org: Org) -> None:
    contacts = {c["Id"]: c for c in org["Contact"]}
    with_contact = [o for o in org["Opportunity"] if o["ContactId"]]
    assert with_contact
    for opp in with_contact:
        assert contacts[opp["ContactId"]]["AccountId"] == opp["AccountId"]


def test_small_org_has_won_and_lost_deals_on_accounts_with_contacts(
    small: Org,
) -> None:
    staffed = {c["AccountId"] for c in small["Contact"] if c["AccountId"]}
    closed = [
        o
        for o in small["Opportunity"]
        if o["IsClosed"] and o["AccountId"] in staffed and o["ContactId"]
    ]
    assert {o["StageName"] for o in closed} >= {"Closed Won", "Closed Lost"}
    for opp in closed:
        assert opp["IsWon"] is (opp["StageName"] == "Closed Won")


def test_converted_leads_point_at_the_contact_and_account_they_became(
    org: Org,
) -> None:
    contacts = {c["Id"]: c for c in org["Contact"]}
    converted = [lead for lead in org["Lead"] if lead["IsConverted"]]
    assert converted
    assert all(
        lead["IsConverted"]
        for lead in org["Lead"]
        if lead["Status"] == "Closed - Converted"
    )
    for lead in converted:
        contact = contacts[lead["ConvertedContactId"]]
        assert lead["Status"] == "Closed - Converted"
        assert lead["ConvertedAccountId"] == contact["AccountId"]
        assert (lead["LastName"], lead["Email"]) == (
            contact["LastName"],
            contact["Email"],
        )
        assert lead["ConvertedDate"] == contact["CreatedDate"][:10]
        assert lead["CreatedDate"] < contact["CreatedDate"]
    unconverted = [lead for lead in org["Lead"] if not lead["IsConverted"]]
    assert all(lead["ConvertedContactId"] is None for lead in unconverted)


def test_completed_tasks_have_a_completion_time_and_open_ones_none(
    org: Org,
) -> None:
    tasks = org["Task"]
    assert any(t["Status"] == "Completed" for t in tasks)
    for task in tasks:
        done = task["CompletedDateTime"]
        if task["Status"] != "Completed":
            assert done is None
            continue
        assert task["CreatedDate"] <= done <= task["LastModifiedDate"]
        parse_datetime(done)


def test_lead_do_not_call_is_a_boolean_and_sometimes_set(org: Org) -> None:
    values = [lead["DoNotCall"] for lead in org["Lead"]]
    assert all(isinstance(v, bool) for v in values)
    assert True in values
    assert False in values


def test_opportunity_field_history_follows_opportunity_history(org: Org) -> None:
    history: dict[str, list[dict[str, Any]]] = {}
    for row in org["OpportunityHistory"]:
        history.setdefault(row["OpportunityId"], []).append(row)
    changes: dict[str, list[dict[str, Any]]] = {}
    created: dict[str, int] = {}
    for row in org["OpportunityFieldHistory"]:
        assert row["IsDeleted"] is False
        assert row["CreatedById"]
        if row["Field"] == "created":
            created[row["OpportunityId"]] = created.get(row["OpportunityId"], 0) + 1
            assert row["OldValue"] is row["NewValue"] is None
            continue
        assert (row["Field"], row["DataType"]) == ("StageName", "DynamicEnum")
        changes.setdefault(row["OpportunityId"], []).append(row)
    assert created == {o["Id"]: 1 for o in org["Opportunity"]}
    assert changes
    for opp in org["Opportunity"]:
        rows = sorted(history.get(opp["Id"], []), key=lambda h: h["CreatedDate"])
        expected = [
            (a["StageName"], b["StageName"], b["CreatedDate"])
            for a, b in itertools.pairwise(rows)
            if a["StageName"] != b["StageName"]
        ]
        got = sorted(
            (c["OldValue"], c["NewValue"], c["CreatedDate"])
            for c in changes.get(opp["Id"], [])
        )
        assert got == sorted(expected)


def test_field_history_is_queryable_over_rest(sf: SF) -> None:
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert "OpportunityFieldHistory" in names
    rows = sf.query_all(
        "SELECT Id, OpportunityId, Field, OldValue, NewValue, CreatedDate "
        "FROM OpportunityFieldHistory WHERE Field = 'StageName'"
    )["records"]
    assert rows
    assert all(r["OldValue"] != r["NewValue"] for r in rows)
    opp = sf.query("SELECT Id, ContactId FROM Opportunity WHERE ContactId != null")
    assert opp["totalSize"] > 0


def test_completing_a_task_over_rest_sets_and_reopening_clears_completion_time(
    salesforce_emulator: SalesforceHandle,
    sf: SF,
) -> None:
    task = next(
        t for t in salesforce_emulator.records("Task") if t["Status"] != "Completed"
    )
    assert task["CompletedDateTime"] is None
    sf.Task.update(task["Id"], {"Status": "Completed"})
    done = sf.Task.get(task["Id"])
    assert done["IsClosed"] is True
    assert done["CompletedDateTime"]
    sf.Task.update(task["Id"], {"Status": "In Progress"})
    assert sf.Task.get(task["Id"])["CompletedDateTime"] is None
