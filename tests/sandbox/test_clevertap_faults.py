"""The CleverTap emulator's concurrency limits and every injectable fault."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sandbox.clevertap.faults import FaultError, parse_fault
from sandbox.clevertap.testing import running_emulator

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sandbox.clevertap.testing import CleverTapHandle

RANGE = {"from": 20240101, "to": 20240103}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CleverTapHandle]:
    db = tmp_path_factory.mktemp("ct") / "faults.db"
    with running_emulator(db_path=db) as handle:
        yield handle


@pytest.fixture
def ct(shared: CleverTapHandle) -> CleverTapHandle:
    shared.reset()
    return shared


def events(n: int, name: str = "E") -> dict[str, Any]:
    return {
        "d": [
            {
                "type": "event",
                "identity": f"u{i}",
                "evtName": name,
                "ts": 1_704_100_000 + i,
            }
            for i in range(n)
        ]
    }


def fresh_post(
    ct: CleverTapHandle, path: str, body: Any, **kwargs: Any
) -> requests.Response:
    """A POST on a new connection (no shared keep-alive pool)."""
    return requests.post(
        ct.base_url + path,
        json=body,
        headers=ct.headers(),
        timeout=kwargs.pop("timeout", 15),
        **kwargs,
    )


def test_sixteen_concurrent_uploads_get_one_429(ct) -> None:
    ct.fault("latency", ms=1200, path="/1/upload")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies = list(
            pool.map(lambda _: fresh_post(ct, "/1/upload", events(1)), range(16))
        )
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] * 15 + [429]
    [limited] = [r for r in replies if r.status_code == 429]
    assert limited.json() == {
        "status": "fail",
        "error": "Too many concurrent requests",
        "code": 429,
    }
    assert len(ct.events()) == 15
    assert [e["fault"] for e in ct.requests_log()].count("concurrency") == 1


def test_four_concurrent_export_calls_get_one_429(ct) -> None:
    ct.fault("latency", ms=800, path="/1/counts/")
    body = {"event_name": "E", **RANGE}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(
            pool.map(lambda _: fresh_post(ct, "/1/counts/events.json", body), range(4))
        )
    assert sorted(r.status_code for r in replies) == [200, 200, 200, 429]


def test_sandbox_api_is_not_rate_limited(ct) -> None:
    ct.fault("latency", ms=500, path="/1/counts/")
    body = {"event_name": "E", **RANGE}
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        counts = [
            pool.submit(fresh_post, ct, "/1/counts/events.json", body) for _ in range(3)
        ]
        looks = [pool.submit(ct.events) for _ in range(6)]
        assert all(f.result() == [] for f in looks)
        assert all(f.result().status_code == 200 for f in counts)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, "Too many concurrent requests"),
        (500, "Internal Server Error"),
        (503, "Service Unavailable. Please try again later"),
    ],
)
def test_status_fault_replies_n_times_then_recovers(ct, status, error) -> None:
    ct.fault("status", status=status, times=2, path="/1/upload")
    first = fresh_post(ct, "/1/upload", events(2))
    second = fresh_post(ct, "/1/upload", events(2))
    third = fresh_post(ct, "/1/upload", events(2))
    for reply in (first, second):
        assert reply.status_code == status
        assert reply.json() == {"status": "fail", "error": error, "code": status}
    assert third.status_code == 200
    assert len(ct.events()) == 2
    assert [e["fault"] for e in ct.requests_log()] == [f"status {status}"] * 2 + [None]


def test_status_fault_only_hits_its_path(ct) -> None:
    ct.fault("status", status=500, path="/1/counts/")
    assert fresh_post(ct, "/1/upload", events(1)).status_code == 200
    assert (
        fresh_post(
            ct, "/1/counts/events.json", {"event_name": "E", **RANGE}
        ).status_code
        == 500
    )


def test_reset_fault_breaks_the_connection_before_storing(ct) -> None:
    ct.fault("reset", path="/1/upload")
    with pytest.raises(requests.ConnectionError):
        fresh_post(ct, "/1/upload", events(3))
    assert ct.events() == []
    assert fresh_post(ct, "/1/upload", events(3)).json()["processed"] == 3
    log = ct.requests_log()
    assert log[0]["fault"] == "reset"
    assert log[0]["status"] is None


def test_lost_reply_stores_the_batch_then_breaks_the_connection(ct) -> None:
    ct.fault("lost_reply", path="/1/upload")
    with pytest.raises(
        (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)
    ):
        fresh_post(ct, "/1/upload", events(4))
    assert len(ct.events()) == 4
    assert fresh_post(ct, "/1/upload", events(4)).status_code == 200
    assert len(ct.events()) == 8  # a blind retry duplicates events, as on CleverTap


def test_connection_faults_work_over_a_keep_alive_session(ct) -> None:
    session = requests.Session()
    headers = ct.headers()
    url = ct.base_url + "/1/upload"
    assert (
        session.post(url, json=events(1), headers=headers, timeout=10).status_code
        == 200
    )
    ct.fault("lost_reply")
    with pytest.raises(
        (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)
    ):
        session.post(url, json=events(1), headers=headers, timeout=10)
    assert (
        session.post(url, json=events(1), headers=headers, timeout=10).status_code
        == 200
    )
    session.close()
    assert len(ct.events()) == 3


def test_latency_applies_until_cleared(ct) -> None:
    ct.fault("latency", ms=1500, path="/1/upload")
    with pytest.raises(requests.Timeout):
        fresh_post(ct, "/1/upload", events(1), timeout=0.3)
    with pytest.raises(requests.Timeout):
        fresh_post(ct, "/1/upload", events(1), timeout=0.3)
    ct.clear_faults()
    assert fresh_post(ct, "/1/upload", events(1), timeout=5).status_code == 200


def test_slow_reply_stores_first_then_answers_late(ct) -> None:
    ct.fault("slow_reply", seconds=1.5, path="/1/upload")
    with pytest.raises(requests.Timeout):
        fresh_post(ct, "/1/upload", events(2), timeout=0.5)
    assert len(ct.events()) == 2
    ct.fault("slow_reply", seconds=0.2)
    assert fresh_post(ct, "/1/upload", events(1), timeout=5).json()["processed"] == 1


def test_record_failure_by_field_value(ct) -> None:
    ct.fault("record_failure", code=555, field="identity", value="u1")
    reply = fresh_post(ct, "/1/upload", events(3)).json()
    assert reply["status"] == "partial"
    assert reply["processed"] == 2
    [entry] = reply["unprocessed"]
    assert entry["code"] == 555
    assert entry["error"] == "Miscellaneous server error.Skipped record number : 2"
    assert entry["record"]["identity"] == "u1"
    assert sorted(e["identity"] for e in ct.events()) == ["u0", "u2"]
    again = fresh_post(ct, "/1/upload", events(3)).json()
    assert again["processed"] == 2  # stays until cleared


def test_record_failure_by_position_with_times(ct) -> None:
    ct.fault("record_failure", code=515, positions=[1, 3], times=1)
    reply = fresh_post(ct, "/1/upload", events(3)).json()
    assert [e["code"] for e in reply["unprocessed"]] == [515, 515]
    assert [e["error"][-1] for e in reply["unprocessed"]] == ["1", "3"]
    assert fresh_post(ct, "/1/upload", events(3)).json()["status"] == "success"


def test_record_failure_by_nested_field(ct) -> None:
    ct.fault("record_failure", code=516, field="profileData.Phone")
    body = {
        "d": [
            {
                "type": "profile",
                "identity": "a",
                "profileData": {"Phone": "+14155550000"},
            },
            {"type": "profile", "identity": "b", "profileData": {"Name": "B"}},
        ]
    }
    reply = fresh_post(ct, "/1/upload", body).json()
    assert [e["code"] for e in reply["unprocessed"]] == [516]
    assert [p["identity"] for p in ct.profiles()] == ["b"]


def test_unprocessed_partial_processes_only_part_of_the_batch(ct) -> None:
    ct.fault("unprocessed_partial", processed=3)
    reply = fresh_post(ct, "/1/upload", events(5)).json()
    assert reply["status"] == "partial"
    assert reply["processed"] == 3
    assert [e["error"][-1] for e in reply["unprocessed"]] == ["4", "5"]
    assert [e["code"] for e in reply["unprocessed"]] == [555, 555]
    assert sorted(e["identity"] for e in ct.events()) == ["u0", "u1", "u2"]


def export_cursor(ct: CleverTapHandle, batch: int = 2) -> str:
    response = fresh_post(
        ct, f"/1/events.json?batch_size={batch}", {"event_name": "E", **RANGE}
    )
    cursor: str = response.json()["cursor"]
    return cursor


def test_in_progress_fault_answers_code_2_on_each_cursors_first_fetches(ct) -> None:
    fresh_post(ct, "/1/upload", events(3))
    ct.fault("in_progress", fetches=2)
    cursor = export_cursor(ct)

    def get(c: str) -> Any:
        return ct.api_get(f"/1/events.json?cursor={c}").json()

    for _ in range(2):
        busy = get(cursor)
        assert busy["status"] == "fail"
        assert busy["code"] == 2
        assert "in progress" in busy["error"]
    page = get(cursor)
    assert len(page["records"]) == 2
    assert get(page["next_cursor"])["code"] == 2  # the next cursor is new: busy again
    ct.clear_faults()
    assert len(get(page["next_cursor"])["records"]) == 1


def test_repeat_cursor_fault_returns_the_same_next_cursor(ct) -> None:
    fresh_post(ct, "/1/upload", events(3))
    ct.fault("repeat_cursor", times=1)
    cursor = export_cursor(ct)
    page = ct.api_get(f"/1/events.json?cursor={cursor}").json()
    assert page["next_cursor"] == cursor
    honest = ct.api_get(f"/1/events.json?cursor={cursor}").json()
    assert honest["next_cursor"] != cursor


@pytest.mark.parametrize("path", ["events", "profiles", "trends"])
def test_counts_partial_needs_n_polls(ct, path) -> None:
    fresh_post(ct, "/1/upload", events(4))
    ct.fault("counts_partial", polls=3)
    body = {"event_name": "E", **RANGE, "groups": {"g": {"trend_type": "daily"}}}
    first = fresh_post(ct, f"/1/counts/{path}.json", body).json()
    assert first["status"] == "partial"
    req_id = first["req_id"]
    assert isinstance(req_id, int)
    polls = [
        ct.api_get(f"/1/counts/{path}.json", params={"req_id": req_id}).json()
        for _ in range(3)
    ]
    assert [p["status"] for p in polls] == ["partial", "partial", "success"]
    if path == "trends":
        assert polls[-1]["g"] == {"20240101": 4}
    else:
        assert polls[-1]["count"] == 4
    bad = ct.api_get(f"/1/counts/{path}.json", params={"req_id": 12345})
    assert bad.status_code == 400
    assert bad.json()["status"] == "fail"


def test_faults_can_be_listed_and_bad_faults_are_refused(ct) -> None:
    ct.fault("status", status=429, times=2, path="/1/upload")
    [listed] = ct.faults()
    assert listed["kind"] == "status"
    assert listed["remaining"] == 2
    bad = requests.post(
        ct.base_url + "/_sandbox/faults", json={"kind": "meteor"}, timeout=5
    )
    assert bad.status_code == 400
    bad_status = requests.post(
        ct.base_url + "/_sandbox/faults",
        json={"kind": "status", "status": 418},
        timeout=5,
    )
    assert bad_status.status_code == 400
    ct.clear_faults()
    assert ct.faults() == []


def test_reset_wipes_data_logs_and_faults(ct) -> None:
    fresh_post(ct, "/1/upload", events(2))
    ct.fault("status", status=500)
    ct.reset()
    assert ct.events() == []
    assert ct.profiles() == []
    assert ct.requests_log() == []
    assert ct.faults() == []


def test_fault_parameter_aliases(ct) -> None:
    ct.fault("in_progress", times=2)
    ct.fault("counts_partial", times=4)
    ct.fault("latency", seconds=0.05, path="/1/upload")
    ct.fault("slow_reply", ms=100, path="/1/upload")
    ct.fault("status", code=500, path="/1/targets/")
    by_kind = {f["kind"]: f for f in ct.faults()}
    assert by_kind["in_progress"]["fetches"] == 2
    assert by_kind["in_progress"]["remaining"] is None
    assert by_kind["counts_partial"]["polls"] == 4
    assert by_kind["latency"]["ms"] == 50
    assert by_kind["slow_reply"]["seconds"] == 0.1
    assert by_kind["status"]["status"] == 500


# ------------------------------------------------ faults of a real account


def _export_cursor(ct: CleverTapHandle, name: str = "E") -> int:
    """How many events one export query of `name` returns (all its pages)."""
    reply = ct.api_post(
        "/1/events.json", {"event_name": name, **RANGE}, params={"batch_size": 500}
    ).json()
    count, cursor = 0, reply.get("cursor")
    while cursor:
        page = ct.api_get(f"/1/events.json?cursor={cursor}").json()
        count += len(page.get("records") or [])
        cursor = page.get("next_cursor")
    return count


@pytest.mark.parametrize("status", [500, 502, 504])
def test_status_after_store_stores_the_batch_then_answers_the_status(
    ct, status: int
) -> None:
    ct.fault("status_after_store", status=status, path="/1/upload")
    response = fresh_post(ct, "/1/upload", events(3))
    assert response.status_code == status
    assert response.json()["status"] == "fail"
    assert len(ct.events()) == 3  # stored all the same
    assert fresh_post(ct, "/1/upload", events(1)).status_code == 200  # once
    assert ct.requests_log()[0]["fault"] == f"status_after_store {status}"


def test_ingestion_lag_hides_stored_events_from_the_first_export_reads(ct) -> None:
    ct.fault("ingestion_lag", reads=2, path="/1/upload", times=1)
    assert fresh_post(ct, "/1/upload", events(3)).json()["processed"] == 3
    assert _export_cursor(ct) == 0  # first export query: not visible yet
    assert _export_cursor(ct) == 3  # from the second on
    assert fresh_post(ct, "/1/upload", events(1, "F")).status_code == 200
    assert _export_cursor(ct, "F") == 1  # the fault applied to one upload only


def test_ingestion_lag_in_seconds_and_inspection_sees_held_events(ct) -> None:
    ct.fault("ingestion_lag", seconds=30, path="/1/upload")
    fresh_post(ct, "/1/upload", events(2))
    assert _export_cursor(ct) == 0
    assert len(ct.events()) == 2  # /_sandbox/events shows what is stored


def test_ingestion_lag_needs_a_duration() -> None:
    with pytest.raises(FaultError, match="seconds and/or reads"):
        parse_fault({"kind": "ingestion_lag"})


def test_caps_drop_new_keys_and_event_names_silently(ct) -> None:
    caps = ct._call(
        "POST", "caps", json={"max_custom_profile_keys": 2, "max_event_names": 1}
    )
    assert caps["max_event_names"] == 1
    body = {
        "d": [
            {
                "type": "profile",
                "identity": "u1",
                "profileData": {"a": 1, "b": 2, "Name": "N"},
            },
            {"type": "profile", "identity": "u2", "profileData": {"c": 3, "a": 4}},
            {
                "type": "event",
                "identity": "u1",
                "evtName": "First",
                "ts": 1_704_100_000,
            },
            {
                "type": "event",
                "identity": "u1",
                "evtName": "Second",
                "ts": 1_704_100_000,
            },
            {
                "type": "event",
                "identity": "u1",
                "evtName": "first",
                "ts": 1_704_100_001,
            },
        ]
    }
    reply = fresh_post(ct, "/1/upload", body).json()
    assert reply == {"status": "success", "processed": 5, "unprocessed": []}
    data = {p["identity"]: p["profileData"] for p in ct.profiles()}
    assert data == {"u1": {"a": 1, "b": 2, "Name": "N"}, "u2": {"a": 4}}
    assert [e["evtName"] for e in ct.events()] == ["First", "first"]
    caps = ct._call("GET", "caps")
    assert caps["custom_profile_keys"] == 2
    assert caps["event_names"] == 1
    assert caps["dropped_profile_keys"] == {"c": 1}
    assert caps["dropped_events"] == {"Second": 1}


def test_caps_keep_keys_in_use_and_drop_new_ones_across_uploads(ct) -> None:
    ct._call("POST", "caps", json={"max_custom_profile_keys": 2})

    def send(identity: str, **data: Any) -> None:
        record = {"type": "profile", "identity": identity, "profileData": data}
        reply = fresh_post(ct, "/1/upload", {"d": [record]}).json()
        assert reply == {"status": "success", "processed": 1, "unprocessed": []}

    send("u1", a=1, Name="N", Email="n@example.com")
    send("u2", a=2, Name="M", **{"MSG-email": True})  # keys in use / predefined
    send("u3", b=3, c=4)  # b takes the last room, c is dropped
    send("u4", a=5, b=6, c=7, Name="O")  # a and b in use, c dropped again
    data = {p["identity"]: p["profileData"] for p in ct.profiles()}
    assert data == {
        "u1": {"a": 1, "Name": "N", "Email": "n@example.com"},
        "u2": {"a": 2, "Name": "M", "MSG-email": True},
        "u3": {"b": 3},
        "u4": {"a": 5, "b": 6, "Name": "O"},
    }
    caps = ct._call("GET", "caps")
    assert caps["custom_profile_keys"] == 2
    assert caps["dropped_profile_keys"] == {"c": 2}
    ct.reset()  # a new account: the keys in use before take no room
    ct._call("POST", "caps", json={"max_custom_profile_keys": 1})
    send("u5", c=1, a=2)
    assert [p["profileData"] for p in ct.profiles()] == [{"c": 1}]
    assert ct._call("GET", "caps")["dropped_profile_keys"] == {"a": 1}


def test_dry_run_takes_no_key_or_name_of_the_caps(ct) -> None:
    ct._call("POST", "caps", json={"max_event_names": 1})
    reply = fresh_post(ct, "/1/upload?dryRun=1", events(1, "Probe")).json()
    assert reply["processed"] == 1
    assert ct._call("GET", "caps")["event_names"] == 0
    fresh_post(ct, "/1/upload", events(1, "Real"))
    assert [e["evtName"] for e in ct.events()] == ["Real"]
