"""TapCleverTap: CleverTap engagement data as Singer streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

from singer_sdk import Tap
from singer_sdk import typing as th
from typing_extensions import override

if TYPE_CHECKING:
    from singer_sdk.streams import Stream


class TapCleverTap(Tap):
    """Extract CleverTap events, profiles, campaigns, reports and counts."""

    name = "tap-clevertap"
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

    @override
    def discover_streams(self) -> list[Stream]:
        """No streams yet (issue 4 fills them)."""
        return []
