"""Profile streams: the profiles behind the configured events, user properties."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from typing_extensions import override

from tap_clevertap.client import ExportNotAllowedError
from tap_clevertap.streams import SchemaListingStream, WindowedStream
from tap_clevertap.timeutil import local_date, yyyymmdd

if TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_clevertap.profile_records import ProfileShape


class ProfilesStream(WindowedStream):
    """Profiles of everyone who raised one of the configured events (full table)."""

    name = "profiles"
    path = "/1/profiles.json"
    primary_keys: ClassVar[tuple[str, ...]] = ("object_id",)
    replication_key = None

    def __init__(
        self, tap: Tap, *, shape: ProfileShape, event_names: list[str]
    ) -> None:
        """Build the stream over `event_names`."""
        self.shape = shape
        self.event_names = event_names
        super().__init__(tap, schema=shape.schema())

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        first_day = local_date(self.range_start(None), self.zone)
        params = {
            "batch_size": int(self.config["batch_size"]),
            "events": "true",
            "profile": "true",
            "app": "true" if self.config.get("include_app_fields") else "false",
        }
        seen: set[str] = set()
        missing_id = 0
        for event_name in self.event_names:
            body = {
                "event_name": event_name,
                "from": yyyymmdd(first_day),
                "to": yyyymmdd(self.last_day()),
            }
            try:
                for raw in self.walk_cursor(self.path, body, params, context):
                    record = self.shape.record(raw, self.zone)
                    if record is None:
                        missing_id += 1
                    elif record["object_id"] not in seen:
                        seen.add(record["object_id"])
                        yield record
            except ExportNotAllowedError:
                self.warn_not_exportable(event_name)
        if missing_id:
            self.logger.warning("Skipped %d profiles without an objectId", missing_id)


class UserPropertiesStream(SchemaListingStream):
    """Profile (user) properties."""

    name = "user_properties"
    schema_type = "userProperties"
