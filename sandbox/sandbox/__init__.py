"""Local stand-ins for the CleverTap and Salesforce APIs (tests, bench, demo)."""

from __future__ import annotations
