"""Start the CleverTap emulator in a thread for tests: `running_emulator(...)`."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from typing import TYPE_CHECKING, Any

import requests

from sandbox.clevertap.app import create_app
from sandbox.server import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sandbox.tls import TLSFiles

_TIMEOUT = 30


@dataclasses.dataclass
class CleverTapHandle:
    """A running emulator: where it listens, its credentials, and control helpers."""

    base_url: str
    account_id: str
    passcode: str
    timezone: str
    verify: str | bool = True
    session: requests.Session = dataclasses.field(default_factory=requests.Session)

    def plugin_config(self) -> dict[str, Any]:
        """Config for target-clevertap / tap-clevertap pointing at this emulator."""
        return {
            "account_id": self.account_id,
            "passcode": self.passcode,
            "api_url": self.base_url,
        }

    def headers(self) -> dict[str, str]:
        """The CleverTap auth headers for this emulator."""
        return {
            "X-CleverTap-Account-Id": self.account_id,
            "X-CleverTap-Passcode": self.passcode,
            "Content-Type": "application/json; charset=utf-8",
        }

    def api_post(
        self,
        path: str,
        body: object = None,
        **kwargs: Any,
    ) -> requests.Response:
        """POST JSON to a CleverTap path (for example `/1/upload`) with auth headers."""
        return self.session.post(
            self.base_url + path,
            json=body,
            headers=self.headers(),
            timeout=kwargs.pop("timeout", _TIMEOUT),
            verify=self.verify,
            **kwargs,
        )

    def api_get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET a CleverTap path (for example `/1/events.json`) with auth headers."""
        return self.session.get(
            self.base_url + path,
            headers=self.headers(),
            timeout=kwargs.pop("timeout", _TIMEOUT),
            verify=self.verify,
            **kwargs,
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:  # noqa: ANN401 - decoded JSON; each caller annotates what it expects
        response = self.session.request(
            method,
            f"{self.base_url}/_sandbox/{path}",
            timeout=_TIMEOUT,
            verify=self.verify,
            **kwargs,
        )
        response.raise_for_status()
        return response.json()

    def profiles(self, **filters: str) -> list[dict[str, Any]]:
        """The stored profiles (`GET /_sandbox/profiles`)."""
        result: list[dict[str, Any]] = self._call("GET", "profiles", params=filters)
        return result

    def events(self, **filters: str) -> list[dict[str, Any]]:
        """The stored events (`GET /_sandbox/events`, filters evtName, identity)."""
        result: list[dict[str, Any]] = self._call("GET", "events", params=filters)
        return result

    def requests_log(self) -> list[dict[str, Any]]:
        """Every CleverTap API request received (`GET /_sandbox/requests`)."""
        result: list[dict[str, Any]] = self._call("GET", "requests")
        return result

    def reset(self) -> None:
        """Wipe data, faults and logs (`POST /_sandbox/reset`)."""
        self._call("POST", "reset")

    def seed(self, **params: Any) -> dict[str, Any]:
        """Seed engagement data (`POST /_sandbox/seed`); returns the summary."""
        result: dict[str, Any] = self._call("POST", "seed", json=params)
        return result

    def fault(self, kind: str, **params: Any) -> None:
        """Inject a fault (`POST /_sandbox/faults`)."""
        self._call("POST", "faults", json={"kind": kind, **params})

    def faults(self) -> list[dict[str, Any]]:
        """The active faults (`GET /_sandbox/faults`)."""
        result: list[dict[str, Any]] = self._call("GET", "faults")
        return result

    def clear_faults(self) -> None:
        """Remove every fault (`DELETE /_sandbox/faults`)."""
        self._call("DELETE", "faults")


@contextlib.contextmanager
def running_emulator(  # noqa: PLR0913 - every option is a keyword
    *,
    db_path: str | Path,
    account_id: str = "SANDBOX-ACCOUNT",
    passcode: str = "SANDBOX-PASSCODE",
    timezone: str = "UTC",
    tls_files: TLSFiles | None = None,
    max_event_properties: int | None = None,
) -> Iterator[CleverTapHandle]:
    """Serve a CleverTap emulator on a free 127.0.0.1 port for a `with` block.

    Args:
        db_path: its SQLite file (reuse it to test a restart).
        account_id: the account id clients must send.
        passcode: the passcode clients must send.
        timezone: the account's IANA time zone.
        tls_files: serve HTTPS with these files (the handle trusts their CA).
        max_event_properties: the per-event property cap (default CleverTap's 100).

    Yields:
        A handle with the base URL, credentials and control helpers.
    """
    options: dict[str, Any] = {}
    if max_event_properties is not None:
        options["max_event_properties"] = max_event_properties
    app = create_app(
        db_path=db_path,
        account_id=account_id,
        passcode=passcode,
        timezone=timezone,
        **options,
    )
    cert = str(tls_files.server_cert) if tls_files else None
    key = str(tls_files.server_key) if tls_files else None
    with serve_in_thread(app, ssl_certfile=cert, ssl_keyfile=key) as server:
        handle = CleverTapHandle(
            base_url=server.base_url,
            account_id=account_id,
            passcode=passcode,
            timezone=timezone,
            verify=str(tls_files.ca_cert) if tls_files else True,
        )
        try:
            yield handle
        finally:
            handle.session.close()
            # A client exception kept in a reference cycle can hold a TLS socket
            # open, and uvicorn waits for every connection before it stops.
            gc.collect()
            app_emulator = getattr(app, "emulator", None)
            if app_emulator is not None:
                app_emulator.store.close()
