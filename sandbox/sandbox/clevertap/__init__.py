"""The CleverTap API emulator: `create_app()` builds it, `testing` runs it in tests."""

from __future__ import annotations

from sandbox.clevertap.app import create_app

__all__ = ["create_app"]
