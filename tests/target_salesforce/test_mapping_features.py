"""Value maps, `now`, computed fields, `skip`, and file/line in mapping errors."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import textwrap
from typing import TYPE_CHECKING, Any

import pytest
from target_salesforce.describe import check_mapping_against_describe, parse_describe
from target_salesforce.errors import TargetSalesforceError
from target_salesforce.exprlang import ExpressionError, compile_expression
from target_salesforce.mapping import (
    MappingError,
    find_mapping,
    load_mappings,
    parse_stream_mapping,
)
from target_salesforce.payloads import build_sobject_payload, prepare_batch
from target_salesforce.run_context import run_start
from target_salesforce.values import CODE_CONVERSION

if TYPE_CHECKING:
    from pathlib import Path

CAMPAIGN: dict[str, Any] = {
    "name": "Campaign",
    "fields": [
        {
            "name": "CleverTap_Campaign_Id__c",
            "type": "string",
            "createable": True,
            "updateable": True,
            "externalId": True,
        },
        {"name": "Name", "type": "string", "createable": True, "updateable": True},
        {
            "name": "CleverTap_Channel__c",
            "type": "picklist",
            "createable": True,
            "updateable": True,
            "restrictedPicklist": True,
            "picklistValues": [{"value": v} for v in ("Email", "Push", "Web Push")],
        },
        {
            "name": "Interests__c",
            "type": "multipicklist",
            "createable": True,
            "updateable": True,
        },
        {
            "name": "CleverTap_Click_Rate__c",
            "type": "percent",
            "createable": True,
            "updateable": True,
        },
        {
            "name": "CleverTap_Sent__c",
            "type": "double",
            "createable": True,
            "updateable": True,
        },
        {
            "name": "CleverTap_Last_Synced__c",
            "type": "datetime",
            "createable": True,
            "updateable": True,
        },
        {"name": "StartDate", "type": "date", "createable": True, "updateable": True},
    ],
}
FIELDS = parse_describe(CAMPAIGN)
NOW = dt.datetime(2026, 11, 29, 4, 0, 0, tzinfo=dt.UTC)


def _mapping(fields: dict[str, Any]) -> Any:
    return parse_stream_mapping(
        "campaign_reports",
        {
            "object": "Campaign",
            "external_id_field": "CleverTap_Campaign_Id__c",
            "fields": {"CleverTap_Campaign_Id__c": "campaign_id", **fields},
        },
    )


def _payload(fields: dict[str, Any], record: dict[str, Any], **kw: Any) -> Any:
    record = {"campaign_id": "c1", **record}
    return build_sobject_payload(
        record, _mapping(fields), FIELDS, kw.pop("null_policy", "set_null"), now=NOW
    )


# ------------------------------------------------------------------ value maps

CHANNEL_MAP = {"push": "Push", "email": "Email", "webpush": "Web Push"}


def test_value_map_translates_case_insensitively_before_the_picklist_check() -> None:
    spec = {"source": "channel", "map": CHANNEL_MAP}
    for raw, expected in (
        ("push", "Push"),
        ("EMAIL", "Email"),
        (" webpush ", "Web Push"),
    ):
        payload = _payload({"CleverTap_Channel__c": spec}, {"channel": raw})
        assert payload["CleverTap_Channel__c"] == expected


def test_value_map_passes_unlisted_values_through_by_default() -> None:
    spec = {"source": "channel", "map": CHANNEL_MAP}
    payload = _payload({"Name": spec}, {"channel": "pigeon"})
    assert payload["Name"] == "pigeon"


def test_value_map_default_replaces_unlisted_values_and_may_be_null() -> None:
    other = {"source": "channel", "map": CHANNEL_MAP, "map_default": "Push"}
    cleared = {"source": "channel", "map": CHANNEL_MAP, "map_default": None}
    payload = _payload(
        {"CleverTap_Channel__c": other, "Name": cleared}, {"channel": "pigeon"}
    )
    assert payload["CleverTap_Channel__c"] == "Push"
    assert payload["Name"] is None


def test_value_map_leaves_null_to_the_field_default() -> None:
    spec = {"source": "channel", "map": CHANNEL_MAP, "default": "Email"}
    assert _payload({"CleverTap_Channel__c": spec}, {"channel": None}) == {
        "CleverTap_Campaign_Id__c": "c1",
        "CleverTap_Channel__c": "Email",
    }


def test_value_map_applies_to_each_item_of_a_list() -> None:
    spec = {"source": "tags", "map": {"sport": "Sports", "trip": "Travel"}}
    payload = _payload({"Interests__c": spec}, {"tags": ["sport", "trip", "Food"]})
    assert payload["Interests__c"] == "Sports;Travel;Food"


def test_value_map_matches_numbers_and_booleans_by_their_text() -> None:
    numbers = {"source": "level", "map": {1: "Push", 2.5: "Email"}}
    assert _payload({"Name": numbers}, {"level": 1})["Name"] == "Push"
    assert _payload({"Name": numbers}, {"level": "2.5"})["Name"] == "Email"
    flags = {"source": "opted_in", "map": {True: "Push", False: "Email"}}
    assert _payload({"Name": flags}, {"opted_in": True})["Name"] == "Push"
    assert _payload({"Name": flags}, {"opted_in": "false"})["Name"] == "Email"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": "c", "map": {}}, "must map source values"),
        ({"source": "c", "map": ["push"]}, "must map source values"),
        ({"source": "c", "map": {"Push": "A", "push": "B"}}, "listed twice"),
        ({"value": "x", "map": {"a": "b"}}, "translates a source or template"),
        ({"source": "c", "map_default": "x"}, "map_default needs a `map`"),
        ({"source": "c", "map": {"a": {"b": 1}}}, "must be a plain value"),
    ],
)
def test_bad_value_maps_fail_when_loading(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        _mapping({"Name": spec})


# ------------------------------------------------------------------ now


def test_now_fields_all_get_the_run_start_time() -> None:
    mapping = _mapping(
        {
            "CleverTap_Last_Synced__c": {"now": True},
            "StartDate": {"now": True},
        }
    )
    records = [{"campaign_id": "a"}, {"campaign_id": "b"}]
    items, rejects = prepare_batch(records, mapping, FIELDS, "skip", "merge", now=NOW)
    assert rejects == []
    assert [i.payload["CleverTap_Last_Synced__c"] for i in items] == [
        "2026-11-29T04:00:00.000Z"
    ] * 2
    assert {i.payload["StartDate"] for i in items} == {"2026-11-29"}


def test_now_without_a_given_time_is_one_value_per_batch() -> None:
    mapping = _mapping({"CleverTap_Last_Synced__c": {"now": True}})
    records = [{"campaign_id": str(i)} for i in range(50)]
    items, _ = prepare_batch(records, mapping, FIELDS, "skip", "merge")
    assert len({i.payload["CleverTap_Last_Synced__c"] for i in items}) == 1


def test_now_must_be_true() -> None:
    with pytest.raises(MappingError, match=r"now must be `true`"):
        _mapping({"CleverTap_Last_Synced__c": {"now": "yes"}})


def test_run_started_at_setting_pins_the_time_and_rejects_bad_text() -> None:
    assert run_start("2026-11-29T04:00:00Z") == NOW
    assert run_start("2026-11-29T04:00:00") == NOW
    assert run_start(None).tzinfo is dt.UTC
    with pytest.raises(TargetSalesforceError, match="run_started_at"):
        run_start("yesterday")


# ------------------------------------------------------------------ expressions

RATE = {"expr": "round(100 * clicked / sent, 2)"}


def test_expression_computes_a_rounded_rate() -> None:
    payload = _payload(
        {"CleverTap_Click_Rate__c": RATE}, {"clicked": 150, "sent": 2000}
    )
    assert payload["CleverTap_Click_Rate__c"] == 7.5
    payload = _payload({"CleverTap_Click_Rate__c": RATE}, {"clicked": 1, "sent": 3})
    assert payload["CleverTap_Click_Rate__c"] == decimal.Decimal("33.33")


def test_expression_reads_sdk_decimals_and_numeric_text() -> None:
    record = {"clicked": decimal.Decimal(1), "sent": "8"}
    payload = _payload({"CleverTap_Click_Rate__c": RATE}, record)
    assert payload["CleverTap_Click_Rate__c"] == 12.5


@pytest.mark.parametrize(
    "record",
    [
        {"clicked": 0, "sent": 0},
        {"clicked": 3, "sent": None},
        {"clicked": 3},
    ],
)
def test_expression_is_null_on_division_by_zero_or_missing_operand(
    record: dict[str, Any],
) -> None:
    payload = _payload({"CleverTap_Click_Rate__c": RATE}, record)
    assert payload["CleverTap_Click_Rate__c"] is None
    skipped = _payload({"CleverTap_Click_Rate__c": RATE}, record, null_policy="skip")
    assert "CleverTap_Click_Rate__c" not in skipped


def test_expression_null_falls_back_to_the_field_default() -> None:
    spec = {**RATE, "default": 0}
    payload = _payload({"CleverTap_Click_Rate__c": spec}, {"clicked": 0, "sent": 0})
    assert payload["CleverTap_Click_Rate__c"] == 0


def test_expression_functions_and_dotted_paths() -> None:
    spec = {"expr": "coalesce(stats.sent, 0) + max(-1, abs(-2)) - min(1, 2)"}
    assert (
        _payload({"CleverTap_Sent__c": spec}, {"stats": {}})["CleverTap_Sent__c"] == 1
    )
    record = {"stats": {"sent": 10}}
    assert _payload({"CleverTap_Sent__c": spec}, record)["CleverTap_Sent__c"] == 11


def test_expression_on_a_non_number_rejects_the_record() -> None:
    mapping = _mapping({"CleverTap_Click_Rate__c": RATE})
    records = [{"campaign_id": "a", "clicked": "many", "sent": 3}]
    items, rejects = prepare_batch(records, mapping, FIELDS, "skip", "merge", now=NOW)
    assert items == []
    (reject,) = rejects
    assert reject.code == CODE_CONVERSION
    assert "'clicked' is 'many', not a number" in reject.message


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "open('x')",
        "a.b()",
        "sent ** 2",
        "sent if clicked else 0",
        "'text'",
        "[sent]",
        "sent[0]",
        "lambda: 1",
        "round(sent, digits)",
        "round(sent, 99)",
        "abs(1, 2)",
        "round",
        "clicked / ",
        "",
        "True + 1",
        "min(x=1)",
    ],
)
def test_expressions_outside_the_allow_list_are_refused(text: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(text, number=True)


def test_expression_names_count_as_read_properties() -> None:
    mapping = _mapping({"CleverTap_Click_Rate__c": RATE})
    assert {"clicked", "sent", "campaign_id"} <= mapping.used_roots
    assert compile_expression("a.b / c").names == ("a.b", "c")


def test_expression_must_be_numeric_typed() -> None:
    with pytest.raises(MappingError, match="type must be number or integer"):
        _mapping({"Name": {"expr": "1 + 1", "type": "string"}})


# ------------------------------------------------------------------ skip


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mappings.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


PRESET = """\
    version: 1
    streams:
      events_*: &engagement
        object: CleverTap_Engagement__c
        external_id_field: CleverTap_Event_Id__c
        fields:
          CleverTap_Event_Id__c: event_key
          Event_Name__c: event_name
      events_charged:
        <<: *engagement
      campaign_reports:
        object: Campaign
        external_id_field: CleverTap_Campaign_Id__c
        fields:
          CleverTap_Campaign_Id__c: campaign_id
          CleverTap_Click_Rate__c: {expr: "100 * clicked / sent"}
"""


def test_skip_in_the_setting_switches_off_a_stream_the_file_maps(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, PRESET)
    mappings = load_mappings({"events_*": {"skip": True}}, path)
    launched = find_mapping(mappings, "events_app_launched")
    assert launched is not None
    assert launched.skip
    # An exact name still wins over the switched-off pattern.
    charged = find_mapping(mappings, "events_charged")
    assert charged is not None
    assert not charged.skip
    assert not mappings["campaign_reports"].skip


def test_skip_must_be_a_boolean() -> None:
    with pytest.raises(MappingError, match=r"streams\.x\.skip must be true or false"):
        parse_stream_mapping("x", {"skip": "yes"})
    assert not parse_stream_mapping(
        "x", {"skip": False, "object": "Contact", "action": "insert"}
    ).skip


# ------------------------------------------------------------------ file and line


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        (
            "CleverTap_Campaign_Id__c: campaign_id",
            "CleverTap_Campaign_Id__c: {source: campaign_id, type: text}",
            15,
            r"streams\.campaign_reports\.fields\.CleverTap_Campaign_Id__c\.type",
        ),
        (
            '{expr: "100 * clicked / sent"}',
            '{expr: "100 * clicked ** sent"}',
            16,
            r"fields\.CleverTap_Click_Rate__c\.expr: invalid expression",
        ),
        ("object: Campaign", "objekt: Campaign", 12, r"unknown keys: objekt"),
        ("Event_Name__c: event_name", "Event_Name__c: [event_name]", 8, r"Name__c"),
    ],
)
def test_errors_in_mappings_file_name_the_file_and_line(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    assert old in PRESET
    path = _write(tmp_path, PRESET.replace(old, new))
    with pytest.raises(MappingError, match=message) as info:
        load_mappings(None, path)
    assert str(info.value).startswith(f"mappings_file {path}, line {line}: streams.")


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, PRESET.replace("fields:\n", "fields: [\n", 1))
    with pytest.raises(MappingError, match=rf"mappings_file {path}, line \d+:"):
        load_mappings(None, path)


def test_errors_in_the_streams_setting_carry_no_file(tmp_path: Path) -> None:
    path = _write(tmp_path, PRESET)
    with pytest.raises(MappingError) as info:
        load_mappings({"campaign_reports": {"objekt": "Campaign"}}, path)
    assert str(info.value).startswith("streams.campaign_reports has unknown keys")


def test_describe_errors_end_with_the_file_and_line_of_the_field(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, PRESET.replace("CleverTap_Click_Rate__c:", "Click_Rat__c:"))
    mapping = load_mappings(None, path)["campaign_reports"]
    with pytest.raises(MappingError) as info:
        check_mapping_against_describe(mapping, FIELDS, ["campaign_id"])
    text = str(info.value)
    assert text.startswith("stream campaign_reports: field 'Click_Rat__c' does not")
    assert text.endswith(f"(mappings_file {path}, line 16)")


def test_mapping_values_from_yaml_serialise_like_plain_json(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        PRESET.replace(
            "CleverTap_Campaign_Id__c: campaign_id",
            "CleverTap_Campaign_Id__c: campaign_id\n"
            "          Name: {value: {a: 1}, type: json}",
        ),
    )
    mapping = load_mappings(None, path)["campaign_reports"]
    payload = build_sobject_payload(
        {"campaign_id": "c1", "clicked": 1, "sent": 4}, mapping, FIELDS, "skip"
    )
    assert json.loads(payload["Name"]) == {"a": 1}
    assert payload["CleverTap_Click_Rate__c"] == 25


# ------------------------------------------------------------------ on the emulator

METRICS_PRESET = """\
    streams:
      campaign_reports:
        object: Campaign
        external_id_field: CleverTap_Campaign_Id__c
        fields:
          CleverTap_Campaign_Id__c: {source: campaign_id, type: string}
          Name: {source: campaign_name, default: CleverTap campaign}
          CleverTap_Channel__c:
            source: channel
            map: {push: Push, email: Email, webpush: Web Push, sms: SMS}
            map_default: null
          CleverTap_Sent__c: sent
          CleverTap_Clicked__c: clicked
          CleverTap_Click_Rate__c: {expr: "round(100 * clicked / sent, 2)"}
          CleverTap_Last_Synced__c: {now: true}
      events_*:
        object: CleverTap_Engagement__c
        external_id_field: CleverTap_Event_Id__c
        fields:
          CleverTap_Event_Id__c: {template: "{identity}-{ts}"}
          Event_Name__c: event_name
"""


def test_mapped_channel_rate_and_sync_time_land_on_campaigns(
    harness: Any, tmp_path: Path
) -> None:
    path = _write(tmp_path, METRICS_PRESET)
    run = harness.run(
        harness.config(
            streams={},
            mappings_file=path,
            run_started_at="2026-11-29T04:00:00Z",
        ),
        harness.fixture("campaign_metrics.singer"),
    )
    assert run.error is None
    assert run.rejects == []
    by_id = {
        c["CleverTap_Campaign_Id__c"]: c
        for c in harness.handle.live_records("Campaign")
    }
    seeded = by_id["1700000000"]
    assert seeded["CleverTap_Channel__c"] == "Push"
    assert seeded["CleverTap_Click_Rate__c"] == 7.5
    assert seeded["CleverTap_Last_Synced__c"].startswith("2026-11-29T04:00:00")
    assert by_id["1800000001"]["CleverTap_Channel__c"] == "Email"
    assert by_id["1800000001"]["CleverTap_Click_Rate__c"] == 33.33
    no_sends = by_id["1800000002"]
    assert no_sends["CleverTap_Channel__c"] == "Web Push"
    assert no_sends["CleverTap_Click_Rate__c"] is None  # 0 / 0: no rate
    pigeon = by_id["1800000003"]
    assert pigeon["CleverTap_Channel__c"] is None  # not in the map: map_default
    assert pigeon["CleverTap_Click_Rate__c"] is None  # sent is null
    synced = {by_id[k]["CleverTap_Last_Synced__c"] for k in by_id if k >= "18"}
    assert synced == {seeded["CleverTap_Last_Synced__c"]}


def test_skip_setting_switches_off_a_file_stream_even_when_unmapped_fails(
    harness: Any, tmp_path: Path
) -> None:
    path = _write(tmp_path, METRICS_PRESET)
    run = harness.run(
        harness.config(
            streams={"events_*": {"skip": True}},
            mappings_file=path,
            unmapped_streams="fail",
        ),
        harness.fixture("engagement_events.singer"),
    )
    assert run.error is None
    assert harness.writes() == []
    (summary,) = run.summary.values()
    assert summary["target"] == "(skip: true)"
    assert summary["received"] == 3
    assert run.states  # the stream's STATE still moves on
