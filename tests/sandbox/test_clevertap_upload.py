"""The CleverTap emulator's `/1/upload`: validation codes, merge rules, reply shape."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sandbox.clevertap.testing import running_emulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sandbox.clevertap.testing import CleverTapHandle

TS = 1_700_000_000


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CleverTapHandle]:
    """One emulator for the whole module (each test resets it): fast."""
    db = tmp_path_factory.mktemp("ct") / "upload.db"
    with running_emulator(db_path=db) as handle:
        yield handle


@pytest.fixture
def ct(shared: CleverTapHandle) -> CleverTapHandle:
    shared.reset()
    return shared


def profile(identity: str, ts: int = TS, **data: Any) -> dict[str, Any]:
    return {"type": "profile", "identity": identity, "ts": ts, "profileData": data}


def event(identity: str, name: str, ts: int = TS, **data: Any) -> dict[str, Any]:
    return {
        "type": "event",
        "identity": identity,
        "ts": ts,
        "evtName": name,
        "evtData": data,
    }


def upload(ct: CleverTapHandle, *records: Any, **kwargs: Any) -> dict[str, Any]:
    response = ct.api_post("/1/upload", {"d": list(records)}, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def test_new_profiles_get_distinct_clevertap_like_object_ids(ct) -> None:
    records = [profile(f"u{i}", Name="N") for i in range(600)]
    records += [event(f"e{i}", "Signed Up") for i in range(300)]
    assert upload(ct, *records)["processed"] == 900
    ids = [p["objectId"] for p in ct.profiles()]
    assert len(ids) == len(set(ids)) == 900
    assert all(re.fullmatch(r"__[0-9a-f]{32}", i) for i in ids)
    by_identity = {p["identity"]: p["objectId"] for p in ct.profiles()}
    assert all(e["objectId"] == by_identity[e["identity"]] for e in ct.events())


def test_valid_batch_replies_success_and_stores_profile_and_event(ct) -> None:
    reply = upload(
        ct,
        profile("u1", Name="Ada", Email="ada@example.com", Phone="+14155551234"),
        event("u1", "Product Viewed", product="Laptop", price=10.5),
    )
    assert reply == {"status": "success", "processed": 2, "unprocessed": []}
    [stored] = ct.profiles()
    assert stored["identity"] == "u1"
    assert stored["objectId"].startswith("__")
    assert stored["profileData"]["Email"] == "ada@example.com"
    [evt] = ct.events()
    assert evt == {
        "identity": "u1",
        "objectId": stored["objectId"],
        "evtName": "Product Viewed",
        "ts": TS,
        "evtData": {"product": "Laptop", "price": 10.5},
        "sessionProps": {},
        "source": "upload",
    }


def test_partial_failure_reports_code_position_and_echoed_record(ct) -> None:
    bad = profile("u2", Email="not-an-email")
    reply = upload(ct, profile("u1", Name="A"), bad)
    assert reply["status"] == "partial"
    assert reply["processed"] == 1
    [entry] = reply["unprocessed"]
    assert entry == {
        "status": "fail",
        "code": 515,
        "error": (
            "Profile data is incorrect. Email is not valid.Skipped record number : 2"
        ),
        "record": bad,
    }
    assert [p["identity"] for p in ct.profiles()] == ["u1"]


def test_all_records_failing_replies_fail_with_http_200(ct) -> None:
    reply = upload(ct, profile("u1", Age="old"), profile("u2", Gender="X"))
    assert reply["status"] == "fail"
    assert reply["processed"] == 0
    assert [e["code"] for e in reply["unprocessed"]] == [520, 514]
    assert reply["unprocessed"][1]["error"].endswith("Skipped record number : 2")
    assert ct.profiles() == []


LONG_KEY = "k" * 121
BAD_RECORDS: list[tuple[str, Any, int]] = [
    ("event without evtName", {"type": "event", "identity": "u", "evtData": {}}, 509),
    ("evtData not an object", {**event("u", "E"), "evtData": [1]}, 512),
    ("event key over 120 bytes", event("u", "E", **{LONG_KEY: 1}), 512),
    ("event value over 512 bytes", event("u", "E", note="x" * 513), 512),
    ("prohibited character in key", event("u", "E", **{"a.b": 1}), 512),
    ("nested event object", event("u", "E", nested={"a": 1}), 512),
    ("restricted system event", event("u", "App Launched"), 513),
    ("restricted, other case/spaces", event("u", "notificationclicked"), 513),
    ("gender", profile("u", Gender="Unknown"), 514),
    ("email", profile("u", Email="a@b"), 515),
    ("phone without +country", profile("u", Phone="4155551234"), 516),
    ("employed", profile("u", Employed="maybe"), 517),
    ("education", profile("u", Education="PhD"), 518),
    ("married", profile("u", Married="yes"), 519),
    ("age", profile("u", Age="forty"), 520),
    ("no identity", {"type": "profile", "profileData": {"Name": "x"}}, 523),
    ("placeholder identity", profile("null", Name="x"), 523),
    ("event with no identity", {"type": "event", "evtName": "E"}, 523),
    ("type missing", {"identity": "u", "profileData": {}}, 524),
    ("record not an object", "just a string", 524),
    ("ts as a string", {**profile("u", Name="x"), "ts": "2024-01-01"}, 525),
    ("ts in milliseconds", event("u", "E", ts=1_700_000_000_000), 525),
    (
        "objectId malformed",
        {"type": "profile", "objectId": "a b", "profileData": {}},
        526,
    ),
    ("profile key over 120 bytes", profile("u", **{LONG_KEY: 1}), 512),
    ("profile value over 512 bytes", profile("u", Bio="x" * 513), 512),
    ("profile key with #", profile("u", **{"a#b": 1}), 512),
    ("multi-value item not a string", profile("u", Tags=["a", 1]), 512),
    ("unknown operator", profile("u", Score={"$mul": 2}), 512),
    ("token without objectId", {"type": "token", "tokenData": {}}, 530),
]


@pytest.mark.parametrize(
    ("record", "code"),
    [pytest.param(r, c, id=name) for name, r, c in BAD_RECORDS],
)
def test_invalid_record_is_rejected_with_clevertap_code(ct, record, code) -> None:
    reply = upload(ct, record)
    assert reply["status"] == "fail"
    [entry] = reply["unprocessed"]
    assert entry["code"] == code, entry
    assert entry["error"].endswith("Skipped record number : 1")
    assert entry["record"] == record
    assert ct.events() == []


def test_event_property_cap_is_100_by_default(ct) -> None:
    ok = event("u", "E", **{f"p{i}": i for i in range(100)})
    too_many = event("u", "E", **{f"p{i}": i for i in range(101)})
    reply = upload(ct, ok, too_many)
    assert reply["processed"] == 1
    assert [e["code"] for e in reply["unprocessed"]] == [522]


def test_event_property_cap_is_an_app_option(tmp_path) -> None:
    with running_emulator(db_path=tmp_path / "cap.db", max_event_properties=3) as ct:
        reply = upload(
            ct, event("u", "E", a=1, b=2, c=3), event("u", "E", a=1, b=2, c=3, d=4)
        )
        assert [e["code"] for e in reply["unprocessed"]] == [522]


def test_key_of_exactly_120_bytes_and_value_of_512_bytes_are_accepted(ct) -> None:
    reply = upload(ct, profile("u", TS, **{"k" * 120: "v" * 512}))
    assert reply["status"] == "success"


def test_more_than_1000_records_is_a_clear_400(ct) -> None:
    records = [event("u", "E")] * 1001
    response = ct.api_post("/1/upload", {"d": records})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "fail"
    assert body["code"] == 400
    assert "1000" in body["error"]
    assert ct.events() == []
    assert upload(ct, *records[:1000])["processed"] == 1000


@pytest.mark.parametrize("payload", [b"not json", b'{"x": []}', b'{"d": {}}', b"[]"])
def test_malformed_body_is_400_malformed_request(ct, payload) -> None:
    response = ct.session.post(
        ct.base_url + "/1/upload", data=payload, headers=ct.headers(), timeout=10
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": "fail",
        "error": "Malformed request",
        "code": 400,
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-CleverTap-Account-Id": "SANDBOX-ACCOUNT", "X-CleverTap-Passcode": "wrong"},
        {"X-CleverTap-Account-Id": "other", "X-CleverTap-Passcode": "SANDBOX-PASSCODE"},
    ],
)
def test_wrong_or_missing_credentials_get_401_json(ct, headers) -> None:
    response = ct.session.post(
        ct.base_url + "/1/upload",
        json={"d": [profile("u", Name="x")]},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == "fail"
    assert body["code"] == 401
    assert body["error"] == "Account ID is not valid"  # as recorded
    assert ct.profiles() == []


def test_dry_run_validates_but_stores_nothing(ct) -> None:
    reply = upload(
        ct,
        profile("u1", Name="A"),
        event("u1", "E"),
        profile("u2", Email="bad"),
        params={"dryRun": 1},
    )
    assert reply["status"] == "partial"
    assert reply["processed"] == 2
    assert [e["code"] for e in reply["unprocessed"]] == [515]
    assert ct.profiles() == []
    assert ct.events() == []


def test_repeated_event_upload_duplicates_events(ct) -> None:
    batch = [event("u1", "Charged", Amount=5), event("u1", "Charged", Amount=5)]
    upload(ct, *batch)
    upload(ct, *batch)
    assert len(ct.events(evtName="Charged")) == 4


def test_profiles_merge_by_identity_and_keep_their_object_id(ct) -> None:
    upload(ct, profile("u1", Name="A", City="Paris"))
    first = ct.profiles()[0]["objectId"]
    upload(ct, profile("u1", Name="B"), event("u1", "E"))
    [merged] = ct.profiles()
    assert merged["objectId"] == first
    assert merged["profileData"] == {"Name": "B", "City": "Paris"}
    assert ct.events()[0]["objectId"] == first


def test_event_for_unknown_identity_creates_the_profile(ct) -> None:
    upload(ct, event("new-person", "E"))
    assert [p["identity"] for p in ct.profiles()] == ["new-person"]


def test_object_id_identifies_an_existing_profile(ct) -> None:
    upload(ct, profile("u1", Name="A"))
    object_id = ct.profiles()[0]["objectId"]
    record = {"type": "profile", "objectId": object_id, "profileData": {"City": "Rome"}}
    assert upload(ct, record)["status"] == "success"
    [stored] = ct.profiles()
    assert stored["profileData"] == {"Name": "A", "City": "Rome"}


def test_multi_value_operators(ct) -> None:
    upload(ct, profile("u", Tags=["a", "b"], Score=10, Plan="basic", Old="x"))
    upload(
        ct,
        profile(
            "u",
            Tags={"$add": ["c", "a"]},
            Score={"$incr": 5},
            Plan={"$set": "pro"},
            Old={"$delete": 1},
        ),
    )
    upload(ct, profile("u", Tags={"$remove": ["b"]}, Score={"$decr": 3}))
    data = ct.profiles()[0]["profileData"]
    assert data == {"Tags": ["a", "c"], "Score": 12, "Plan": "pro"}
    upload(ct, profile("u", Tags={"$remove": ["a", "c"]}, Plan={"$add": ["team"]}))
    data = ct.profiles()[0]["profileData"]
    assert "Tags" not in data
    assert data["Plan"] == ["pro", "team"]


def test_multi_value_keeps_the_newest_100_items(ct) -> None:
    upload(ct, profile("u", Tags=[f"t{i}" for i in range(90)]))
    upload(ct, profile("u", Tags={"$add": [f"n{i}" for i in range(20)]}))
    tags = ct.profiles()[0]["profileData"]["Tags"]
    assert len(tags) == 100
    assert tags[0] == "t10"
    assert tags[-1] == "n19"


def test_incr_on_text_value_rejects_only_that_record(ct) -> None:
    upload(ct, profile("u", Plan="basic"))
    reply = upload(ct, profile("u", Plan={"$incr": 1}, Other=1), profile("v", Name="x"))
    assert reply["status"] == "partial"
    assert reply["unprocessed"][0]["code"] == 512
    data = ct.profiles(identity="u")[0]["profileData"]
    assert data == {"Plan": "basic"}


def test_dollar_d_values_are_stored_as_dates(ct) -> None:
    upload(
        ct,
        profile("u", DOB="$D_1487576752"),
        event("u", "Booked", when="$D_1700000000"),
    )
    assert ct.profiles()[0]["profileData"]["DOB"] == {"$date": 1487576752}
    assert ct.events()[0]["evtData"]["when"] == {"$date": 1700000000}
    reply = upload(ct, profile("u", DOB="$D_yesterday"))
    assert reply["unprocessed"][0]["code"] == 512


def test_charged_items_are_accepted_up_to_256(ct) -> None:
    items = [{"Product": f"p{i}", "Quantity": 1} for i in range(256)]
    ok = event("u", "Charged", Amount=10, Items=items)
    too_many = event("u", "Charged", Amount=10, Items=[*items, {"Product": "x"}])
    reply = upload(ct, ok, too_many)
    assert reply["processed"] == 1
    assert reply["unprocessed"][0]["code"] == 512


def test_missing_ts_defaults_to_now(ct) -> None:
    record = {"type": "event", "identity": "u", "evtName": "E"}
    upload(ct, record)
    assert ct.events()[0]["ts"] > TS


def test_device_token_needs_an_existing_profile(ct) -> None:
    upload(ct, profile("u", Name="x"))
    object_id = ct.profiles()[0]["objectId"]
    good = {
        "type": "token",
        "objectId": object_id,
        "tokenData": {"id": "t", "type": "fcm"},
    }
    unknown = {**good, "objectId": "__nobody"}
    bad_type = {**good, "tokenData": {"id": "t", "type": "pager"}}
    no_id = {**good, "tokenData": {"type": "fcm"}}
    reply = upload(ct, good, unknown, bad_type, no_id)
    assert reply["processed"] == 1
    assert [e["code"] for e in reply["unprocessed"]] == [530, 534, 532]


def test_upload_is_logged_with_record_count_and_no_passcode(ct) -> None:
    upload(ct, event("u", "E"), event("u", "E"), params={"dryRun": 1})
    [entry] = ct.requests_log()
    assert entry["method"] == "POST"
    assert entry["path"] == "/1/upload"
    assert entry["query"] == "dryRun=1"
    assert entry["status"] == 200
    assert entry["records"] == 2
    assert ct.passcode not in str(ct.requests_log())


def test_records_of_one_batch_build_on_the_earlier_records_of_that_batch(ct) -> None:
    reply = upload(
        ct,
        event("u", "E"),
        profile("u", Score=1, Tags=["a"]),
        profile("u", Score={"$incr": 2}, Tags={"$add": ["b"]}),
        profile("u", Tags={"$incr": 1}),
        profile("u", Score={"$incr": 3}),
    )
    assert reply["processed"] == 4
    assert [e["code"] for e in reply["unprocessed"]] == [512]
    [stored] = ct.profiles()
    assert stored["profileData"] == {"Score": 6, "Tags": ["a", "b"]}
    assert [e["objectId"] for e in ct.events()] == [stored["objectId"]]


def test_profile_update_keeps_the_newest_timestamp(ct) -> None:
    upload(ct, profile("u", ts=TS + 10, Name="A"))
    upload(ct, profile("u", ts=TS, City="Rome"), profile("v", ts=TS + 5, Name="B"))
    by_identity = {p["identity"]: p for p in ct.profiles()}
    assert by_identity["u"]["updatedTs"] == TS + 10
    assert by_identity["u"]["createdTs"] == TS + 10
    assert by_identity["u"]["profileData"] == {"Name": "A", "City": "Rome"}
    assert by_identity["v"]["createdTs"] == TS + 5


def test_device_token_for_a_profile_created_earlier_in_the_batch(ct) -> None:
    upload(ct, profile("u", Name="x"))
    object_id = ct.profiles()[0]["objectId"]
    token = {"type": "token", "objectId": object_id, "tokenData": {"id": "t"}}
    token["tokenData"]["type"] = "fcm"
    by_object_id = {"type": "profile", "objectId": "__fresh", "profileData": {}}
    fresh_token = {**token, "objectId": "__fresh"}
    reply = upload(ct, by_object_id, fresh_token, token)
    assert reply == {"status": "success", "processed": 3, "unprocessed": []}
    assert {p["objectId"] for p in ct.profiles()} == {object_id, "__fresh"}


# ------------------------------------------------- contract with the recordings

_RECORDED = json.loads(
    (
        Path(__file__).resolve().parents[1]
        / "fixtures"
        / "target_clevertap"
        / "real_upload_replies.json"
    ).read_text()
)["recordings"]


def _recorded_entry(entry: dict[str, Any]) -> tuple[Any, str, Any]:
    """(code or None, error text, echoed record) of any recorded entry shape."""
    if "error" in entry:
        record = entry["record"]
        return (
            entry["code"],
            entry["error"],
            (json.loads(record) if isinstance(record, str) else record),
        )
    ((record, message),) = entry.items()  # October 2017: no code
    return None, message, json.loads(record)


@pytest.mark.parametrize(
    "rec", _RECORDED, ids=[f"rec{i}" for i in range(len(_RECORDED))]
)
def test_emulator_answers_every_recorded_upload_like_clevertap(ct, rec) -> None:
    """Contract: status, processed, codes, error texts and the rewritten echo."""
    headers = None
    if rec["status"] == 401:
        headers = {**ct.headers(), "X-CleverTap-Account-Id": "NOT-THE-ACCOUNT"}
    response = requests.post(
        f"{ct.base_url}/1/upload",
        data=rec["request_body"].encode(),
        headers=headers or ct.headers(),
        timeout=10,
    )
    assert response.status_code == rec["status"]
    got, want = response.json(), json.loads(rec["response_body"])
    if rec["status"] != 200:
        assert got == want
        return
    assert got["processed"] == want["processed"]
    entries = want["unprocessed"]
    if rec["recorded_at"].split()[3] >= "2018" or not entries:
        assert got["status"] == want["status"]  # 2017 answered "success" always
    assert len(got["unprocessed"]) == len(entries)
    for mine, theirs in zip(got["unprocessed"], entries, strict=True):
        code, error, echoed = _recorded_entry(theirs)
        assert mine["status"] == "fail"
        if code is not None:
            assert mine["code"] == code
        assert mine["error"] == error
        assert mine["record"] == echoed
