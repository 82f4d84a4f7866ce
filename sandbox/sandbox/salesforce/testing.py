"""Run the emulator in a thread for tests: `running_emulator(...)` and its handle."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

import requests

from sandbox.salesforce import auth
from sandbox.salesforce.app import create_app
from sandbox.salesforce.emulator import Emulator, Options
from sandbox.server import serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from sandbox.salesforce.apex import ApexContext, ApexRequest
    from sandbox.tls import TLSFiles


@dataclasses.dataclass
class SalesforceHandle:
    """A running emulator: where it listens, its credentials, and inspection helpers."""

    base_url: str
    instance_url: str
    tls_files: TLSFiles
    emulator: Emulator = dataclasses.field(repr=False)
    access_token: str = dataclasses.field(repr=False)
    client_id: str = auth.CLIENT_ID
    client_secret: str = dataclasses.field(default=auth.CLIENT_SECRET, repr=False)
    refresh_token: str = dataclasses.field(default=auth.REFRESH_TOKEN, repr=False)
    username: str = auth.USERNAME
    password: str = dataclasses.field(default=auth.PASSWORD, repr=False)
    security_token: str = dataclasses.field(default=auth.SECURITY_TOKEN, repr=False)
    jwt_private_key_pem: bytes = dataclasses.field(default=b"", repr=False)

    @property
    def ca_bundle(self) -> str:
        """Path of the CA bundle (system CAs plus the test CA) for `verify=`."""
        return str(self.tls_files.bundle)

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        return int(self.base_url.rsplit(":", 1)[1])

    def session(self) -> requests.Session:
        """A requests session that trusts the test CA, whatever the environment says.

        `trust_env` is off: REQUESTS_CA_BUNDLE would otherwise override `verify`, and
        proxy variables would apply.
        """
        session = requests.Session()
        session.trust_env = False
        session.verify = self.ca_bundle
        return session

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Every stored row of an sObject type (soft-deleted ones included)."""
        return self.emulator.records(sobject)

    def live_records(self, sobject: str) -> list[dict[str, Any]]:
        """Stored rows that are not deleted."""
        return [r for r in self.records(sobject) if not r.get("IsDeleted")]

    def apex_calls(self) -> list[dict[str, Any]]:
        """Recorded Apex REST calls, oldest first."""
        return self.emulator.apex_calls()

    def requests_log(self) -> list[dict[str, Any]]:
        """Logged API requests, oldest first."""
        return self.emulator.requests_log()

    def fault(self, kind: str, **params: Any) -> None:
        """Arm a fault, as `POST /_sandbox/faults` does (see SALESFORCE.md)."""
        if kind == "api_usage":
            self.emulator.set_api_usage(params.get("used"), params.get("limit"))
            return
        if kind == "invalid_session" and params.get("revoke"):
            self.emulator.auth.revoke_all()
            return
        self.emulator.faults.add({"kind": kind, **params})

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self.emulator.faults.clear()

    def reset(self) -> None:
        """Empty the org, logs, jobs and faults (the access token stays valid)."""
        self.emulator.reset()

    def seed(self, size: str = "small") -> int:
        """Replace the org by the sample org of `size`; returns the record count."""
        return self.emulator.reseed(size)

    def new_access_token(self) -> str:
        """Issue another valid session token."""
        return self.emulator.auth.issue()

    def api_usage(self) -> tuple[int, int]:
        """(used, limit) as served in `Sforce-Limit-Info`."""
        return self.emulator.api_usage()

    def register_apex(
        self,
        mapping: str,
        handler: Callable[[ApexRequest, ApexContext], tuple[int, Any]],
    ) -> None:
        """Route an Apex REST URL mapping to `handler(request, context)`."""
        self.emulator.apex.register(mapping, handler)


@contextlib.contextmanager
def running_emulator(
    *,
    db_path: Path | str | None,
    tls_files: TLSFiles,
    seed: str | None = "small",
    instance_url: str | None = None,
    **options: Any,
) -> Iterator[SalesforceHandle]:
    """Serve an emulator over HTTPS on 127.0.0.1 for the duration of a `with` block.

    Args:
        db_path: its SQLite file.
        tls_files: the test CA and server certificate (covers 127.0.0.1).
        seed: "small", "demo" or None.
        instance_url: the `instance_url` the token endpoint hands out; None means
            the emulator's own base URL (`https://127.0.0.1:PORT`).
        **options: `query_page_size`, `api_limit`.

    Yields:
        The handle.
    """
    emulator = Emulator(
        db_path=db_path,
        seed=seed,
        options=Options(instance_url=instance_url, **options),
    )
    app = create_app(emulator=emulator)
    with serve_in_thread(
        app,
        ssl_certfile=str(tls_files.server_cert),
        ssl_keyfile=str(tls_files.server_key),
    ) as server:
        if instance_url is None:
            emulator.options.instance_url = server.base_url
        handle = SalesforceHandle(
            base_url=server.base_url,
            instance_url=emulator.options.instance_url or server.base_url,
            tls_files=tls_files,
            emulator=emulator,
            access_token=emulator.auth.issue(),
            jwt_private_key_pem=emulator.jwt_private_key_pem or b"",
        )
        try:
            yield handle
        finally:
            # Clients (simple-salesforce, the targets) keep idle TLS connections in
            # their pools; uvicorn would otherwise wait for each one before it stops.
            server.force_exit_on_stop()
    emulator.store.close()
