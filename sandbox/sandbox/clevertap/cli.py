"""`python -m sandbox clevertap`: serve the emulator in the foreground."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.clevertap.app import create_app
from sandbox.server import serve_forever
from sandbox.tls import ensure_tls_files

if TYPE_CHECKING:
    import argparse


def run(args: argparse.Namespace) -> int:
    """Serve the emulator on 127.0.0.1 until interrupted.

    Args:
        args: the parsed command line (port, db, account_id, passcode, timezone,
            tls, seed, and optionally seed_value, max_event_properties).

    Returns:
        The exit code.
    """
    options: dict[str, Any] = {}
    max_props = getattr(args, "max_event_properties", None)
    if max_props is not None:
        options["max_event_properties"] = max_props
    if args.seed:
        options["seed_params"] = {
            "seed": getattr(args, "seed_value", 1),
            # app users sharing emails with the Salesforce emulator's sample org
            # (the same size: SANDBOX_SALESFORCE_SEED, default demo)
            "crm_people": os.environ.get("SANDBOX_SALESFORCE_SEED") or "demo",
        }
    app = create_app(
        db_path=args.db,
        account_id=args.account_id,
        passcode=args.passcode,
        timezone=args.timezone,
        **options,
    )
    cert = key = None
    if args.tls:
        files = ensure_tls_files(Path(".sandbox/tls"))
        cert, key = str(files.server_cert), str(files.server_key)
    serve_forever(app, args.port, ssl_certfile=cert, ssl_keyfile=key)
    return 0
