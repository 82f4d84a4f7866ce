"""Pure parts of target-salesforce: mapping parsing, payloads, CSV, result mapping."""

from __future__ import annotations

import datetime as dt
import decimal
import stat
from typing import Any

import pytest
from target_salesforce.bulk import (
    bulk_columns,
    bulk_results,
    parse_bulk_error,
    parse_csv,
    split_uploads,
)
from target_salesforce.describe import check_mapping_against_describe, parse_describe
from target_salesforce.mapping import (
    MappingError,
    find_mapping,
    load_mappings,
    parse_stream_mapping,
)
from target_salesforce.payloads import (
    Prepared,
    apex_calls,
    build_sobject_payload,
    collections_request,
    prepare_apex_batch,
    prepare_batch,
)
from target_salesforce.rejects import PrivateJsonLines, reject_entry
from target_salesforce.results import apex_results, collections_results
from target_salesforce.values import (
    CODE_CONVERSION,
    CODE_DUPLICATE_KEY,
    CODE_MISSING_KEY,
    CODE_RESTRICTED_PICKLIST,
    convert,
    render_payload,
)

DESCRIBE: dict[str, Any] = {
    "name": "Contact",
    "fields": [
        {"name": "Id", "type": "id", "createable": False, "updateable": False},
        {
            "name": "CleverTap_Id__c",
            "type": "string",
            "createable": True,
            "updateable": True,
            "externalId": True,
            "length": 80,
        },
        {"name": "Email", "type": "email", "createable": True, "updateable": True},
        {"name": "LastName", "type": "string", "createable": True, "updateable": True},
        {
            "name": "NPS_Score__c",
            "type": "double",
            "createable": True,
            "updateable": True,
        },
        {"name": "Birthdate", "type": "date", "createable": True, "updateable": True},
        {
            "name": "Last_Seen__c",
            "type": "datetime",
            "createable": True,
            "updateable": True,
        },
        {
            "name": "HasOptedOutOfEmail",
            "type": "boolean",
            "createable": True,
            "updateable": True,
        },
        {
            "name": "LeadSource",
            "type": "picklist",
            "createable": True,
            "updateable": True,
            "restrictedPicklist": True,
            "picklistValues": [
                {"value": "Web", "active": True},
                {"value": "CleverTap"},
            ],
        },
        {
            "name": "Description",
            "type": "textarea",
            "createable": True,
            "updateable": True,
        },
        {
            "name": "CreatedDate",
            "type": "datetime",
            "createable": False,
            "updateable": False,
        },
    ],
}
FIELDS = parse_describe(DESCRIBE)


def contact_mapping(**extra: Any) -> Any:
    raw = {
        "object": "Contact",
        "external_id_field": "CleverTap_Id__c",
        "fields": {
            "CleverTap_Id__c": "identity",
            "Email": "profile.email",
            "LastName": {"source": "name", "default": "Unknown"},
            "NPS_Score__c": "score",
            "LeadSource": {"value": "CleverTap"},
            "Description": {"template": "NPS {score} from {profile.city}"},
        },
    }
    raw.update(extra)
    return parse_stream_mapping("nps", raw)


def test_payload_maps_renames_constants_templates_and_types() -> None:
    record = {
        "identity": "ct-1",
        "profile": {"email": "a@example.com", "city": "Pune"},
        "score": decimal.Decimal(9),
        "name": None,
    }
    payload = build_sobject_payload(record, contact_mapping(), FIELDS, "skip")
    assert payload == {
        "CleverTap_Id__c": "ct-1",
        "Email": "a@example.com",
        "LastName": "Unknown",
        "NPS_Score__c": 9,
        "LeadSource": "CleverTap",
        "Description": "NPS 9 from Pune",
    }


def test_null_policy_skip_drops_nulls_and_set_null_keeps_them() -> None:
    mapping = parse_stream_mapping(
        "s",
        {
            "object": "Contact",
            "external_id_field": "CleverTap_Id__c",
            "fields": {"CleverTap_Id__c": "id", "Email": "email"},
        },
    )
    record = {"id": "k", "email": None}
    assert build_sobject_payload(record, mapping, FIELDS, "skip") == {
        "CleverTap_Id__c": "k"
    }
    assert build_sobject_payload(record, mapping, FIELDS, "set_null") == {
        "CleverTap_Id__c": "k",
        "Email": None,
    }


@pytest.mark.parametrize("kind", ["date", "datetime", "number", "integer", "boolean"])
def test_an_empty_string_is_null_for_every_field_type(kind: str) -> None:
    mapping = parse_stream_mapping(
        "s",
        {
            "object": "Contact",
            "external_id_field": "CleverTap_Id__c",
            "fields": {
                "CleverTap_Id__c": "id",
                "Typed__c": {"source": "value", "type": kind},
            },
        },
    )
    record = {"id": "k", "value": ""}
    assert build_sobject_payload(record, mapping, FIELDS, "skip") == {
        "CleverTap_Id__c": "k"
    }
    assert build_sobject_payload(record, mapping, FIELDS, "set_null") == {
        "CleverTap_Id__c": "k",
        "Typed__c": None,
    }


def test_leftover_properties_are_packed_as_json_into_a_text_field() -> None:
    mapping = parse_stream_mapping(
        "s",
        {
            "object": "Contact",
            "external_id_field": "CleverTap_Id__c",
            "fields": {"CleverTap_Id__c": "identity"},
            "pack_unmapped_into": "Description",
        },
    )
    record = {
        "identity": "x",
        "amount": decimal.Decimal("1.5"),
        "ts": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "_sdc_received_at": "ignored",
    }
    payload = build_sobject_payload(record, mapping, FIELDS, "skip")
    assert payload["Description"] == ('{"amount":1.5,"ts":"2024-01-02T03:04:05.000Z"}')


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (dt.datetime(2024, 5, 6, 23, 30, tzinfo=dt.UTC), "date", "2024-05-06"),
        ("2024-05-06T10:00:00+02:00", "datetime", "2024-05-06T08:00:00.000Z"),
        (1700000000, "datetime", "2023-11-14T22:13:20.000Z"),
        (1700000000000, "datetime", "2023-11-14T22:13:20.000Z"),
        ("$D_1700000000", "date", "2023-11-14"),
        (20240115023333, "datetime", "2024-01-15T02:33:33.000Z"),
        ("20240115", "date", "2024-01-15"),
        ("yes", "boolean", True),
        (0, "boolean", False),
        ("12.50", "number", 12.5),
        (decimal.Decimal(7), "integer", 7),
        (["a", "b"], "multipicklist", "a;b"),
        ({"k": 1}, "string", '{"k":1}'),
        (None, "date", None),
    ],
)
def test_convert_turns_values_into_salesforce_types(
    value: Any, kind: str, expected: Any
) -> None:
    assert convert(value, kind) == expected


def test_bad_value_becomes_a_conversion_reject_naming_the_field() -> None:
    mapping = contact_mapping()
    items, rejects = prepare_batch(
        [{"identity": "a", "score": "not a number"}], mapping, FIELDS, "skip", "merge"
    )
    assert items == []
    assert rejects[0].code == CODE_CONVERSION
    assert rejects[0].fields == ["NPS_Score__c"]


def test_restricted_picklist_value_is_rejected_before_sending() -> None:
    mapping = parse_stream_mapping(
        "s",
        {
            "object": "Contact",
            "external_id_field": "CleverTap_Id__c",
            "fields": {"CleverTap_Id__c": "id", "LeadSource": "src"},
        },
    )
    _, rejects = prepare_batch(
        [{"id": "a", "src": "Fax"}], mapping, FIELDS, "skip", "merge"
    )
    assert rejects[0].code == CODE_RESTRICTED_PICKLIST


def test_missing_key_is_rejected() -> None:
    _, rejects = prepare_batch(
        [{"score": 3}], contact_mapping(), FIELDS, "skip", "merge"
    )
    assert rejects[0].code == CODE_MISSING_KEY


def test_duplicate_keys_merge_later_wins_and_both_inputs_share_the_item() -> None:
    records = [
        {"identity": "a", "score": 1, "name": "First"},
        {"identity": "b", "score": 2},
        {"identity": "a", "score": 5},
    ]
    items, rejects = prepare_batch(records, contact_mapping(), FIELDS, "skip", "merge")
    assert rejects == []
    assert [i.key for i in items] == ["a", "b"]
    assert items[0].inputs == [0, 2]
    assert items[0].payload["NPS_Score__c"] == 5
    # The later record had no name, so its default "Unknown" wins over "First".
    assert items[0].payload["LastName"] == "Unknown"


def test_duplicate_keys_reject_refuses_every_copy() -> None:
    records = [{"identity": "a"}, {"identity": "b"}, {"identity": "a"}]
    items, rejects = prepare_batch(records, contact_mapping(), FIELDS, "skip", "reject")
    assert [i.key for i in items] == ["b"]
    assert sorted(r.index for r in rejects) == [0, 2]
    assert {r.code for r in rejects} == {CODE_DUPLICATE_KEY}


def test_describe_check_names_unknown_field_and_object() -> None:
    mapping = parse_stream_mapping(
        "s",
        {
            "object": "Contact",
            "external_id_field": "CleverTap_Id__c",
            "fields": {"CleverTap_Id__c": "id", "Shoe_Size__c": "shoe"},
        },
    )
    with pytest.raises(MappingError, match=r"'Shoe_Size__c' does not exist on Contact"):
        check_mapping_against_describe(mapping, FIELDS, [])


def test_describe_check_refuses_read_only_field() -> None:
    mapping = parse_stream_mapping(
        "s",
        {
            "object": "Contact",
            "external_id_field": "CleverTap_Id__c",
            "fields": {"CleverTap_Id__c": "id", "CreatedDate": "ts"},
        },
    )
    with pytest.raises(MappingError, match=r"'CreatedDate' on Contact is not writable"):
        check_mapping_against_describe(mapping, FIELDS, [])


def test_describe_check_requires_external_id_flag_on_upsert_key() -> None:
    mapping = parse_stream_mapping(
        "s",
        {"object": "Contact", "external_id_field": "Email", "fields": {"Email": "e"}},
    )
    with pytest.raises(MappingError, match="not flagged External ID"):
        check_mapping_against_describe(mapping, FIELDS, [])


def test_describe_check_covers_pass_through_schema_properties() -> None:
    mapping = parse_stream_mapping(
        "s", {"object": "Contact", "external_id_field": "CleverTap_Id__c"}
    )
    check_mapping_against_describe(mapping, FIELDS, ["CleverTap_Id__c", "Email"])
    with pytest.raises(MappingError, match="'favourite_colour' does not exist"):
        check_mapping_against_describe(
            mapping, FIELDS, ["CleverTap_Id__c", "favourite_colour"]
        )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"object": "Contact"}, "external_id_field is required for upsert"),
        ({"external_id_field": "X"}, "object is required"),
        ({"object": "C", "action": "merge", "external_id_field": "X"}, "allowed"),
        ({"object": "C", "external_id_field": "X", "colour": 1}, "unknown keys"),
        (
            {
                "object": "C",
                "action": "insert",
                "fields": {"A": {"type": "blob", "source": "a"}},
            },
            "type",
        ),
        ({"mode": "apex", "apex": {"path": "x"}}, "needs `path` and `payload`"),
    ],
)
def test_invalid_mapping_is_refused_with_its_location(
    raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(MappingError, match=message):
        parse_stream_mapping("s", raw)


def test_mappings_file_is_overlaid_by_streams_setting_and_patterns_match(
    tmp_path: Any,
) -> None:
    path = tmp_path / "m.yml"
    path.write_text(
        "streams:\n"
        "  events_*:\n"
        "    object: CleverTap_Engagement__c\n"
        "    external_id_field: Event_Key__c\n"
        "  nps:\n"
        "    object: Lead\n"
        "    external_id_field: CleverTap_Id__c\n",
        encoding="utf-8",
    )
    mappings = load_mappings(
        {"nps": {"object": "Contact", "external_id_field": "CleverTap_Id__c"}},
        str(path),
    )
    assert mappings["nps"].sobject == "Contact"
    found = find_mapping(mappings, "events_App_Launched")
    assert found is not None
    assert found.sobject == "CleverTap_Engagement__c"
    assert find_mapping(mappings, "profiles") is None


def test_collections_requests_per_action() -> None:
    items = [Prepared([0], {"CleverTap_Id__c": "a/b?c", "Email": "x@y.z"}, "a/b?c")]
    method, path, kwargs = collections_request(
        "upsert", "Contact", "CleverTap_Id__c", items
    )
    assert (method, path) == ("PATCH", "composite/sobjects/Contact/CleverTap_Id__c")
    assert kwargs["json"]["records"][0] == {
        "attributes": {"type": "Contact"},
        "CleverTap_Id__c": "a/b?c",
        "Email": "x@y.z",
    }
    assert kwargs["json"]["allOrNone"] is False
    delete = collections_request(
        "delete", "Contact", None, [Prepared([0], {"Id": "003A"})]
    )
    assert delete == (
        "DELETE",
        "composite/sobjects",
        {"params": {"ids": "003A", "allOrNone": "false"}},
    )
    assert collections_request("insert", "Contact", None, items)[0] == "POST"


def test_bulk_csv_uses_crlf_empty_for_absent_and_na_for_null() -> None:
    items = [
        Prepared(
            [0], {"CleverTap_Id__c": "a", "Email": None, "NPS_Score__c": 1.5}, "a"
        ),
        Prepared([1], {"CleverTap_Id__c": "b", "Description": 'say "hi",\r\nbye'}, "b"),
    ]
    columns = bulk_columns("upsert", "CleverTap_Id__c", items)
    assert columns == ["CleverTap_Id__c", "Email", "NPS_Score__c", "Description"]
    [(positions, text)] = split_uploads(columns, items, 10**8)
    assert positions == [0, 1]
    assert text.split("\r\n")[:2] == [
        "CleverTap_Id__c,Email,NPS_Score__c,Description",
        "a,#N/A,1.5,",
    ]
    rows = parse_csv(text)
    assert rows[1]["Description"] == 'say "hi",\r\nbye'
    assert rows[1]["Email"] == ""


def test_bulk_results_map_back_by_key_whatever_the_row_order() -> None:
    items = [
        Prepared([0], {"CleverTap_Id__c": "a"}, "a"),
        Prepared([1, 2], {"CleverTap_Id__c": "b"}, "b"),
        Prepared([3], {"CleverTap_Id__c": "c"}, "c"),
    ]
    results = bulk_results(
        ["CleverTap_Id__c"],
        "CleverTap_Id__c",
        items,
        successful=[
            {"sf__Id": "003B", "sf__Created": "false", "CleverTap_Id__c": "b"},
            {"sf__Id": "003A", "sf__Created": "true", "CleverTap_Id__c": "a"},
        ],
        failed=[
            {
                "sf__Id": "",
                "sf__Error": "FIELD_CUSTOM_VALIDATION_EXCEPTION:NPS must be 0-10:--",
                "CleverTap_Id__c": "c",
            }
        ],
    )
    assert [r.success if r else None for r in results] == [True, True, False]
    assert results[0] is not None
    assert results[0].created is True
    assert results[2] is not None
    assert results[2].code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"


def test_bulk_insert_results_match_on_all_columns() -> None:
    items = [Prepared([0], {"LastName": "A"}), Prepared([1], {"LastName": "B"})]
    results = bulk_results(
        ["LastName"],
        None,
        items,
        successful=[{"sf__Id": "1", "sf__Created": "true", "LastName": "B"}],
        failed=[],
    )
    assert results[0] is None
    assert results[1] is not None
    assert results[1].success


def test_collections_results_carry_status_code_and_fields() -> None:
    results = collections_results(
        [
            {"id": "003", "success": True, "created": True, "errors": []},
            {
                "success": False,
                "errors": [
                    {
                        "statusCode": "INVALID_EMAIL_ADDRESS",
                        "message": "bad",
                        "fields": ["Email"],
                    }
                ],
            },
        ],
        2,
    )
    assert results[0].created is True
    assert (results[1].code, results[1].fields) == ("INVALID_EMAIL_ADDRESS", ("Email",))
    with pytest.raises(ValueError, match="expected 3"):
        collections_results([], 3)
    with pytest.raises(ValueError, match="expected 1"):
        collections_results(["not an object"], 1)


def test_bulk_error_without_fields_part_splits_into_code_and_message() -> None:
    text = "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access"
    code, message, fields = parse_bulk_error(text)
    assert (code, message, fields) == (
        "UNABLE_TO_LOCK_ROW",
        "unable to obtain exclusive access",
        (),
    )
    assert parse_bulk_error("weird") == ("UNKNOWN_ERROR", "weird", ())


def test_apex_payload_keeps_types_and_quotes_path_values() -> None:
    mapping = parse_stream_mapping(
        "nps",
        {
            "mode": "apex",
            "apex": {
                "path": "ct/v1/nps/{email}",
                "payload": {
                    "email": "{email}",
                    "leadScore": "{score}",
                    "city": "{profile.city}",
                    "note": "score {score}",
                    "tags": ["ct", "{missing}"],
                },
            },
        },
    )
    items, rejects = prepare_apex_batch(
        [
            {
                "email": "a b/c@x.io",
                "score": decimal.Decimal(8),
                "profile": {"city": "Pune"},
            },
            {"score": 1},
        ],
        mapping,
    )
    assert [r.index for r in rejects] == [1]
    assert items[0].key == "ct/v1/nps/a%20b%2Fc%40x.io"
    assert items[0].payload == {
        "email": "a b/c@x.io",
        "leadScore": 8,
        "city": "Pune",
        "note": "score 8",
        "tags": ["ct", None],
    }


def test_apex_list_batching_groups_records_per_call() -> None:
    mapping = parse_stream_mapping(
        "nps",
        {
            "mode": "apex",
            "apex": {
                "path": "ct/v1/nps",
                "payload": {"e": "{e}"},
                "batching": "list",
                "list_key": "responses",
                "max_records_per_call": 2,
            },
        },
    )
    items, _ = prepare_apex_batch([{"e": 1}, {"e": 2}, {"e": 3}], mapping)
    calls = list(apex_calls(items, mapping))
    assert [(p, b) for p, b, _ in calls] == [
        ("ct/v1/nps", {"responses": [{"e": 1}, {"e": 2}]}),
        ("ct/v1/nps", {"responses": [{"e": 3}]}),
    ]
    assert render_payload([1, "{e}"], {"e": True}) == [1, True]


def test_rejects_file_keeps_every_digit_of_a_decimal(tmp_path: Any) -> None:
    path = tmp_path / "rejects.jsonl"
    record = {"ltv": decimal.Decimal("99999999999999.99"), "n": decimal.Decimal(3)}
    PrivateJsonLines(path).write({"record": record})
    assert path.read_text(encoding="utf-8") == (
        '{"record": {"ltv": 99999999999999.99, "n": 3}}\n'
    )


def test_rejects_file_is_private_json_lines(tmp_path: Any) -> None:
    path = tmp_path / "sub" / "rejects.jsonl"
    writer = PrivateJsonLines(path)
    writer.write(
        reject_entry(
            stream="s",
            sobject="Contact",
            action="upsert",
            key="k",
            code="X",
            message="m",
            fields=["F"],
            record={"n": decimal.Decimal("1.5")},
        )
    )
    writer.write({"b": 2})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert '"record": {"n": 1.5}' in lines[0]


# --- Apex results ---------------------------------------------------------------------


def test_apex_list_result_with_success_false_rejects_that_record_with_its_code() -> (
    None
):
    # CleverTapNpsService's per-record result for a save the org refused
    failed = {
        "email": "a@example.com",
        "success": False,
        "id": "0035g00000AAAAAAAA",
        "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "message": "NPS must be between 0 and 10",
    }
    ok, bad = apex_results([{"success": True, "id": "003x"}, failed], 2)
    assert ok.success
    assert ok.record_id == "003x"
    assert not bad.success
    assert (bad.code, bad.message) == (
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "NPS must be between 0 and 10",
    )


def test_apex_failed_result_without_a_code_is_never_apex_error() -> None:
    # APEX_ERROR means a rolled-back call (HTTP 500) and triggers isolate_errors
    [result] = apex_results([{"success": False}], 1)
    assert (result.success, result.code) == (False, "UNKNOWN_ERROR")
    [result] = apex_results({"success": "false", "errors": [{"message": "no"}]}, 1)
    assert (result.success, result.code, result.message) == (
        False,
        "UNKNOWN_ERROR",
        "no",
    )


def test_apex_mismatched_results_never_count_failures_as_loaded() -> None:
    short = [{"success": True}, {"success": False, "errorCode": "NOT_FOUND"}]
    results = apex_results(short, 3)
    assert [r.success for r in results] == [False, False, False]
    assert {r.code for r in results} == {"APEX_RESULTS_MISMATCH"}
    assert results[0].message is not None
    assert "2 results for 3 records, 1 failed (NOT_FOUND" in results[0].message
    whole = apex_results({"success": False, "errorCode": "LIMIT"}, 2)
    assert [r.code for r in whole] == ["APEX_RESULTS_MISMATCH"] * 2
    # a summary object or fewer successes only: every record succeeded
    assert all(r.success for r in apex_results({"success": True, "received": 2}, 2))
    assert all(r.success for r in apex_results([{"success": True}], 2))
    assert all(r.success for r in apex_results({"ok": 1}, 2))
