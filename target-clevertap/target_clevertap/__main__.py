"""Run `python -m target_clevertap`."""

from __future__ import annotations

from target_clevertap.target import TargetCleverTap

TargetCleverTap.cli()
