"""Run `python -m tap_clevertap`."""

from __future__ import annotations

from tap_clevertap.tap import TapCleverTap

TapCleverTap.cli()
