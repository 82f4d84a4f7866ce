"""Log in to Salesforce: JWT bearer, client credentials, refresh token, password.

Every flow returns an access token and the instance URL; the client then builds a
simple-salesforce `Salesforce(session_id=..., instance_url=..., session=...)`, so
logging in again after INVALID_SESSION_ID is the same call for every flow.
Secrets never appear in messages raised from here.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jwt
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
# SOAP login() is unavailable from API v65.0 (developer.salesforce.com
# platform/api/guide/api-eol-soap.html)
SOAP_LOGIN_LAST_VERSION: Final = 64.0
#: where a refused legacy login sends the user
OAUTH_FLOWS_HINT: Final = (
    "Use an OAuth flow: JWT bearer (client_id, username, private_key), client "
    "credentials (client_id, client_secret, My Domain in `domain`) or refresh_token"
)
#: a refused OAuth password grant reads like wrong credentials whatever the cause
#: (Summer '23 release note rn_security_username-password_flow_blocked_by_default;
#: External Client Apps have no username-password flow: ForceCLI/force PR #780)
REFUSED_GRANT_HINT: Final = (
    "Salesforce answers this to a wrong username, password or security token, and "
    'also when the org blocks the OAuth username-password flow ("Allow OAuth '
    'Username-Password Flows" in OAuth and OpenID Connect Settings, off in orgs '
    "created since Summer '23) or the app is an External Client App, which has no "
    "such flow."
)
JWT_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LOGIN_AUDIENCE: Final = "https://login.salesforce.com"
JWT_SANDBOX_AUDIENCE: Final = "https://test.salesforce.com"
JWT_LIFETIME_SECONDS: Final = 180
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


def _token_request(
    session: requests.Session,
    domain: str,
    data: Mapping[str, str],
    timeout: float,
    what: str,
) -> tuple[str, str]:
    """POST an OAuth grant to https://<domain>.salesforce.com; token and instance.

    Raises:
        AuthError: the grant was refused (the message holds no secret).
    """
    url = f"https://{domain}.salesforce.com/services/oauth2/token"
    response = session.post(url, data=dict(data), timeout=timeout)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if response.status_code != HTTPStatus.OK or "access_token" not in body:
        code = body.get("error", response.status_code)
        text = body.get("error_description", "token request refused")
        msg = f"{what} login failed: {code}: {text}"
        raise AuthError(msg)
    return str(body["access_token"]), str(body["instance_url"])


def _refresh_token_login(
    config: Mapping[str, Any], session: requests.Session, domain: str, timeout: float
) -> tuple[str, str]:
    """Refresh-token grant; the client secret is sent only when configured.

    Salesforce accepts a refresh token without the secret unless the connected
    app has "Require Secret for Refresh Token Flow" switched on.
    """
    data = {
        "grant_type": "refresh_token",
        "client_id": config["client_id"],
        "refresh_token": config["refresh_token"],
    }
    if config.get("client_secret"):
        data["client_secret"] = config["client_secret"]
    return _token_request(session, domain, data, timeout, "refresh-token")


def jwt_audience(config: Mapping[str, Any]) -> str:
    """The JWT `aud`: the `jwt_audience` setting, else login or test.

    Salesforce checks `aud` against https://login.salesforce.com or
    https://test.salesforce.com even when the token request goes to a My Domain
    host (simple-salesforce/simple-salesforce#672, forcedotcom/cli#3325:
    "audience is invalid"). A sandbox is `domain: test` or a My Domain with
    `.sandbox.` in it (acme--uat.sandbox.my).
    """
    if config.get("jwt_audience"):
        return str(config["jwt_audience"]).rstrip("/")
    domain = str(config["domain"]).lower()
    if domain == "test" or ".sandbox." in f".{domain}.":
        return JWT_SANDBOX_AUDIENCE
    return JWT_LOGIN_AUDIENCE


@dataclasses.dataclass(frozen=True)
class _LoginInputs:
    """What every flow gets: settings, session, My Domain, timeout, logger."""

    config: Mapping[str, Any]
    session: requests.Session
    domain: str
    timeout: float
    logger: logging.Logger


def _jwt_login(inputs: _LoginInputs) -> tuple[str, str]:
    """JWT bearer: sign the assertion here, send it to the `domain` host.

    The token endpoint is the configured host (login, test or My Domain); the
    `aud` claim is `jwt_audience(config)`, which is never the My Domain host.
    """
    config = inputs.config
    _require(config, "jwt", "client_id", "username")
    if config.get("private_key"):
        key = str(config["private_key"])
    elif config.get("private_key_path"):
        key = Path(str(config["private_key_path"])).read_text(encoding="utf-8")
    else:
        msg = "auth flow 'jwt' needs private_key or private_key_path"
        raise AuthError(msg)
    claims = {
        "iss": str(config["client_id"]),
        "sub": str(config["username"]),
        "aud": jwt_audience(config),
        "exp": int(time.time()) + JWT_LIFETIME_SECONDS,
    }
    assertion = jwt.encode(claims, key, algorithm="RS256")
    data = {"grant_type": JWT_GRANT, "assertion": assertion}
    return _token_request(inputs.session, inputs.domain, data, inputs.timeout, "JWT")


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
    version = str(config["api_version"])
    if _version_number(version) > SOAP_LOGIN_LAST_VERSION:
        msg = (
            f"username/password login without client_id and client_secret uses "
            f"SOAP login(), which Salesforce removed from API v65.0; api_version "
            f"is {version}. {OAUTH_FLOWS_HINT}; or set api_version to 64.0 or "
            "lower while you move."
        )
        raise AuthError(msg)
    return SalesforceLogin(
        username=config["username"],
        password=config["password"],
        security_token=security_token,
        sf_version=version,
        domain=inputs.domain,
        session=inputs.session,
    )


def _version_number(version: str) -> float:
    """`62.0` (or `v62.0`) as a number; 0 when it is not one."""
    try:
        return float(version.lstrip("vV"))
    except ValueError:
        return 0.0


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
    domain = str(config["domain"])
    inputs = _LoginInputs(config, session, domain, timeout, logger)
    try:
        token, instance = flow_login(inputs)
    except SalesforceAuthenticationFailed as exc:
        msg = f"Salesforce login ({flow}) failed: {exc.code}: {exc.auth_message}"
        if flow == "password" and exc.code == "INVALID_OPERATION":
            # SOAP login() off in the org (new orgs' default) or gone at this version
            msg += f" {OAUTH_FLOWS_HINT}."
        elif flow == "password" and exc.code == "invalid_grant":
            msg += f" {REFUSED_GRANT_HINT} {OAUTH_FLOWS_HINT}."
        raise AuthError(msg) from None
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        # A bad or unreadable private key; say which, never show the key.
        msg = f"Salesforce login ({flow}) failed: {type(exc).__name__}"
        raise AuthError(msg) from None
    except requests.RequestException as exc:
        msg = f"Salesforce login ({flow}) failed: {type(exc).__name__}: {exc}"
        raise AuthError(msg) from None
    return Token(str(token), _https(str(instance)), flow)
