"""The org's connected app and integration user, and the OAuth token grants.

Grants: `refresh_token` (never rotated: the reply carries no new refresh token),
`password` (password plus security token, or password alone), JWT bearer (RS256,
verified against the connected app's registered certificate) and
`client_credentials` (refused on login/test.salesforce.com, as Salesforce does).
"""

from __future__ import annotations

# ruff: noqa: EM101 - Salesforce error codes and messages are the exception data
import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import os
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandbox.salesforce.dml import INTEGRATION_USER_ID

if TYPE_CHECKING:
    from pathlib import Path

ORG_ID = "00D5g000004SANDBX"
CLIENT_ID = "3MVG9SANDBOX.CleverTapConnectorClientId"
CLIENT_SECRET = "SANDBOX-CLIENT-SECRET-6C1E"  # noqa: S105 - the emulator's fake app
REFRESH_TOKEN = "5Aep861SANDBOX.refresh.token"  # noqa: S105 - the emulator's fake app
USERNAME = "integration@sandbox.example.com"
PASSWORD = "sandbox-password"  # noqa: S105 - the emulator's fake user
SECURITY_TOKEN = "SANDBOXTOKEN"  # noqa: S105 - the emulator's fake user
LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")
JWT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


class OAuthError(Exception):
    """A failed grant: `{"error", "error_description"}` with HTTP 400."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        """Keep the OAuth error and description."""
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A PEM private key and a self-signed certificate for JWT bearer tests."""

    private_key_pem: bytes
    certificate_pem: bytes


def generate_key_pair(common_name: str = "sandbox-jwt") -> KeyPair:
    """Make an RSA key and a self-signed certificate (what a connected app registers).

    Args:
        common_name: the certificate subject.

    Returns:
        The PEM key pair.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return KeyPair(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.PEM),
    )


def ensure_key_pair(directory: Path) -> tuple[Path, Path]:
    """Write a JWT key pair to `directory` unless it is there (key file mode 0600).

    Returns:
        The paths of the private key and the certificate.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / "jwt-private-key.pem"
    cert_path = directory / "jwt-certificate.pem"
    if not (key_path.exists() and cert_path.exists()):
        pair = generate_key_pair()
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pair.private_key_pem)
        cert_path.write_bytes(pair.certificate_pem)
    return key_path, cert_path


class Auth:
    """Issued session tokens and the credential checks of each grant."""

    def __init__(  # noqa: PLR0913 - keyword-only credentials
        self,
        *,
        jwt_certificate_pem: bytes,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        refresh_token: str = REFRESH_TOKEN,
        username: str = USERNAME,
        password: str = PASSWORD,
        security_token: str = SECURITY_TOKEN,
    ) -> None:
        """Register the connected app, its certificate and the integration user."""
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.username = username
        self.password = password
        self.security_token = security_token
        # "Require Secret for Refresh Token Flow" of the connected app: off, a
        # refresh-token grant may leave out client_secret.
        self.refresh_requires_secret = True
        # Session Settings "Enable SOAP API login()": on here, as in older orgs;
        # newly created orgs have it off (help.salesforce.com
        # article 005132110, "Platform SOAP API login() Retirement").
        self.soap_login_enabled = True
        # OAuth and OpenID Connect Settings "Allow OAuth Username-Password Flows":
        # on here, as in older orgs; blocked by default in orgs created from
        # Summer '23 (release note rn_security_username-password_flow_blocked_
        # by_default), when the grant answers exactly like wrong credentials:
        # recording `oauth_password_flow_blocked` in tests/fixtures/
        # target_salesforce/real_api_errors.json (vdesabou/kafka-docker-playground
        # issue #4178), held by test_salesforce_auth.py's contract test.
        self.oauth_password_flow_enabled = True
        cert = x509.load_pem_x509_certificate(jwt_certificate_pem)
        self._jwt_key = cert.public_key()
        self._tokens: set[str] = set()
        self._lock = threading.Lock()

    def issue(self) -> str:
        """A new valid session token."""
        token = f"{ORG_ID}!AQ{secrets.token_urlsafe(48)}"
        with self._lock:
            self._tokens.add(token)
        return token

    def valid(self, token: str | None) -> bool:
        """Whether a session token was issued and not revoked."""
        with self._lock:
            return token is not None and token in self._tokens

    def revoke_all(self) -> None:
        """Invalidate every issued session token."""
        with self._lock:
            self._tokens.clear()

    def grant(
        self, form: dict[str, str], basic: tuple[str, str] | None, host: str
    ) -> str:
        """Check a token request and issue a session token.

        Raises:
            OAuthError: the grant is refused.
        """
        grant_type = form.get("grant_type", "")
        client_id = form.get("client_id") or (basic[0] if basic else "")
        client_secret = form.get("client_secret") or (basic[1] if basic else "")
        if grant_type == "refresh_token":
            if client_secret or self.refresh_requires_secret:
                self._check_client(client_id, client_secret)
            elif not hmac.compare_digest(client_id, self.client_id):
                raise OAuthError("invalid_client_id", "client identifier invalid")
            if not hmac.compare_digest(
                form.get("refresh_token", ""), self.refresh_token
            ):
                raise OAuthError("invalid_grant", "expired access/refresh token")
        elif grant_type == "password":
            self._check_client(client_id, client_secret)
            if not self.oauth_password_flow_enabled:
                raise OAuthError("invalid_grant", "authentication failure")
            self._check_user(form.get("username", ""), form.get("password", ""))
        elif grant_type == "client_credentials":
            if host.split(":", maxsplit=1)[0].lower() in LOGIN_HOSTS:
                raise OAuthError(
                    "invalid_grant", "request not supported on this domain"
                )
            self._check_client(client_id, client_secret)
        elif grant_type == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            self._check_assertion(form.get("assertion", ""), host)
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        return self.issue()

    def _check_client(self, client_id: str, client_secret: str) -> None:
        if not hmac.compare_digest(client_id, self.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(client_secret, self.client_secret):
            raise OAuthError("invalid_client", "invalid client credentials")

    def _check_user(self, username: str, password: str) -> None:
        accepted = (self.password, self.password + self.security_token)
        if username.lower() != self.username or not any(
            hmac.compare_digest(password, p) for p in accepted
        ):
            raise OAuthError("invalid_grant", "authentication failure")

    def check_soap_login(self, username: str, password: str) -> None:
        """Check SOAP login credentials (password plus security token).

        Raises:
            OAuthError: wrong username or password.
        """
        self._check_user(username, password)

    def _check_assertion(self, assertion: str, host: str) -> None:
        try:
            claims = jwt.decode(
                assertion,
                key=self._jwt_key,  # type: ignore[arg-type]
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_grant", "expired authorization code") from None
        except jwt.PyJWTError:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if claims.get("iss") != self.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        audiences = (
            claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        )
        # Salesforce takes login or test as audience wherever the request goes
        # (a My Domain host included), never the My Domain host itself:
        # simple-salesforce#672, forcedotcom/cli#3325 ("audience is invalid").
        del host
        if not any(str(a).rstrip("/").lower() in JWT_AUDIENCES for a in audiences):
            raise OAuthError("invalid_grant", "audience is invalid")
        if str(claims.get("sub", "")).lower() != self.username:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")

    def token_response(
        self, token: str, instance_url: str, login_host: str
    ) -> dict[str, Any]:
        """The JSON body of a successful grant (no refresh token: none rotates)."""
        issued_at = str(int(time.time() * 1000))
        identity = f"https://{login_host}/id/{ORG_ID}/{INTEGRATION_USER_ID}"
        digest = hmac.new(
            self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        return {
            "access_token": token,
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(digest).decode(),
            "scope": "api refresh_token",
        }
