"""Log in to Salesforce: JWT bearer, client credentials, refresh token, password.

Every flow returns an access token and the instance URL; the client then builds a
simple-salesforce `Salesforce(session_id=..., instance_url=..., session=...)`, so
logging in again after INVALID_SESSION_ID is the same call for every flow.
Secrets never appear in messages raised from here.
"""

from __future__ import annotations

import dataclasses
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import requests
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.login import SalesforceLogin

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

FLOWS: Final = (
    "access_token",
    "jwt",
    "client_credentials",
    "refresh_token",
    "password",
)
LEGACY_LOGIN_END: Final = "2027-02-20"
LOGGER: Final = logging.getLogger("target-salesforce.auth")


class AuthError(RuntimeError):
    """Login failed or the settings do not describe a usable flow."""


@dataclasses.dataclass(frozen=True)
class Token:
    """An access token and the `https://host[:port]` it is valid for."""

    access_token: str
    instance_url: str
    flow: str

    def __repr__(self) -> str:
        """Never show the token."""
        return f"Token(flow={self.flow!r}, instance_url={self.instance_url!r})"


def resolve_flow(config: Mapping[str, Any]) -> str:
    """Pick the auth flow: `auth_flow` if set, else the first one configured.

    Order of preference: direct access token, JWT bearer, client credentials,
    refresh token, then username and password (legacy).

    Raises:
        AuthError: when no flow has the settings it needs.
    """
    flow = config.get("auth_flow")
    if flow:
        return str(flow)
    if config.get("access_token") and config.get("instance_url"):
        return "access_token"
    if (
        config.get("client_id")
        and config.get("username")
        and (config.get("private_key") or config.get("private_key_path"))
    ):
        return "jwt"
    if config.get("refresh_token") and config.get("client_id"):
        return "refresh_token"
    if config.get("username") and config.get("password"):
        return "password"
    if config.get("client_id") and config.get("client_secret"):
        return "client_credentials"
    msg = (
        "no Salesforce credentials configured: set JWT (client_id, username, "
        "private_key), client credentials (client_id, client_secret, domain), "
        "refresh_token (client_id, client_secret, refresh_token), or "
        "access_token with instance_url"
    )
    raise AuthError(msg)


def _require(config: Mapping[str, Any], flow: str, *names: str) -> None:
    absent = [n for n in names if not config.get(n)]
    if absent:
        msg = f"auth flow {flow!r} needs the settings: {', '.join(absent)}"
        raise AuthError(msg)


def _https(instance: str) -> str:
    host = instance.removeprefix("https://").removeprefix("http://").rstrip("/")
    return f"https://{host}"


def _refresh_token_login(
    config: Mapping[str, Any], session: requests.Session, domain: str, timeout: float
) -> tuple[str, str]:
    data = {
        "grant_type": "refresh_token",
        "client_id": config["client_id"],
        "refresh_token": config["refresh_token"],
    }
    if config.get("client_secret"):
        data["client_secret"] = config["client_secret"]
    url = f"https://{domain}.salesforce.com/services/oauth2/token"
    response = session.post(url, data=data, timeout=timeout)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != HTTPStatus.OK or "access_token" not in body:
        code = body.get("error", response.status_code)
        text = body.get("error_description", "token request refused")
        msg = f"refresh-token login failed: {code}: {text}"
        raise AuthError(msg)
    return str(body["access_token"]), str(body["instance_url"])


@dataclasses.dataclass(frozen=True)
class _LoginInputs:
    """What every flow gets: settings, session, My Domain, timeout, logger."""

    config: Mapping[str, Any]
    session: requests.Session
    domain: str
    timeout: float
    logger: logging.Logger


def _jwt_login(inputs: _LoginInputs) -> tuple[str, str]:
    config = inputs.config
    _require(config, "jwt", "client_id", "username")
    if not (config.get("private_key") or config.get("private_key_path")):
        msg = "auth flow 'jwt' needs private_key or private_key_path"
        raise AuthError(msg)
    return SalesforceLogin(
        username=config["username"],
        consumer_key=config["client_id"],
        privatekey=config.get("private_key") or None,
        privatekey_file=config.get("private_key_path") or None,
        domain=inputs.domain,
        session=inputs.session,
    )


def _client_credentials_login(inputs: _LoginInputs) -> tuple[str, str]:
    config = inputs.config
    _require(config, "client_credentials", "client_id", "client_secret")
    if inputs.domain in {"login", "test"}:
        msg = (
            "client credentials need your My Domain in `domain` (for "
            "example `acme.my`); Salesforce refuses this flow on "
            "login.salesforce.com and test.salesforce.com"
        )
        raise AuthError(msg)
    return SalesforceLogin(
        consumer_key=config["client_id"],
        consumer_secret=config["client_secret"],
        domain=inputs.domain,
        session=inputs.session,
    )


def _refresh_login(inputs: _LoginInputs) -> tuple[str, str]:
    _require(inputs.config, "refresh_token", "client_id", "refresh_token")
    return _refresh_token_login(
        inputs.config, inputs.session, inputs.domain, inputs.timeout
    )


def _password_login(inputs: _LoginInputs) -> tuple[str, str]:
    config = inputs.config
    _require(config, "password", "username", "password")
    inputs.logger.warning(
        "Username/password login is deprecated: Salesforce switches off the "
        "username-password flow on %s and retires SOAP login; move to JWT "
        "bearer or client credentials.",
        LEGACY_LOGIN_END,
    )
    security_token = str(config.get("security_token") or "")
    if config.get("client_id") and config.get("client_secret"):
        return SalesforceLogin(
            username=config["username"],
            password=str(config["password"]) + security_token,
            consumer_key=config["client_id"],
            consumer_secret=config["client_secret"],
            domain=inputs.domain,
            session=inputs.session,
        )
    return SalesforceLogin(
        username=config["username"],
        password=config["password"],
        security_token=security_token,
        sf_version=str(config.get("api_version") or "62.0"),
        domain=inputs.domain,
        session=inputs.session,
    )


# the flows that log in over HTTP; `access_token` needs no call
_LOGIN_FLOWS: Final[dict[str, Callable[[_LoginInputs], tuple[str, str]]]] = {
    "jwt": _jwt_login,
    "client_credentials": _client_credentials_login,
    "refresh_token": _refresh_login,
    "password": _password_login,
}


def login(
    config: Mapping[str, Any],
    session: requests.Session,
    *,
    timeout: float = 60.0,
    logger: logging.Logger = LOGGER,
) -> Token:
    """Run the configured flow and return a token.

    Args:
        config: the target's settings.
        session: the one requests session (proxy and CA bundle from the environment).
        timeout: HTTP timeout for the token request (refresh-token flow).
        logger: where the legacy-flow deprecation warning goes.

    Returns:
        The access token and instance URL.

    Raises:
        AuthError: on missing settings or a refused login.
    """
    flow = resolve_flow(config)
    if flow == "access_token":
        _require(config, flow, "access_token", "instance_url")
        return Token(str(config["access_token"]), _https(config["instance_url"]), flow)
    flow_login = _LOGIN_FLOWS.get(flow)
    if flow_login is None:
        msg = f"auth_flow {flow!r} is not one of {', '.join(FLOWS)}"
        raise AuthError(msg)
    domain = str(config.get("domain") or "login")
    inputs = _LoginInputs(config, session, domain, timeout, logger)
    try:
        token, instance = flow_login(inputs)
    except SalesforceAuthenticationFailed as exc:
        msg = f"Salesforce login ({flow}) failed: {exc.code}: {exc.auth_message}"
        raise AuthError(msg) from None
    except (OSError, ValueError) as exc:
        # A bad or unreadable private key; say which, never show the key.
        msg = f"Salesforce login ({flow}) failed: {type(exc).__name__}"
        raise AuthError(msg) from None
    except requests.RequestException as exc:
        msg = f"Salesforce login ({flow}) failed: {type(exc).__name__}: {exc}"
        raise AuthError(msg) from None
    return Token(str(token), _https(str(instance)), flow)
