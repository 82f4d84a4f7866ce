"""Mapping loading and validation (`load_mappings`), and the `when:` language."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from target_clevertap.exprlang import ExpressionError as ConditionError
from target_clevertap.exprlang import compile_expression as compile_condition
from target_clevertap.mapping import default_mapping
from target_clevertap.mapping_load import MappingError, load_mappings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "target_clevertap"


def test_fixture_mappings_load_with_every_kind_of_spec() -> None:
    mappings = load_mappings(path=FIXTURES / "salesforce_mappings.yml")
    contact = mappings["Contact"]
    assert contact.profile is not None
    assert contact.profile.identity.kind == "template"
    assert contact.profile.properties.invert["DoNotCall"] == ("MSG-sms", "MSG-whatsapp")
    task = mappings["Task"]
    assert [e.label() for e in task.events] == ["Task Created", "Task Completed"]
    assert task.events[0].identity.ref_object == "Who"
    assert task.events[1].time == "CompletedDateTime"
    assert mappings["Account"].profile is not None
    assert mappings["Account"].profile.identity.ref_object == "Account"


def test_inline_mapping_wins_over_the_file_for_a_stream() -> None:
    inline = {"Contact": {"profile": {"identity": {"field": "Email"}}}}
    mappings = load_mappings(inline, FIXTURES / "salesforce_mappings.yml")
    assert mappings["Contact"].profile is not None
    assert mappings["Contact"].profile.identity.value == "Email"
    assert "Task" in mappings


def test_inline_mapping_may_be_json_text() -> None:
    text = '{"Lead": {"profile": {"identity": "Email"}}}'
    assert load_mappings(text)["Lead"].profile is not None


def test_bad_condition_error_names_file_line_stream_and_key(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text(
        "streams:\n"
        "  Task:\n"
        "    events:\n"
        "      - name: Task Created\n"
        "        identity: {ref: WhoId}\n"
        '        when: "IsClosed = = true"\n'
    )
    with pytest.raises(MappingError) as err:
        load_mappings(path=path)
    message = str(err.value)
    assert str(path) in message
    assert "line 6" in message
    assert "stream 'Task'" in message
    assert "events[0].when" in message


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text(
        "Contact:\n  profile:\n    identity: {field: Email}\n    propertys: {}\n"
    )
    with pytest.raises(
        MappingError,
        match=r"line 4: stream 'Contact', profile: unknown key 'propertys'",
    ):
        load_mappings(path=path)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text("Contact:\n  profile: [\n")
    with pytest.raises(MappingError, match=r"m.yml, line \d"):
        load_mappings(path=path)


def test_missing_mappings_file_is_named() -> None:
    with pytest.raises(MappingError, match=r"nope\.yml: cannot read it"):
        load_mappings(path="/nonexistent/nope.yml")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"X": {"profile": {}}}, "identity (or objectId) is required"),
        ({"X": {"events": [{"name": "E"}]}}, "identity is required"),
        (
            {"X": {"events": [{"identity": "Email"}]}},
            "exactly one of name or name_field",
        ),
        (
            {"X": {"profile": {"identity": {"ref": "Foo__c"}}}},
            "cannot tell which object",
        ),
        ({"X": {"profile": {"identity": {"template": "SF"}}}}, "at least one {Field}"),
        (
            {
                "X": {
                    "profile": {
                        "identity": "Email",
                        "properties": {"types": {"a": "x"}},
                    }
                }
            },
            "unknown type hint 'x'",
        ),
        ({"X": {}}, "needs a profile, events, or skip"),
        (
            {"X": {"events": [{"name": "E", "identity": {"ref": "WhatId"}}]}},
            "cannot tell which object 'WhatId' points to",
        ),
        (
            {
                "X": {
                    "profile": {
                        "identity": "Email",
                        "properties": {"previous": {"StageName": ""}},
                    }
                }
            },
            "previous maps tracked field names to keys",
        ),
        (
            {"X": {"version_field": 3, "profile": {"identity": "Email"}}},
            "version_field must be a field name",
        ),
        (
            {"X": {"track_key": "", "profile": {"identity": "Email"}}},
            "track_key must be a field name",
        ),
        (
            {
                "X": {
                    "profile": {"identity": "Email"},
                    "events": [{"name": "E", "when": 3}],
                }
            },
            "a condition must be a string",
        ),
    ],
)
def test_invalid_mappings_are_rejected_with_a_reason(spec, message) -> None:
    with pytest.raises(MappingError, match="stream 'X'") as err:
        load_mappings(spec)
    assert message in str(err.value)


def test_default_mapping_needs_an_email_field() -> None:
    assert default_mapping("Lead", ["Id", "Email"]) is not None
    assert default_mapping("Account", ["Id", "Name"]) is None


@pytest.mark.parametrize(
    ("text", "record", "expected"),
    [
        ("IsClosed == True", {"IsClosed": True}, True),
        ("IsClosed", {"IsClosed": False}, False),
        ("IsClosed and not IsWon", {"IsClosed": True, "IsWon": False}, True),
        ("Amount > 100", {"Amount": Decimal("100.5")}, True),
        ("Amount > 100", {}, False),
        ("Amount != 100", {}, True),
        ("StageName in ['Won', 'Closed Won']", {"StageName": "Closed Won"}, True),
        ("ClosedDate is None", {"ClosedDate": None}, True),
        ("ClosedDate is not None", {"ClosedDate": None}, False),
        (
            "CloseDate >= '2024-01-15'",
            {"CloseDate": dt.datetime(2024, 1, 15, tzinfo=dt.UTC)},
            True,
        ),
        ("(A == 1 or B == 2) and C == 'x'", {"A": 1, "B": 3, "C": "x"}, True),
        ('Status == "It\'s done"', {"Status": "It's done"}, True),
        ("Amount == '12'", {"Amount": Decimal(12)}, True),
        # a method the value does not have is a missing value, for an object too
        # (it raised AttributeError, which stopped the run, for a dict)
        ("StageName.lower() == 'won'", {"StageName": {"a": 1}}, False),
        ("StageName.lower() == 'won'", {"StageName": 5}, False),
        ("StageName.lower() == 'won'", {"StageName": "Won"}, True),
    ],
)
def test_conditions_evaluate_safely(text, record, expected) -> None:
    assert compile_condition(text)(record) is expected


@pytest.mark.parametrize(
    "text", ["", "A = ", "A = = 1", "(A = 1", "__import__('os')", "A ~ 1", "A is 1"]
)
def test_bad_conditions_do_not_parse(text) -> None:
    with pytest.raises(ConditionError):
        compile_condition(text)


def test_referenced_fields_and_origin_line_support_preset_checks() -> None:
    mappings = load_mappings(path=FIXTURES / "salesforce_mappings.yml")
    task = mappings["Task"]
    text = (FIXTURES / "salesforce_mappings.yml").read_text().splitlines()
    line = text.index("  Task:") + 1
    assert task.origin.endswith(f"salesforce_mappings.yml, line {line}")
    fields = task.referenced_fields()
    assert fields["WhoId"] == ["events[0].identity", "events[1].identity"]
    assert fields["CompletedDateTime"] == ["events[1].when", "events[1].time"]
    assert "Subject" in fields
    contact = mappings["Contact"].referenced_fields()
    assert contact["Id"] == ["profile.identity", "profile.properties.exclude"]
    assert contact["HasOptedOutOfEmail"] == ["profile.properties.invert"]


@pytest.mark.parametrize(
    ("text", "record", "previous", "expected"),
    [
        ("changed(StageName)", {"StageName": "B"}, {"StageName": "A"}, True),
        ("changed(StageName)", {"StageName": "A"}, {"StageName": "A"}, False),
        # first sighting: nothing remembered, so nothing changed
        ("changed(StageName)", {"StageName": "B"}, None, False),
        # a field not remembered yet, or absent from the record, did not change
        ("changed(StageName)", {"StageName": "B"}, {"Amount": 1}, False),
        ("changed(StageName)", {}, {"StageName": "A"}, False),
        ("changed(StageName)", {"StageName": None}, {"StageName": "A"}, True),
        ("changed(Amount)", {"Amount": Decimal("5.00")}, {"Amount": 5}, False),
        (
            "changed(StageName) and previous(StageName) != 'Closed Won'",
            {"StageName": "Closed Lost"},
            {"StageName": "Closed Won"},
            False,
        ),
        ("previous(StageName) is None", {"StageName": "B"}, None, True),
        # a field named like a function is still a field without parentheses
        ("changed == True", {"changed": True}, None, True),
    ],
)
def test_change_conditions_compare_with_the_remembered_values(
    text, record, previous, expected
) -> None:
    assert compile_condition(text)(record, previous) is expected


@pytest.mark.parametrize(
    "text", ["changed()", "changed('A')", "previous(A", "changed(A"]
)
def test_bad_change_conditions_do_not_parse(text) -> None:
    with pytest.raises(ConditionError):
        compile_condition(text)


def test_change_tracking_mapping_tracks_fields_and_times_events_by_modification():
    mappings = load_mappings(path=FIXTURES / "salesforce_mappings.yml")
    opportunity = mappings["Opportunity"]
    assert opportunity.tracked_fields == {"StageName", "Amount"}
    changed = opportunity.events[3]
    assert changed.label() == "Opportunity Stage Changed"
    assert changed.time == "modified"  # SystemModstamp, else LastModifiedDate
    assert opportunity.events[0].time == "auto"
    fields = opportunity.referenced_fields()
    assert "events[3].properties.previous" in fields["StageName"]
    assert "events[3].when" in fields["StageName"]
    assert mappings["Task"].tracked_fields == frozenset()
    custom = load_mappings(
        {
            "Deal__c": {
                "version_field": "Updated__c",
                "events": [
                    {
                        "name": "Deal Moved",
                        "identity": {"ref": "Owner__cId"},
                        "when": "changed(Stage__c)",
                    }
                ],
            }
        }
    )["Deal__c"]
    assert custom.events[0].time == "Updated__c"
    assert custom.version_fields() == ("Updated__c",)
    assert opportunity.version_fields() == ("SystemModstamp", "LastModifiedDate")
    # the `<Object>Id` default: the object is the field name without `Id`
    assert custom.events[0].identity.ref_object == "Owner__c"


def test_case_id_reference_resolves_through_the_case_stream() -> None:
    mappings = load_mappings(path=FIXTURES / "salesforce_mappings.yml")
    (event,) = mappings["CaseHistory"].events
    assert event.identity.ref_object == "Case"
    explicit = load_mappings(
        {
            "X": {
                "events": [
                    {"name": "E", "identity": {"ref": "ParentId", "object": "Case"}}
                ]
            }
        }
    )["X"]
    assert explicit.events[0].identity.ref_object == "Case"


def test_opt_out_maps_a_flag_to_keys_and_excludes_invert_of_the_same_field() -> None:
    spec: dict[str, Any] = {
        "profile": {
            "identity": "Email",
            "properties": {"opt_out": {"DoNotCall": ["MSG-sms", "MSG-whatsapp"]}},
        }
    }
    mapping = load_mappings({"Contact": spec})["Contact"]
    assert mapping.profile is not None
    assert mapping.profile.properties.opt_out == {
        "DoNotCall": ("MSG-sms", "MSG-whatsapp")
    }
    assert mapping.referenced_fields()["DoNotCall"] == ["profile.properties.opt_out"]
    spec["profile"]["properties"]["invert"] = {"DoNotCall": "MSG-sms"}
    with pytest.raises(MappingError, match="both invert and opt_out"):
        load_mappings({"Contact": spec})
    bad = {"identity": "Email", "properties": {"opt_out": 1}}
    with pytest.raises(MappingError, match="opt_out maps a boolean field"):
        load_mappings({"Contact": {"profile": bad}})
