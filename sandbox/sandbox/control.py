"""`python -m sandbox up|down|status|demo`: the background sandbox and the demo."""

from __future__ import annotations


def run_command(command: str) -> int:
    """Run a control command (not built yet).

    Args:
        command: one of up, down, status, demo.

    Returns:
        The exit code.
    """
    msg = f"`python -m sandbox {command}` is not built yet"
    raise SystemExit(msg)
