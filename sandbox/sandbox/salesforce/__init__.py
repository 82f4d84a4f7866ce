"""The Salesforce API emulator (see sandbox/SALESFORCE.md)."""

from __future__ import annotations

from sandbox.salesforce.app import create_app

__all__ = ["create_app"]
