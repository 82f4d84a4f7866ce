"""`python -m sandbox salesforce`: serve the emulator in the foreground."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.salesforce.app import create_app
from sandbox.salesforce.auth import ensure_key_pair
from sandbox.server import serve_forever
from sandbox.tls import ensure_tls_files

if TYPE_CHECKING:
    import argparse

# The org's My Domain when the sandbox serves the real hostnames through its proxy.
DEFAULT_INSTANCE_URL = "https://sandbox.my.salesforce.com"
STATE_DIR = Path(".sandbox")


def run(args: argparse.Namespace) -> int:
    """Serve the emulator until interrupted.

    `SANDBOX_SALESFORCE_INSTANCE_URL` overrides the `instance_url` handed out by the
    token endpoint; `SANDBOX_SALESFORCE_SEED` picks the seed size (default `demo`).
    The JWT bearer key pair is kept in `.sandbox/salesforce/`.

    Args:
        args: the parsed command line (`--port`, `--db`, `--tls`, `--no-seed`).

    Returns:
        The exit code.
    """
    _key_path, cert_path = ensure_key_pair(STATE_DIR / "salesforce")
    seed = None if args.no_seed else os.environ.get("SANDBOX_SALESFORCE_SEED", "demo")
    instance_url = os.environ.get(
        "SANDBOX_SALESFORCE_INSTANCE_URL", DEFAULT_INSTANCE_URL
    )
    app = create_app(
        db_path=args.db,
        seed=seed,
        instance_url=instance_url,
        jwt_certificate_pem=cert_path.read_bytes(),
    )
    cert = key = None
    if args.tls:
        files = ensure_tls_files(STATE_DIR / "tls")
        cert, key = str(files.server_cert), str(files.server_key)
    scheme = "https" if args.tls else "http"
    sys.stderr.write(
        f"Salesforce emulator on {scheme}://127.0.0.1:{args.port} "
        f"(instance_url {instance_url})\n"
    )
    serve_forever(app, args.port, ssl_certfile=cert, ssl_keyfile=key)
    return 0
