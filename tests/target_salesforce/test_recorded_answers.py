"""Recorded real Salesforce answers replayed against the target's parsing.

Each body comes from tests/fixtures/target_salesforce/real_api_errors.json (copied
with its source line from ../shared/fixtures/real-api/salesforce/). The target
must classify it as the run needs: a record failure, a stop, or a retry.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from target_salesforce.auth import AuthError, _token_request
from target_salesforce.client import SalesforceClient
from target_salesforce.errors import (
    CallFailed,
    ConcurrentLimitError,
    ConfigurationError,
    RequestLimitError,
    error_details,
    refusal_error,
)
from target_salesforce.preflight import with_defaults
from target_salesforce.results import collections_results, duplicate_matches
from target_salesforce.target import TargetSalesforce

URL = "https://acme.my.salesforce.com/services/apexrest/ct/nps"


def _client() -> SalesforceClient:
    config = {"access_token": "x", "instance_url": "https://h"}
    return SalesforceClient(with_defaults(TargetSalesforce.config_jsonschema, config))


@pytest.mark.parametrize(
    "name", ["apex_error_dml", "apex_error_callout", "apex_error_limit"]
)
def test_recorded_apex_errors_fail_the_call_records_without_retry(
    real_errors: dict[str, Any], name: str
) -> None:
    entry = real_errors[name]
    code, message, _ = error_details(entry["body"])
    assert code == "APEX_ERROR"
    assert message == entry["body"][0]["message"]
    exc = SalesforceGeneralError(URL, entry["status"], "ct/nps", entry["body"])
    with pytest.raises(CallFailed) as failed:
        # a retryable 500 would raise the retry signal; APEX_ERROR never does
        _client()._http_error("apex POST ct/nps", exc, idempotent=True)
    assert failed.value.code == "APEX_ERROR"
    assert failed.value.message.startswith("System.")


def test_recorded_json_parser_error_is_a_configuration_stop(
    real_errors: dict[str, Any],
) -> None:
    entry = real_errors["json_parser_error"]
    exc = SalesforceMalformedRequest(URL, 400, "composite", entry["body"])
    with pytest.raises(ConfigurationError, match="Cannot deserialize instance"):
        _client()._http_error("PATCH composite", exc, idempotent=True)


@pytest.mark.parametrize(
    ("name", "transient"),
    [("limit_daily", False), ("limit_concurrent", True), ("limit_long_txn", True)],
)
def test_recorded_request_limit_texts_are_told_apart(
    real_errors: dict[str, Any], name: str, *, transient: bool
) -> None:
    entry = real_errors[name]
    exc = SalesforceRefusedRequest(URL, entry["status"], "limits", entry["body"])
    expected = ConcurrentLimitError if transient else RequestLimitError
    assert isinstance(refusal_error("GET limits", exc), expected)


def test_recorded_duplicate_answers_give_the_matched_ids(
    real_errors: dict[str, Any],
) -> None:
    [single] = real_errors["duplicates_detected_single"]["body"]
    assert duplicate_matches(single) == ("0038M0000016Wv8QAE",)
    body = real_errors["duplicates_detected_collections_item"]["body"]
    ok, dup = collections_results(body, 2)
    assert ok.success
    assert (dup.success, dup.code) == (False, "DUPLICATES_DETECTED")
    assert dup.matches == ()


class _Reply:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> Any:
        return self._body


class _Session(requests.Session):
    def __init__(self, reply: _Reply) -> None:
        super().__init__()
        self.reply = reply
        self.urls: list[str] = []

    def post(self, url: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: ARG002 - the stub ignores the form
        self.urls.append(str(url))
        return self.reply


def test_recorded_jwt_audience_failure_is_a_clear_auth_error(
    real_errors: dict[str, Any],
) -> None:
    entry = real_errors["jwt_audience"]
    session = _Session(_Reply(entry["status"], entry["body"]))
    with pytest.raises(AuthError, match="invalid_grant: audience is invalid"):
        _token_request(session, "acme.my", {"grant_type": "x"}, 5.0, "JWT")
    assert session.urls == ["https://acme.my.salesforce.com/services/oauth2/token"]
