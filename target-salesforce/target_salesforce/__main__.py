"""Run `python -m target_salesforce`."""

from __future__ import annotations

from target_salesforce.target import TargetSalesforce

TargetSalesforce.cli()
