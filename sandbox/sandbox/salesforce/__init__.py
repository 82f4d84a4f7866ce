"""The salesforce API emulator."""

from __future__ import annotations
