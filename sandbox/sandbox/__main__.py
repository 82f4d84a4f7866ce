"""Command line: `python -m sandbox clevertap|salesforce|up|down|status|demo`."""

from __future__ import annotations

import argparse
import sys


def _add_clevertap(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("clevertap", help="serve the CleverTap API emulator")
    p.add_argument("--port", type=int, default=8901)
    p.add_argument("--db", default=None, help="SQLite file (default: a temporary file)")
    p.add_argument("--account-id", default="SANDBOX-ACCOUNT")
    p.add_argument("--passcode", default="SANDBOX-PASSCODE")
    p.add_argument("--timezone", default="UTC", help="account time zone, IANA name")
    p.add_argument(
        "--tls", action="store_true", help="serve HTTPS with the sandbox test CA"
    )
    p.add_argument("--seed", action="store_true", help="seed engagement data at start")
    p.add_argument(
        "--seed-value", type=int, default=1, help="the seed integer for --seed"
    )
    p.add_argument(
        "--max-event-properties",
        type=int,
        default=None,
        help="properties allowed per event (default 100)",
    )


def _add_salesforce(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("salesforce", help="serve the Salesforce API emulator")
    p.add_argument("--port", type=int, default=8902)
    p.add_argument("--db", default=None, help="SQLite file (default: a temporary file)")
    p.add_argument(
        "--tls", action="store_true", help="serve HTTPS with the sandbox test CA"
    )
    p.add_argument("--no-seed", action="store_true", help="start with an empty org")


def main(argv: list[str] | None = None) -> int:
    """Dispatch a sandbox command.

    Args:
        argv: the arguments (default: `sys.argv[1:]`).

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_clevertap(sub)
    _add_salesforce(sub)
    for name, text in (
        ("up", "start both emulators and the CONNECT proxy in the background"),
        ("down", "stop what `up` started"),
        ("status", "report what is running"),
        ("demo", "run both pipelines end to end on the sandbox"),
    ):
        sub.add_parser(name, help=text)
    args = parser.parse_args(argv)

    if args.command == "clevertap":
        from sandbox.clevertap.cli import run  # noqa: PLC0415 - import only the chosen emulator

        return run(args)
    if args.command == "salesforce":
        from sandbox.salesforce.cli import run  # noqa: PLC0415 - import only the chosen emulator

        return run(args)
    from sandbox.control import run_command  # noqa: PLC0415 - heavy imports only when needed

    return run_command(args.command)


if __name__ == "__main__":
    sys.exit(main())
