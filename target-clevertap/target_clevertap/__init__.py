"""Singer target that loads records into CleverTap profiles and events."""

from __future__ import annotations
