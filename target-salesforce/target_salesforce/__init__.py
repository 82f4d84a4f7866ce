"""Singer target that writes records into Salesforce with simple-salesforce."""

from __future__ import annotations
