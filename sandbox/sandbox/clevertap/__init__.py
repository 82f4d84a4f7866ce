"""The clevertap API emulator."""

from __future__ import annotations
