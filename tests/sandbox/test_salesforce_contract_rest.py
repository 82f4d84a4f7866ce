"""Contract: the emulator's REST, Apex and OAuth error answers have the recorded shapes.

The recordings (tests/fixtures/target_salesforce/real_api_errors.json, copied from
../shared/fixtures/real-api/salesforce/apex_rest_errors.md and
misc_real_errors.md with their source lines) are what real orgs answered. Each
test checks one answer of the emulator (status, content type, keys, error
envelope) against them, and checks the recordings themselves with the same rule,
so the rule cannot drift away from reality.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from sandbox.proxy import running_proxy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import requests
    from sandbox.salesforce.testing import SalesforceHandle

APEX_STACK = re.compile(r"^(Class\.[\w.]+: line \d+, column \d+|\(System Code\))$")
JSON_PARSER_MESSAGE = re.compile(
    r"^Cannot deserialize instance of \S+ from VALUE_\w+ value .+ or request may "
    r"be missing a required field at \[line:\d+, column:\d+\]$"
)
V = "v62.0"


@pytest.fixture(scope="module")
def recorded(recorded_sf_errors: dict[str, Any]) -> dict[str, Any]:
    return recorded_sf_errors


def _call(
    handle: SalesforceHandle, method: str, path: str, **kwargs: Any
) -> requests.Response:
    session = handle.session()
    headers = {"Authorization": f"Bearer {handle.access_token}"}
    return session.request(
        method, f"{handle.base_url}{path}", headers=headers, timeout=10, **kwargs
    )


def _keys(value: Any) -> Any:
    """The key structure of a JSON value (dict keys, recursively; first list item)."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys(value[0])] if value else []
    return type(value).__name__


def _assert_apex_error(status: int, content_type: str, body: Any) -> None:
    assert status == 500
    assert content_type.split(";", maxsplit=1)[0] == "application/json"
    assert isinstance(body, list)
    [error] = body
    assert set(error) == {"errorCode", "message"}
    assert error["errorCode"] == "APEX_ERROR"
    assert re.match(r"^System\.\w+Exception: ", error["message"]), error["message"]


def test_apex_error_has_the_recorded_shape(
    salesforce_emulator: SalesforceHandle, recorded: dict[str, Any]
) -> None:
    for name in ("apex_error_dml", "apex_error_callout", "apex_error_limit"):
        entry = recorded[name]
        _assert_apex_error(entry["status"], entry["content_type"], entry["body"])
    for name in ("apex_error_dml", "apex_error_callout"):
        stack = recorded[name]["body"][0]["message"].rpartition("\n\n")[2]
        assert APEX_STACK.match(stack)
    # /ct/contacts/* does not catch its DML (/ct/nps/* answers per record)
    answer = _call(
        salesforce_emulator,
        "POST",
        "/services/apexrest/ct/contacts/x",
        json=[{"identity": "ct-contract-1", "name": "Rao", "score": 42}],
    )
    body = answer.json()
    _assert_apex_error(answer.status_code, answer.headers["content-type"], body)
    assert APEX_STACK.match(body[0]["message"].rpartition("\n\n")[2])
    recorded_dml = recorded["apex_error_dml"]["body"][0]["message"]
    prefix = re.compile(r"^System\.DmlException: \w+ failed\. First exception on row ")
    assert prefix.match(recorded_dml)
    assert prefix.match(body[0]["message"])


@pytest.mark.parametrize(
    ("name", "which"),
    [
        ("limit_daily", "daily"),
        ("limit_concurrent", "concurrent"),
        ("limit_long_txn", "long_txn"),
    ],
)
def test_request_limit_answers_are_the_recorded_ones(
    salesforce_emulator: SalesforceHandle,
    recorded: dict[str, Any],
    name: str,
    which: str,
) -> None:
    if which == "daily":
        salesforce_emulator.fault("request_limit", count=1)
    else:
        salesforce_emulator.fault("concurrent_limit", which=which, count=1)
    answer = _call(salesforce_emulator, "GET", f"/services/data/{V}/limits")
    assert answer.status_code == recorded[name]["status"]
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == recorded[name]["body"]


def test_json_type_error_is_a_whole_request_400_like_the_recording(
    salesforce_emulator: SalesforceHandle, recorded: dict[str, Any]
) -> None:
    [expected] = recorded["json_parser_error"]["body"]
    assert JSON_PARSER_MESSAGE.match(expected["message"])
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Contact"}, "LastName": "ok"},
            {
                "attributes": {"type": "Contact"},
                "LastName": "bad",
                "Last_Engagement_Date__c": "2017-10-17 00:00:00",
            },
        ],
    }
    answer = _call(
        salesforce_emulator, "POST", f"/services/data/{V}/composite/sobjects", json=body
    )
    assert answer.status_code == recorded["json_parser_error"]["status"]
    [error] = answer.json()
    assert set(error) == set(expected)
    assert error["errorCode"] == "JSON_PARSER_ERROR"
    assert JSON_PARSER_MESSAGE.match(error["message"]), error["message"]


def test_invalid_session_body_is_the_recorded_one(
    salesforce_emulator: SalesforceHandle, recorded: dict[str, Any]
) -> None:
    answer = salesforce_emulator.session().get(
        f"{salesforce_emulator.base_url}/services/data/{V}/limits",
        headers={"Authorization": "Bearer expired"},
        timeout=10,
    )
    assert answer.status_code == recorded["invalid_session"]["status"]
    assert answer.json() == recorded["invalid_session"]["body"]


def test_duplicates_detected_has_the_recorded_shape(
    salesforce_emulator: SalesforceHandle, recorded: dict[str, Any]
) -> None:
    seeded = next(
        c for c in salesforce_emulator.live_records("Contact") if c.get("Email")
    )
    single = _call(
        salesforce_emulator,
        "POST",
        f"/services/data/{V}/sobjects/Contact",
        json={"LastName": "Twin", "Email": seeded["Email"]},
    )
    expected = recorded["duplicates_detected_single"]
    assert single.status_code == expected["status"]
    assert _keys(single.json()) == _keys(expected["body"])
    collections = _call(
        salesforce_emulator,
        "POST",
        f"/services/data/{V}/composite/sobjects",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Contact"}, "LastName": "Twin"}
                | {"Email": seeded["Email"]}
            ],
        },
    )
    assert (
        collections.status_code
        == recorded["duplicates_detected_collections_item"]["status"]
    )
    [item] = collections.json()
    recorded_item = recorded["duplicates_detected_collections_item"]["body"][1]
    assert set(recorded_item) <= set(item)
    [error] = item["errors"]
    assert set(recorded_item["errors"][0]) <= set(error)
    assert _keys(error["duplicateResult"]) == _keys(
        expected["body"][0]["duplicateResut"]
    )


@pytest.fixture
def login_route(
    salesforce_emulator: SalesforceHandle,
) -> Iterator[Callable[[str, str], requests.Response]]:
    routes = {"*.my.salesforce.com": ("127.0.0.1", salesforce_emulator.port)}
    with running_proxy(routes) as proxy:
        session = salesforce_emulator.session()
        session.proxies = {"https": proxy.url}

        def post(host: str, aud: str) -> requests.Response:
            claims = {
                "iss": salesforce_emulator.client_id,
                "sub": salesforce_emulator.username,
                "aud": aud,
                "exp": int(time.time()) + 180,
            }
            key = salesforce_emulator.jwt_private_key_pem
            return session.post(
                f"https://{host}/services/oauth2/token",
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": jwt.encode(claims, key, algorithm="RS256"),
                },
                timeout=10,
            )

        yield post
        session.close()


def test_jwt_audience_failure_is_the_recorded_answer(
    login_route: Callable[[str, str], requests.Response], recorded: dict[str, Any]
) -> None:
    answer = login_route("acme.my.salesforce.com", "https://acme.my.salesforce.com")
    assert answer.status_code == recorded["jwt_audience"]["status"]
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == recorded["jwt_audience"]["body"]


def test_update_to_a_converted_lead_is_refused_like_a_real_org(
    salesforce_emulator: SalesforceHandle, recorded: dict[str, Any]
) -> None:
    converted = next(
        r for r in salesforce_emulator.live_records("Lead") if r.get("IsConverted")
    )
    answer = _call(
        salesforce_emulator,
        "PATCH",
        f"/services/data/{V}/sobjects/Lead/{converted['Id']}",
        json={"Title": "Changed"},
    )
    expected = recorded["converted_lead_update"]
    assert answer.status_code == expected["status"]
    assert answer.json() == expected["body"]
    # the same refusal per item in a Collections update; an open Lead still updates
    open_lead = next(
        r for r in salesforce_emulator.live_records("Lead") if not r.get("IsConverted")
    )
    items = _call(
        salesforce_emulator,
        "PATCH",
        f"/services/data/{V}/composite/sobjects",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Lead"}, "Id": rid, "Title": "Changed"}
                for rid in (converted["Id"], open_lead["Id"])
            ],
        },
    ).json()
    assert [item["success"] for item in items] == [False, True]
    assert [e["statusCode"] for e in items[0]["errors"]] == [
        "CANNOT_UPDATE_CONVERTED_LEAD"
    ]
