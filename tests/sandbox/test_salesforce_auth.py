"""OAuth grants and sessions; simple-salesforce logs in through the proxy."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import jwt
import pytest
from sandbox.proxy import running_proxy
from sandbox.salesforce.auth import generate_key_pair
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import requests
    from sandbox.salesforce.testing import SalesforceHandle

# simple-salesforce types its dynamic attributes (sf.Contact, sf.bulk2.Contact) as a
# union of its handler classes and restful() as `Any | None`: the tests use the
# client as the untyped REST wrapper it is.
SF: TypeAlias = Any
# Its errors' `content` is the parsed JSON body, though declared as bytes.

MY_DOMAIN = "https://sandbox.my.salesforce.com"


@pytest.fixture
def org(
    make_salesforce_emulator: Callable[..., SalesforceHandle],
) -> Iterator[tuple[SalesforceHandle, requests.Session]]:
    """An emulator on the real hostnames, and a session that reaches it by proxy."""
    handle = make_salesforce_emulator(instance_url=MY_DOMAIN)
    routes = {
        "login.salesforce.com": ("127.0.0.1", handle.port),
        "test.salesforce.com": ("127.0.0.1", handle.port),
        "*.my.salesforce.com": ("127.0.0.1", handle.port),
    }
    with running_proxy(routes) as proxy:
        session = handle.session()
        session.proxies = {"https": proxy.url}
        yield handle, session
        session.close()


def _token(session: requests.Session, host: str, **form: str) -> requests.Response:
    return session.post(f"https://{host}/services/oauth2/token", data=form, timeout=10)


def _token_requests(handle: SalesforceHandle) -> int:
    return sum(r["path"] == "/services/oauth2/token" for r in handle.requests_log())


def test_refresh_token_grant_returns_instance_url_and_never_rotates(
    org: tuple[SalesforceHandle, requests.Session],
) -> None:
    handle, session = org
    response = _token(
        session,
        "login.salesforce.com",
        grant_type="refresh_token",
        client_id=handle.client_id,
        client_secret=handle.client_secret,
        refresh_token=handle.refresh_token,
    )
    body = response.json()
    assert response.status_code == 200
    assert body["instance_url"] == MY_DOMAIN
    assert body["token_type"] == "Bearer"  # noqa: S105 - a token type, not a secret
    assert "refresh_token" not in body
    data = session.get(
        f"{MY_DOMAIN}/services/data/v61.0/sobjects",
        timeout=10,
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert data.status_code == 200


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "refresh_token", "refresh_token": "wrong"}, "invalid_grant"),
        ({"grant_type": "refresh_token", "client_id": "other"}, "invalid_client_id"),
        (
            {
                "grant_type": "password",
                "username": "integration@sandbox.example.com",
                "password": "nope",
            },
            "invalid_grant",
        ),
        ({"grant_type": "client_credentials"}, "invalid_grant"),
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
    ],
)
def test_refused_grants_answer_400_with_oauth_error(
    org: tuple[SalesforceHandle, requests.Session], form: dict[str, str], error: str
) -> None:
    handle, session = org
    full = {
        "client_id": handle.client_id,
        "client_secret": handle.client_secret,
        "refresh_token": handle.refresh_token,
        **form,
    }
    response = _token(session, "login.salesforce.com", **full)
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_simple_salesforce_jwt_bearer_login_verifies_the_signature(
    org: tuple[SalesforceHandle, requests.Session],
) -> None:
    handle, session = org
    sf = Salesforce(
        username=handle.username,
        consumer_key=handle.client_id,
        privatekey=handle.jwt_private_key_pem.decode(),
        session=session,
    )
    assert sf.sf_instance == "sandbox.my.salesforce.com"
    assert sf.query("SELECT Id FROM User LIMIT 1")["totalSize"] == 1
    other_key = generate_key_pair().private_key_pem.decode()
    with pytest.raises(SalesforceAuthenticationFailed, match="invalid assertion"):
        Salesforce(
            username=handle.username,
            consumer_key=handle.client_id,
            privatekey=other_key,
            session=session,
        )


def test_jwt_with_wrong_audience_or_user_or_expiry_is_refused(
    org: tuple[SalesforceHandle, requests.Session],
) -> None:
    handle, session = org
    base: dict[str, Any] = {
        "iss": handle.client_id,
        "sub": handle.username,
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 180,
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"aud": "https://evil.example"}, "audience is invalid"),
        ({"sub": "someone@else.example"}, "user hasn't approved this consumer"),
        ({"exp": int(time.time()) - 60}, "expired authorization code"),
    ]
    for change, message in cases:
        assertion = jwt.encode(
            {**base, **change}, handle.jwt_private_key_pem, algorithm="RS256"
        )
        response = _token(
            session,
            "login.salesforce.com",
            assertion=assertion,
            grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
        )
        assert response.status_code == 400
        assert response.json()["error_description"] == message


def _jwt_grant(
    handle: SalesforceHandle, session: requests.Session, host: str, aud: str
) -> requests.Response:
    claims = {
        "iss": handle.client_id,
        "sub": handle.username,
        "aud": aud,
        "exp": int(time.time()) + 180,
    }
    assertion = jwt.encode(claims, handle.jwt_private_key_pem, algorithm="RS256")
    return _token(
        session,
        host,
        assertion=assertion,
        grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
    )


def test_jwt_to_my_domain_takes_login_or_test_audience_never_my_domain(
    org: tuple[SalesforceHandle, requests.Session],
) -> None:
    # simple-salesforce#672, forcedotcom/cli#3325: the token request may go to
    # the My Domain host, but `aud` must be login or test, else "audience is
    # invalid".
    handle, session = org
    my_domain = "acme.my.salesforce.com"
    for aud in ("https://login.salesforce.com", "https://test.salesforce.com"):
        assert _jwt_grant(handle, session, my_domain, aud).status_code == 200
    refused = _jwt_grant(handle, session, my_domain, f"https://{my_domain}")
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "invalid_grant",
        "error_description": "audience is invalid",
    }


def test_refresh_token_without_secret_depends_on_the_connected_app(
    org: tuple[SalesforceHandle, requests.Session],
) -> None:
    handle, session = org
    form = {
        "grant_type": "refresh_token",
        "client_id": handle.client_id,
        "refresh_token": handle.refresh_token,
    }
    refused = _token(session, "login.salesforce.com", **form)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_client"
    handle.emulator.auth.refresh_requires_secret = False
    assert _token(session, "login.salesforce.com", **form).status_code == 200
    wrong = _token(
        session,
        "login.salesforce.com",
        **form,
        client_secret="wrong",  # noqa: S106 - a deliberately wrong test secret
    )
    assert wrong.status_code == 400


def test_client_credentials_work_on_my_domain_only(
    org: tuple[SalesforceHandle, requests.Session],
) -> None:
    handle, session = org
    sf = Salesforce(
        consumer_key=handle.client_id,
        consumer_secret=handle.client_secret,
        domain="sandbox.my",
        session=session,
    )
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 30
    refused = session.post(
        "https://login.salesforce.com/services/oauth2/token",
        timeout=10,
        data={"grant_type": "client_credentials"},
        auth=(handle.client_id, handle.client_secret),
    )
    assert refused.status_code == 400
    assert refused.json()["error_description"] == "request not supported on this domain"


def test_password_grant_and_soap_login(
    org: tuple[SalesforceHandle, requests.Session],
) -> None:
    handle, session = org
    oauth = Salesforce(
        username=handle.username,
        password=handle.password,
        consumer_key=handle.client_id,
        consumer_secret=handle.client_secret,
        session=session,
    )
    assert oauth.query("SELECT COUNT() FROM Lead")["totalSize"] == 24
    soap = Salesforce(
        username=handle.username,
        password=handle.password,
        security_token=handle.security_token,
        session=session,
    )
    assert soap.sf_instance == "sandbox.my.salesforce.com"
    assert soap.query("SELECT COUNT() FROM Lead")["totalSize"] == 24
    with pytest.raises(SalesforceAuthenticationFailed):
        Salesforce(
            username=handle.username,
            password="bad",  # noqa: S106 - a wrong password on purpose
            security_token="x",  # noqa: S106 - a wrong token on purpose
            session=session,
        )
    soap_body = next(r for r in handle.requests_log() if "/Soap/" in r["path"])["body"]
    assert soap_body == "<redacted>"


def test_invalid_session_fault_makes_a_jwt_client_log_in_again_and_retry(
    org: tuple[SalesforceHandle, requests.Session],
) -> None:
    handle, session = org
    sf = Salesforce(
        username=handle.username,
        consumer_key=handle.client_id,
        privatekey=handle.jwt_private_key_pem.decode(),
        session=session,
    )
    logins = _token_requests(handle)
    handle.fault("invalid_session", count=1)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 10
    assert _token_requests(handle) == logins + 1
    statuses = [r["status"] for r in handle.requests_log() if "query" in r["path"]]
    assert statuses[-2:] == [401, 200]


def test_direct_session_with_invalid_session_raises_expired_session(
    salesforce_emulator: SalesforceHandle,
    sf: SF,
) -> None:
    salesforce_emulator.fault("invalid_session", count=1)
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.query("SELECT Id FROM Contact")
    assert (
        cast("list[dict[str, Any]]", exc.value.content)[0]["errorCode"]
        == "INVALID_SESSION_ID"
    )
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 30
    bad = Salesforce(
        session_id="00Dnot-a-token",
        instance_url=salesforce_emulator.base_url,
        session=salesforce_emulator.session(),
    )
    with pytest.raises(SalesforceExpiredSession):
        bad.query("SELECT Id FROM Contact")


def _soap_login(
    handle: SalesforceHandle, session: requests.Session, version: str
) -> SF:
    return Salesforce(
        username=handle.username,
        password=handle.password,
        security_token=handle.security_token,
        session=session,
        version=version,
    )


def _refused_like(
    refused: SalesforceAuthenticationFailed, recording: dict[str, Any]
) -> None:
    """simple-salesforce read the recorded code and message from the fault."""
    fault = recording["soap_fault"]
    assert refused.code == fault["exceptionCode"]
    assert refused.auth_message == fault["exceptionMessage"]


def _last_soap_status(handle: SalesforceHandle) -> int:
    soap = [r for r in handle.requests_log() if r["path"].startswith("/services/Soap")]
    return int(soap[-1]["status"])


def _org_settings(handle: SalesforceHandle, **settings: bool) -> None:
    """Change org settings through the control API, as a test setup would."""
    answer = handle.session().post(
        f"{handle.base_url}/_sandbox/org_settings", json=settings, timeout=10
    )
    assert {k: answer.json()[k] for k in settings} == settings


def _client_credentials(
    handle: SalesforceHandle, session: requests.Session
) -> requests.Response:
    """A client-credentials grant on the My Domain host (independent of logins)."""
    return _token(
        session,
        "sandbox.my.salesforce.com",
        grant_type="client_credentials",
        client_id=handle.client_id,
        client_secret=handle.client_secret,
    )


def test_soap_login_at_v65_is_refused_like_a_real_org(
    org: tuple[SalesforceHandle, requests.Session],
    recorded_sf_errors: dict[str, Any],
) -> None:
    handle, session = org
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        _soap_login(handle, session, "65.0")
    recording = recorded_sf_errors["soap_login_v65"]
    _refused_like(refused.value, recording)
    assert _last_soap_status(handle) == recording["status"]
    # v64.0 still logs in (login() stays in 62.0-64.0 until Summer '27)
    kept = _soap_login(handle, session, "64.0")
    assert kept.query("SELECT COUNT() FROM Lead")["totalSize"] == 24


def test_soap_login_in_an_org_that_has_it_disabled_is_refused_like_a_real_org(
    org: tuple[SalesforceHandle, requests.Session],
    recorded_sf_errors: dict[str, Any],
) -> None:
    handle, session = org
    _org_settings(handle, soap_login_enabled=False)
    recording = recorded_sf_errors["soap_login_disabled"]
    for version in ("64.0", "62.0"):
        with pytest.raises(SalesforceAuthenticationFailed) as refused:
            _soap_login(handle, session, version)
        _refused_like(refused.value, recording)
        assert _last_soap_status(handle) == recording["status"]
    # the OAuth flows do not depend on it
    assert _client_credentials(handle, session).status_code == 200
    handle.emulator.auth.soap_login_enabled = True  # an admin enables it
    assert _soap_login(handle, session, "64.0").query("SELECT COUNT() FROM Lead")


def test_password_grant_in_an_org_that_blocks_it_is_refused_like_a_real_org(
    org: tuple[SalesforceHandle, requests.Session],
    recorded_sf_errors: dict[str, Any],
) -> None:
    handle, session = org
    form = {
        "grant_type": "password",
        "client_id": handle.client_id,
        "client_secret": handle.client_secret,
        "username": handle.username,
        "password": handle.password + handle.security_token,
    }
    assert _token(session, "login.salesforce.com", **form).status_code == 200
    _org_settings(handle, oauth_password_flow_enabled=False)
    # the right credentials get the answer of wrong ones, as in a real org
    recording = recorded_sf_errors["oauth_password_flow_blocked"]
    refused = _token(session, "login.salesforce.com", **form)
    assert refused.status_code == recording["status"]
    assert refused.json() == recording["body"]
    wrong = _token(session, "login.salesforce.com", **{**form, "password": "wrong"})
    assert wrong.json() == recording["body"]
    # the other OAuth flows do not depend on it
    assert _client_credentials(handle, session).status_code == 200
