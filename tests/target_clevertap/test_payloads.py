"""Pure payload building: typing, reserved keys, identities, events, limits."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from target_clevertap.mapping_load import load_mappings
from target_clevertap.payloads import (
    PayloadOptions,
    RecordContext,
    RecordReject,
    SchemaInfo,
    UnresolvedReference,
    build_uploads,
    ct_date,
    event_key,
    multi_values,
    normalise_phone,
    record_key,
)

DATE_SCHEMA = {
    "properties": {
        "Birthdate": {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]
        },
        "Anniversary__c": {"type": "string", "format": "date"},
        "CreatedDate": {"type": "string", "format": "date-time"},
    }
}


#: the build's "now" (2033-05-18): after every record time of these tests
NOW = 2_000_000_000


def _build(mapping_spec, record, *, stream="Contact", opts=None, resolve=None):
    mapping = load_mappings({stream: mapping_spec})[stream]

    def no_refs(obj: str, rec_id: str) -> list[str]:
        raise UnresolvedReference(obj, obj, rec_id)

    return build_uploads(
        record,
        RecordContext(
            stream=stream,
            key=str(record.get("Id")),
            mapping=mapping,
            schema=SchemaInfo.from_schema(DATE_SCHEMA),
            opts=opts or PayloadOptions(default_phone_country="US"),
            resolve=resolve or no_refs,
            now=NOW,
        ),
    )


PROFILE = {"profile": {"identity": {"template": "SF_Contact_{Id}"}}}


def test_datetimes_become_dollar_d_epoch_seconds() -> None:
    value = dt.datetime(2024, 1, 5, 10, 0, tzinfo=dt.UTC)
    assert ct_date(value) == "$D_1704448800"
    assert ct_date("2024-01-05T10:00:00.000000Z") == "$D_1704448800"
    assert (
        ct_date(
            dt.datetime(
                2024,
                1,
                5,
                15,
                30,
                tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)),
            )
        )
        == "$D_1704448800"
    )


def test_numbers_booleans_and_decimals_keep_their_types() -> None:
    result = _build(
        PROFILE,
        {"Id": "1", "Amount": Decimal("3001.50"), "Count": Decimal(42), "Flag": False},
    )
    data = result.items[0].payload["profileData"]
    assert data["Amount"] == 3001.5
    assert data["Count"] == 42
    assert isinstance(data["Count"], int)
    assert data["Flag"] is False
    json.dumps(result.items[0].payload)  # serialisable as is


def test_nulls_are_skipped_unless_send_is_set() -> None:
    record = {"Id": "1", "Fax": None}
    assert "Fax" not in _build(PROFILE, record).items[0].payload["profileData"]
    sent = _build(PROFILE, record, opts=PayloadOptions(null_values="send"))
    assert sent.items[0].payload["profileData"]["Fax"] is None


_TZ_SCRIPT = """
import datetime as dt, json, time
from target_clevertap.payloads import SchemaInfo, build_properties, PayloadOptions, _Out
from target_clevertap.mapping import PropertySpec
time.tzset()
schema = SchemaInfo.from_schema({SCHEMA})
record = {{"Birthdate": dt.datetime(1990, 5, 17, tzinfo=dt.UTC),
          "Anniversary__c": dt.date(2020, 2, 29),
          "CloseDate": "2024-01-15T00:00:00.000000Z",
          "ActivityDate": dt.datetime(2024, 3, 10)}}
print(json.dumps(build_properties(record, PropertySpec(), schema,
      _Out(PayloadOptions(), []), profile=False)))
"""


@pytest.mark.parametrize(
    "tz", ["UTC", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Kiritimati"]
)
def test_date_only_fields_stay_on_their_calendar_day_in_any_time_zone(tz: str) -> None:
    script = _TZ_SCRIPT.format(SCHEMA=repr(DATE_SCHEMA))
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "TZ": tz},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(out) == {
        "Birthdate": "$D_642902400",  # 1990-05-17T00:00Z
        "Anniversary__c": "$D_1582934400",  # 2020-02-29T00:00Z
        "CloseDate": "$D_1705276800",  # 2024-01-15T00:00Z
        "ActivityDate": "$D_1710028800",  # 2024-03-10T00:00Z
    }


def test_phone_numbers_are_normalised_to_e164() -> None:
    assert normalise_phone("(415) 555-1234", "US") == "+14155551234"
    assert normalise_phone("+91 98765 43210", None) == "+919876543210"
    assert normalise_phone("020 7946 0958", "GB") == "+442079460958"
    with pytest.raises(RecordReject) as err:
        normalise_phone("12", "US")
    assert err.value.code == "invalid_phone"
    with pytest.raises(RecordReject, match="default_phone_country"):
        normalise_phone("415 555 1234", None)


def test_multi_picklist_is_split_and_deduplicated() -> None:
    assert multi_values("a;b; c;a;;") == ["a", "b", "c"]
    spec = {
        "profile": {"identity": "Email", "properties": {"types": {"Tags": "multi"}}}
    }
    many = ";".join(str(i) for i in range(150))
    result = _build(spec, {"Id": "1", "Email": "a@b.co", "Tags": many})
    assert result.items[0].payload["profileData"]["Tags"] == [
        str(i) for i in range(100)
    ]
    assert result.warnings
    strict = PayloadOptions(oversize="reject")
    with pytest.raises(RecordReject) as err:
        _build(spec, {"Id": "1", "Email": "a@b.co", "Tags": many}, opts=strict)
    assert (err.value.code, err.value.field) == ("too_many_values", "Tags")


def test_long_values_and_keys_are_truncated_or_rejected() -> None:
    record = {"Id": "1", "Note": "é" * 400, "K" * 130: "v"}
    data = _build(PROFILE, record).items[0].payload["profileData"]
    assert len(data["Note"].encode()) <= 512
    assert any(len(k.encode()) == 120 for k in data)
    with pytest.raises(RecordReject) as err:
        _build(PROFILE, record, opts=PayloadOptions(oversize="reject"))
    assert err.value.code in {"value_too_long", "key_too_long"}


def test_prohibited_key_characters_are_replaced() -> None:
    data = _build(PROFILE, {"Id": "1", "a.b:c$d": 1}).items[0].payload["profileData"]
    assert data == {"Id": "1", "a_b_c_d": 1}


def test_reserved_keys_are_validated() -> None:
    spec = {
        "profile": {"identity": "Email", "properties": {"rename": {"Sex": "Gender"}}}
    }
    ok = _build(
        spec,
        {
            "Id": "1",
            "Email": " A@B.co ",
            "Sex": "female",
            "FirstName": "A",
            "LastName": "B",
        },
    )
    data = ok.items[0].payload
    assert data["identity"] == "a@b.co"
    assert data["profileData"]["Gender"] == "F"
    assert data["profileData"]["Name"] == "A B"
    with pytest.raises(RecordReject) as err:
        _build(spec, {"Id": "1", "Email": "a@b.co", "Sex": "x"})
    assert err.value.code == "invalid_gender"


def test_placeholder_identity_is_missing() -> None:
    spec = {"profile": {"identity": "Email"}}
    with pytest.raises(RecordReject) as err:
        _build(spec, {"Id": "1", "Email": "N/A"})
    assert (err.value.code, err.value.field) == ("missing_identity", "Email")


def test_event_time_never_defaults_to_now() -> None:
    spec = {"events": [{"name": "E", "identity": {"field": "Who"}}]}
    with pytest.raises(RecordReject) as err:
        _build(spec, {"Id": "1", "Who": "p"})
    assert err.value.code == "missing_time"
    now_spec = {"events": [{"name": "E", "identity": {"field": "Who"}, "time": "now"}]}
    assert _build(now_spec, {"Id": "1", "Who": "p"}).items[0].ts == NOW
    fallback = _build(
        spec, {"Id": "1", "Who": "p", "SystemModstamp": "2024-01-01T00:00:00Z"}
    )
    assert fallback.items[0].ts == 1704067200


def test_an_event_timed_by_a_date_field_lands_on_that_day_in_the_account_zone() -> None:
    # CloseDate 2026-12-27 in a Los Angeles account: the event and the
    # property are both midnight of Dec 27 there (the event was 16:00 on Dec 26)
    spec = {
        "events": [
            {
                "name": "Opportunity Won",
                "identity": "Who",
                "time": "CloseDate",
                "properties": {"include": ["CloseDate"]},
            }
        ]
    }
    zone = ZoneInfo("America/Los_Angeles")
    opts = PayloadOptions(default_phone_country="US", zone=zone)
    record = {"Id": "1", "Who": "p", "CloseDate": "2026-12-27"}
    (item,) = _build(spec, record, stream="Opportunity", opts=opts).items
    midnight = int(dt.datetime(2026, 12, 27, tzinfo=zone).timestamp())
    assert item.ts == midnight
    assert item.payload["evtData"]["CloseDate"] == f"$D_{midnight}"
    # the event key is the one it had with the UTC midnight: no resend
    utc = _build(spec, record, stream="Opportunity").items[0]
    assert utc.ts != item.ts
    assert item.event_key == utc.event_key


def test_event_name_from_template_or_field_and_condition() -> None:
    spec = {
        "events": [
            {"name": "{Type} Created", "identity": "Who"},
            {"name_field": "Kind", "identity": "Who", "when": "Kind is not None"},
        ]
    }
    record = {
        "Id": "1",
        "Who": "p",
        "Type": "Call",
        "CreatedDate": "2024-01-01T00:00:00Z",
    }
    names = [i.payload["evtName"] for i in _build(spec, record).items]
    assert names == ["Call Created"]
    record["Kind"] = "Special: thing"
    names = [i.payload["evtName"] for i in _build(spec, record).items]
    assert names == ["Call Created", "Special  thing"]


def test_event_key_is_deterministic_and_carried_in_evtdata() -> None:
    spec = {"events": [{"name": "E", "identity": "Who"}]}
    record = {"Id": "1", "Who": "p", "CreatedDate": "2024-01-01T00:00:00Z"}
    first = _build(spec, record).items[0]
    again = _build(spec, dict(record)).items[0]
    assert (
        first.event_key == again.event_key == event_key("Contact", "1", "E", 1704067200)
    )
    assert first.payload["evtData"]["ct_event_key"] == first.event_key
    other = _build(spec, {**record, "CreatedDate": "2024-01-02T00:00:00Z"}).items[0]
    assert other.event_key != first.event_key


def test_references_resolve_through_the_resolver() -> None:
    spec = {"events": [{"name": "Task Created", "identity": {"ref": "WhoId"}}]}
    record = {"Id": "T", "WhoId": "003X", "CreatedDate": "2024-01-01T00:00:00Z"}
    seen = []

    def resolve(obj: str, rec_id: str) -> list[str]:
        seen.append((obj, rec_id))
        return ["SF_Contact_003X"]

    items = _build(spec, record, stream="Task", resolve=resolve).items
    assert items[0].payload["identity"] == "SF_Contact_003X"
    assert seen == [("Who", "003X")]
    with pytest.raises(UnresolvedReference):
        _build(spec, record, stream="Task")


def test_record_key_uses_key_properties_or_a_content_hash() -> None:
    assert record_key({"Id": "001", "x": 1}, ["Id"]) == "001"
    hashed = record_key({"x": Decimal("1.5")}, [])
    assert hashed.startswith("sha:")
    assert hashed == record_key({"x": Decimal("1.5")}, [])


def test_events_stay_within_the_property_cap() -> None:
    spec = {"events": [{"name": "E", "identity": "Who"}]}
    record: dict[str, Any] = {
        "Id": "1",
        "Who": "p",
        "CreatedDate": "2024-01-01T00:00:00Z",
    }
    record |= {f"F{i:03d}": i for i in range(150)}
    result = _build(spec, record, opts=PayloadOptions(max_event_properties=100))
    assert len(result.items[0].payload["evtData"]) == 100
    assert "ct_event_key" in result.items[0].payload["evtData"]
    assert result.warnings
    with pytest.raises(RecordReject) as err:
        _build(spec, record, opts=PayloadOptions(oversize="reject"))
    assert err.value.code == "too_many_properties"


def test_events_for_several_people_get_one_key_each() -> None:
    spec = {"events": [{"name": "Stage", "identity": {"ref": "OpportunityId"}}]}
    record = {
        "Id": "H1",
        "OpportunityId": "006X",
        "CreatedDate": "2024-01-01T00:00:00Z",
    }
    items = _build(spec, record, resolve=lambda _o, _i: ["a", "b"]).items
    assert [i.payload["identity"] for i in items] == ["a", "b"]
    assert len({i.event_key for i in items}) == 2


def test_one_person_reference_key_survives_lead_conversion() -> None:
    spec = {"events": [{"name": "Task Created", "identity": {"ref": "WhoId"}}]}
    record = {"Id": "T1", "WhoId": "00QL", "CreatedDate": "2024-01-01T00:00:00Z"}
    as_lead = _build(spec, record, resolve=lambda _o, _i: ["SF_Lead_00QL"]).items[0]
    as_contact = _build(spec, record, resolve=lambda _o, _i: ["SF_Contact_003"]).items[
        0
    ]
    assert as_lead.event_key == as_contact.event_key


def test_previous_values_are_typed_like_their_fields_and_skipped_when_unknown() -> None:
    mapping = load_mappings(
        {
            "Opportunity": {
                "events": [
                    {
                        "name": "Close Date Moved",
                        "identity": {"template": "SF_Opp_{Id}"},
                        "when": "changed(CloseDate)",
                        "properties": {
                            "include": ["CloseDate"],
                            "previous": {"CloseDate": "Previous Close Date"},
                        },
                    }
                ]
            }
        }
    )["Opportunity"]
    record = {
        "Id": "006X",
        "CloseDate": "2024-03-01T00:00:00.000000Z",
        "SystemModstamp": "2024-02-01T12:00:00.000000Z",
    }

    def build(previous):
        return build_uploads(
            record,
            RecordContext(
                stream="Opportunity",
                key="006X",
                mapping=mapping,
                schema=SchemaInfo(),
                opts=PayloadOptions(),
                resolve=lambda _obj, _id: [],
                now=NOW,
                previous=previous,
            ),
        )

    (item,) = build({"CloseDate": "2024-02-15T00:00:00.000000Z"}).items
    assert item.payload["ts"] == 1706788800  # SystemModstamp, not CreatedDate
    assert item.payload["evtData"]["Previous Close Date"] == "$D_1707955200"
    assert item.payload["evtData"]["CloseDate"] == "$D_1709251200"
    assert build(None).skipped == "condition_false"  # first sighting: no event


CHARGED = {
    "events": [
        {
            "name": "Charged",
            "identity": {"field": "customer_id"},
            "time": "created_at",
            "properties": {
                "include": ["order_id", "amount", "items"],
                "rename": {
                    "order_id": "Charged ID",
                    "amount": "Amount",
                    "items": "Items",
                },
                "types": {"items": "items"},
            },
        }
    ]
}


def _charged(items: object) -> dict[str, Any]:
    record = {
        "Id": "o-1",
        "customer_id": "C-7",
        "order_id": 1001,
        "amount": Decimal("59.90"),
        "created_at": dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC),
        "items": items,
    }
    result = _build(CHARGED, record, stream="public-orders")
    [item] = result.items
    return dict(item.payload["evtData"])


def test_items_hint_sends_charged_items_as_a_list_of_objects() -> None:
    data = _charged(
        [
            {"sku": "B-1", "Quantity": 2, "price": Decimal("19.95"), "gift": None},
            {"sku": "B-2", "Quantity": 1, "price": 20, "tags": ["x", "y"]},
        ]
    )

    assert data["Items"] == [
        {"sku": "B-1", "Quantity": 2, "price": 19.95},
        {"sku": "B-2", "Quantity": 1, "price": 20, "tags": ["x", "y"]},
    ]
    assert data["Amount"] == 59.9
    assert data["Charged ID"] == 1001


def test_items_hint_reads_json_text_and_rejects_what_is_not_a_list_of_objects() -> None:
    assert _charged('[{"sku": "B-1"}]')["Items"] == [{"sku": "B-1"}]
    with pytest.raises(RecordReject) as caught:
        _charged(["B-1", "B-2"])
    assert caught.value.code == "invalid_value"
    assert caught.value.field == "Items"


CONSENT = {
    "profile": {
        "identity": {"template": "SF_Contact_{Id}"},
        "properties": {
            "include": ["Email"],
            "opt_out": {
                "HasOptedOutOfEmail": "MSG-email",
                "DoNotCall": ["MSG-sms", "MSG-whatsapp"],
            },
        },
    }
}


@pytest.mark.parametrize(
    ("email_opt_out", "do_not_call", "expected"),
    [
        (True, True, {"MSG-email": False, "MSG-sms": False, "MSG-whatsapp": False}),
        (True, False, {"MSG-email": False}),
        (False, True, {"MSG-sms": False, "MSG-whatsapp": False}),
        (False, False, {}),
        (None, None, {}),
        ("true", "false", {"MSG-email": False}),
    ],
)
def test_opt_out_sends_only_opt_outs_never_a_subscription(
    email_opt_out: object, do_not_call: object, expected: dict[str, bool]
) -> None:
    record = {
        "Id": "1",
        "Email": "a@example.com",
        "HasOptedOutOfEmail": email_opt_out,
        "DoNotCall": do_not_call,
    }
    data = _build(CONSENT, record).items[0].payload["profileData"]
    assert {k: v for k, v in data.items() if k.startswith("MSG-")} == expected
    assert "HasOptedOutOfEmail" not in data
    assert "DoNotCall" not in data


def test_opt_out_field_that_is_not_a_boolean_rejects_the_record() -> None:
    with pytest.raises(RecordReject) as info:
        _build(CONSENT, {"Id": "1", "HasOptedOutOfEmail": "maybe"})
    assert info.value.field == "HasOptedOutOfEmail"


def test_invert_stays_the_explicit_two_way_mirror() -> None:
    mirror = {
        "profile": {
            "identity": {"template": "SF_Contact_{Id}"},
            "properties": {"include": [], "invert": {"DoNotCall": "MSG-sms"}},
        }
    }
    data = _build(mirror, {"Id": "1", "DoNotCall": False}).items[0].payload
    assert data["profileData"]["MSG-sms"] is True


def test_condition_that_cannot_be_evaluated_rejects_the_record() -> None:
    spec = {"events": [{"name": "E", "identity": "Who", "when": "int(Code) > 1"}]}
    record = {"Id": "1", "Who": "p", "Code": "x1", "CreatedDate": "2024-01-01"}
    with pytest.raises(RecordReject) as err:
        _build(spec, record)
    assert err.value.code == "bad_condition"
    assert "x1" not in err.value.message  # names the condition, not the values
    assert len(_build(spec, {**record, "Code": "7"}).items) == 1


def test_condition_reads_config_as_stream_maps_do() -> None:
    spec = {
        "events": [
            {"name": "E", "identity": "Who", "when": "Region == config['region']"}
        ]
    }
    record = {"Id": "1", "Who": "p", "Region": "EU", "CreatedDate": "2024-01-01"}
    eu = PayloadOptions(map_config={"region": "EU"})
    assert len(_build(spec, record, opts=eu).items) == 1
    assert _build(spec, record, opts=PayloadOptions()).items == []
