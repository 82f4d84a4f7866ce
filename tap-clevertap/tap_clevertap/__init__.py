"""Singer tap that extracts CleverTap engagement data."""

from __future__ import annotations
