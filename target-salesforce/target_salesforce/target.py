"""TargetSalesforce: records into Salesforce objects or Apex REST endpoints."""

from __future__ import annotations

from singer_sdk import typing as th
from singer_sdk.target_base import Target

from target_salesforce.sinks import SalesforceSink


class TargetSalesforce(Target):
    """Write Singer records into Salesforce with simple-salesforce."""

    name = "target-salesforce"
    config_jsonschema = th.PropertiesList(
        th.Property(
            "client_id", th.StringType, description="Connected app consumer key."
        ),
        th.Property(
            "client_secret",
            th.StringType,
            secret=True,
            description="Connected app consumer secret.",
        ),
    ).to_dict()
    default_sink_class = SalesforceSink
