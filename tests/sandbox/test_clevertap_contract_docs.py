"""Contract: CleverTap answers the public docs and client reports show.

The facts live in `tests/fixtures/real_api_clevertap/docs_facts.json`, each with its
source (fidelity audit 2026-12 in sandbox/README.md). Every test drives the emulator
into the documented situation and compares its answer with the recorded fact.
"""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from sandbox.clevertap.testing import CleverTapHandle

FACTS = json.loads(
    (
        Path(__file__).resolve().parents[1]
        / "fixtures"
        / "real_api_clevertap"
        / "docs_facts.json"
    ).read_text("utf-8")
)
CONCURRENCY = FACTS["concurrency_per_api"]
RANGE = {"from": 20240101, "to": 20240103}


def _post(ct: CleverTapHandle, path: str, body: Any) -> requests.Response:
    """A POST on its own connection, so that requests really run side by side."""
    return requests.post(
        ct.base_url + path, json=body, headers=ct.headers(), timeout=15
    )


def _get(ct: CleverTapHandle, path: str, _body: None = None) -> requests.Response:
    return requests.get(ct.base_url + path, headers=ct.headers(), timeout=15)


def _busy_then(
    ct: CleverTapHandle,
    busy: tuple[str, Any],
    then: list[tuple[str, str, Any]],
) -> list[requests.Response]:
    """Fill `busy`'s API to its limit with slow requests, then send `then` at once."""
    path, body = busy
    limit = CONCURRENCY["limits"]["Get Events"]["limit"]
    ct.fault("latency", ms=2500, path=path, times=limit)
    with concurrent.futures.ThreadPoolExecutor(limit + len(then)) as pool:
        held = [pool.submit(_post, ct, path, body) for _ in range(limit)]
        deadline = 50
        while sum(1 for e in ct.requests_log() if e["path"] == path) < limit:
            deadline -= 1
            assert deadline, "the slow requests never arrived"
            concurrent.futures.wait(held, timeout=0.05)
        replies = [
            pool.submit(_post if method == "POST" else _get, ct, p, body)
            for method, p, body in then
        ]
        assert all(f.result().status_code == 200 for f in held)
        return [f.result() for f in replies]


def test_concurrency_limit_is_per_api_like_the_docs(
    clevertap_emulator: CleverTapHandle,
) -> None:
    """Three Get Events calls in flight leave Get User Profiles and counts free."""
    ct = clevertap_emulator
    assert CONCURRENCY["scope"] == "per-account-per-api"
    ct.api_post(
        "/1/upload",
        {"d": [{"type": "event", "identity": "u1", "evtName": "E", "ts": 1704100000}]},
    ).raise_for_status()
    query = {"event_name": "E", **RANGE}
    replies = _busy_then(
        ct,
        ("/1/events.json", query),
        [
            ("GET", "/1/profile.json?identity=u1", None),
            ("POST", "/1/counts/events.json", query),
            ("POST", "/1/events.json", query),
        ],
    )
    profile, counts, fourth = replies
    assert profile.status_code == 200, profile.text
    assert counts.status_code == 200, counts.text
    # the fourth Get Events call is over that API's own limit
    assert fourth.status_code == CONCURRENCY["throttled_status"]
    assert fourth.json()["error"] == CONCURRENCY["throttled_message"]


def test_get_user_profiles_by_id_and_by_cursor_share_one_limit(
    clevertap_emulator: CleverTapHandle,
) -> None:
    """Both reads are the one Get User Profiles API (one row of the limits table)."""
    ct = clevertap_emulator
    api = CONCURRENCY["limits"]["Get User Profiles"]
    query = {"event_name": "E", **RANGE}
    [by_id] = _busy_then(
        ct, (api["path"], query), [("GET", f"{api['by_id_path']}?identity=u1", None)]
    )
    assert by_id.status_code == CONCURRENCY["throttled_status"]


@pytest.mark.parametrize("field", ["identity", "guid"])
def test_delete_of_more_than_100_profiles_answers_the_reported_text(
    clevertap_emulator: CleverTapHandle, field: str
) -> None:
    fact = FACTS["delete_profiles_over_100"]
    values = [f"u{i}" for i in range(fact["max_per_call"] + 1)]
    reply = clevertap_emulator.api_post("/1/delete/profiles.json", {field: values})
    assert reply.json()["status"] == "fail"
    assert reply.json()["error"] == fact["error"]
    at_limit = clevertap_emulator.api_post(
        "/1/delete/profiles.json", {field: values[: fact["max_per_call"]]}
    )
    assert at_limit.json() == {"status": "success"}
