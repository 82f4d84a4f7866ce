"""TapCleverTap: CleverTap engagement data as Singer streams."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from tap_clevertap.client import DEFAULT_REGION, REGION_HOSTS
from tap_clevertap.records import (
    STRING,
    EventShape,
    ProfileShape,
    event_stream_names,
    infer_types,
    parse_property_list,
    profile_column_types,
    profile_values,
)
from tap_clevertap.streams import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_WINDOW_DAYS,
    MESSAGE_FILTERS,
    CampaignReportsStream,
    CampaignsStream,
    EventCountsStream,
    EventSchemaStream,
    EventsStream,
    EventTrendsStream,
    MessageReportsStream,
    ProfilesStream,
    UserPropertiesStream,
    event_property_types,
)
from tap_clevertap.timeutil import load_zone

if TYPE_CHECKING:
    from singer_sdk.streams import Stream

MAX_BATCH_SIZE = 5000
# Export records read per event to type its properties during discovery.
SAMPLE_SIZE = 200
# System events CleverTap never exports through the API (only S3/GCS exports);
# left out of discovery when `event_names` is empty.
NOT_EXPORTABLE_EVENTS = frozenset(
    {
        "Notification Sent",
        "Notification Viewed",
        "Notification Clicked",
        "Notification Delivered",
        "Notification Replied",
    }
)
_MESSAGE_FILTER_VALUES = {
    "message_report_channels": [
        "push",
        "email",
        "sms",
        "browser",
        "audiences",
        "inapp",
        "webhooks",
        "web_pop_up",
        "web_exit_intent",
        "web_native_display",
        "web_inbox",
    ],
    "message_report_delivery": [
        "one_time",
        "inaction",
        "action",
        "recurring",
        "property_time",
        "api",
    ],
    "message_report_status": ["scheduled", "running", "stopped", "completed"],
    "message_report_message_types": ["single", "ab", "message_on_user_property"],
    "message_report_labels": None,
}


def _filter_property(setting: str) -> th.Property[Any]:
    allowed = _MESSAGE_FILTER_VALUES[setting]
    items = th.StringType(allowed_values=allowed) if allowed else th.StringType()
    return th.Property(
        setting,
        th.ArrayType(items),
        description=(
            f"Message reports: only these `{MESSAGE_FILTERS[setting]}` values "
            "(empty: no filter)."
        ),
    )


class TapCleverTap(Tap):
    """Extract CleverTap events, profiles, campaigns, reports and counts."""

    name = "tap-clevertap"
    message_writer_class = MsgSpecWriter
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
            description="CleverTap account passcode (sent only as a request header).",
        ),
        th.Property(
            "region",
            th.StringType(allowed_values=list(REGION_HOSTS)),
            default=DEFAULT_REGION,
            description=(
                "Account region: eu1 uses https://api.clevertap.com, the others "
                "https://<region>.api.clevertap.com."
            ),
        ),
        th.Property(
            "api_url",
            th.URIType,
            description="Base URL overriding `region` (e.g. a local emulator).",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            required=True,
            description=(
                "Extract data from this instant on (ISO 8601; without an offset "
                "it is UTC)."
            ),
        ),
        th.Property(
            "end_date",
            th.DateTimeType,
            description="Extract data before this instant (default: now).",
        ),
        th.Property(
            "timezone",
            th.StringType,
            default="UTC",
            description=(
                "The account's time zone (IANA name, e.g. Asia/Kolkata): exported "
                "`ts` values and day filters are in it."
            ),
        ),
        th.Property(
            "event_names",
            th.ArrayType(th.StringType),
            description=(
                "Event names to extract (one stream each). Empty: every exportable "
                "event listed by /getSchema?type=events."
            ),
        ),
        th.Property(
            "lookback_days",
            th.IntegerType(minimum=0),
            default=1,
            description=(
                "Whole local days re-read before the bookmark's day on each run "
                "(catches late-arriving events)."
            ),
        ),
        th.Property(
            "window_days",
            th.IntegerType(minimum=1, maximum=31),
            default=DEFAULT_WINDOW_DAYS,
            description=(
                "Local days per event export window; STATE advances after each "
                "whole window."
            ),
        ),
        th.Property(
            "batch_size",
            th.IntegerType(minimum=1, maximum=MAX_BATCH_SIZE),
            default=DEFAULT_BATCH_SIZE,
            description="Records per export page (at most 5000; CleverTap advises "
            "multiples of 23).",
        ),
        th.Property(
            "include_app_fields",
            th.BooleanType,
            default=False,
            description="Ask exports for OS, device and app-version profile fields.",
        ),
        th.Property(
            "campaign_lookahead_days",
            th.IntegerType(minimum=0),
            default=365,
            description="Days after today swept for scheduled campaigns.",
        ),
        *(_filter_property(setting) for setting in MESSAGE_FILTERS),
        th.Property(
            "message_report_daily",
            th.BooleanType,
            default=False,
            description="Message reports: ask for the day-wise split.",
        ),
        th.Property(
            "request_timeout",
            th.IntegerType(minimum=1),
            default=300,
            description="Seconds to wait for one HTTP response.",
        ),
    ).to_dict()

    @functools.cached_property
    def _schema_listings(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The events and userProperties entries of /getSchema (fetched once)."""
        events = EventSchemaStream(self).fetch()
        user_properties = UserPropertiesStream(self).fetch()
        return events, user_properties

    @functools.cached_property
    def event_names(self) -> list[str]:
        """The configured event names, else every exportable discovered one."""
        configured = self.config.get("event_names") or []
        if configured:
            return list(dict.fromkeys(str(name) for name in configured))
        events, _ = self._schema_listings
        return sorted(
            {
                str(entry["name"])
                for entry in events
                if str(entry["name"]) not in NOT_EXPORTABLE_EVENTS
                and entry.get("exportable", True) is not False
            }
        )

    def _catalog_schema(self, stream_name: str) -> dict[str, Any] | None:
        entry = (
            self.input_catalog.get_stream(stream_name) if self.input_catalog else None
        )
        return entry.schema.to_dict() if entry is not None else None

    def _samples(self, names: list[str]) -> dict[str, list[dict[str, Any]]]:
        sampler = EventSchemaStream(self)
        return {name: sampler.sample(name, SAMPLE_SIZE) for name in names}

    @override
    def discover_streams(self) -> list[Stream]:
        """Build every stream; event streams get discovered, typed columns.

        Column types come from, in order: the input catalog (a saved discovery),
        the properties ``/getSchema`` lists, or one sample page of each event.
        """
        try:
            load_zone(str(self.config.get("timezone") or "UTC"))
        except ValueError as exc:
            raise ConfigValidationError(str(exc), errors=[str(exc)]) from exc
        events, user_property_entries = self._schema_listings
        by_name = {str(entry["name"]): entry for entry in events}
        names = self.event_names
        stream_names = event_stream_names(names)
        catalog = {name: self._catalog_schema(stream_names[name]) for name in names}
        listed = {name: event_property_types(by_name.get(name, {})) for name in names}
        to_sample = [n for n in names if catalog[n] is None and not listed[n]]
        profiles_schema = self._catalog_schema(ProfilesStream.name)
        if profiles_schema is None and not to_sample:
            to_sample = names
        samples = self._samples(to_sample)
        # Every listed user property gets a column: typed as /getSchema says, else
        # as the samples suggest, else string.
        profile_types = dict.fromkeys(
            parse_property_list(user_property_entries), STRING
        )
        profile_types.update(
            infer_types(
                profile_values(row.get("profile") or {})
                for rows in samples.values()
                for row in rows
            )
        )
        profile_types.update(
            parse_property_list(
                [e for e in user_property_entries if e.get("type") or e.get("dataType")]
            )
        )
        profile_types = profile_column_types(profile_types)
        streams: list[Stream] = []
        for name in names:
            schema = catalog[name]
            shape = (
                EventShape.from_schema(name, schema)
                if schema is not None
                else EventShape.build(
                    name,
                    listed[name]
                    or infer_types(
                        row.get("event_props") or {} for row in samples[name]
                    ),
                    profile_types,
                )
            )
            streams.append(
                EventsStream(self, stream_name=stream_names[name], shape=shape)
            )
        profile_shape = (
            ProfileShape.from_schema(profiles_schema)
            if profiles_schema is not None
            else ProfileShape.build(profile_types)
        )
        streams.extend(
            [
                ProfilesStream(self, shape=profile_shape, event_names=names),
                CampaignsStream(self),
                CampaignReportsStream(self),
                MessageReportsStream(self),
                EventCountsStream(self, event_names=names),
                EventTrendsStream(self, event_names=names),
                EventSchemaStream(self),
                UserPropertiesStream(self),
            ]
        )
        return streams
