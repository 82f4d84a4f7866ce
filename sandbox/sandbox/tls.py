"""The sandbox's test certificate authority, made with trustme.

One CA and one server certificate cover every hostname the emulators answer for
(the real CleverTap and Salesforce hostnames, plus 127.0.0.1 and localhost). They are
written once to a directory (`.sandbox/tls/` for the background sandbox, a pytest tmp
dir in tests) and reused.
`bundle.pem` holds the system CAs plus the test CA, for REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import certifi
import trustme

SERVER_HOSTNAMES = (
    "login.salesforce.com",
    "test.salesforce.com",
    "*.my.salesforce.com",
    "*.sandbox.my.salesforce.com",
    "api.clevertap.com",
    "*.api.clevertap.com",
    "localhost",
    "127.0.0.1",
)


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """Paths of the test CA, the server certificate chain and key, and the CA bundle."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    bundle: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when an earlier file had wider permissions
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_tls_files(directory: Path) -> TLSFiles:
    """Create the test CA and server certificate in `directory` unless they exist.

    Args:
        directory: where the PEM files live.

    Returns:
        The paths of the files.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server-chain.pem",
        server_key=directory / "server-key.pem",
        bundle=directory / "bundle.pem",
    )
    if all(p.exists() for p in dataclasses.astuple(files)):
        return files
    ca = trustme.CA(organization_name="CleverTap-Salesforce sandbox test CA")
    leaf = ca.issue_cert(*SERVER_HOSTNAMES)
    ca_pem = ca.cert_pem.bytes()
    files.ca_cert.write_bytes(ca_pem)
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    files.server_cert.write_bytes(chain)
    _write_private(files.server_key, leaf.private_key_pem.bytes())
    system = Path(certifi.where()).read_bytes()
    files.bundle.write_bytes(system.rstrip(b"\n") + b"\n" + ca_pem)
    return files
