"""`python -m sandbox salesforce`: serve the emulator in the foreground."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def run(args: argparse.Namespace) -> int:
    """Serve the emulator (not built yet).

    Args:
        args: the parsed command line.

    Returns:
        The exit code.
    """
    del args
    msg = "the salesforce emulator is not built yet"
    raise SystemExit(msg)
