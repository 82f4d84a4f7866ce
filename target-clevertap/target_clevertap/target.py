"""TargetCleverTap: records into CleverTap profiles and events."""

from __future__ import annotations

from singer_sdk import typing as th
from singer_sdk.target_base import Target

from target_clevertap.sinks import CleverTapSink


class TargetCleverTap(Target):
    """Load Singer records into CleverTap profiles and events through the Upload API."""

    name = "target-clevertap"
    config_jsonschema = th.PropertiesList(
        th.Property(
            "account_id",
            th.StringType,
            required=True,
            description="CleverTap account (project) ID.",
        ),
        th.Property(
            "passcode",
            th.StringType,
            required=True,
            secret=True,
            description="CleverTap account passcode.",
        ),
    ).to_dict()
    default_sink_class = CleverTapSink
