"""TapCleverTap: CleverTap engagement data as Singer streams."""

from __future__ import annotations

import functools
import io
import json
import sys
from typing import IO, TYPE_CHECKING, Any

import requests
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import (
    ConfigValidationError,
    FatalAPIError,
    RetriableAPIError,
)
from typing_extensions import override

from tap_clevertap import preflight
from tap_clevertap.campaign_streams import (
    MESSAGE_FILTERS,
    CampaignReportsStream,
    CampaignsStream,
    MessageReportsStream,
)
from tap_clevertap.client import (
    BACKOFF_BASE_SECONDS,
    DEFAULT_REGION,
    MAX_BACKOFF_SECONDS,
    MAX_TRIES,
    REGION_HOSTS,
)
from tap_clevertap.event_records import EventShape
from tap_clevertap.event_streams import (
    EventCountsStream,
    EventSchemaStream,
    EventsStream,
    EventTrendsStream,
)
from tap_clevertap.profile_records import (
    ProfileShape,
    profile_column_types,
    profile_values,
)
from tap_clevertap.profile_streams import ProfilesStream, UserPropertiesStream
from tap_clevertap.records import (
    STRING,
    event_stream_names,
    infer_types,
    parse_property_list,
)
from tap_clevertap.streams import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_WINDOW_DAYS,
    BadBookmarkError,
    bad_bookmark,
    event_property_types,
    parse_datetime_setting,
)
from tap_clevertap.timeutil import load_zone

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping

    import click
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


# Errors that end a sync: logged as one line at the CLI, exit code 1.
_STOPPING_ERRORS = (
    FatalAPIError,
    RetriableAPIError,
    requests.exceptions.RequestException,
    BadBookmarkError,
)


def settings_errors(config: Mapping[str, Any]) -> list[str]:
    """Problems in settings that JSON Schema validation lets through.

    Args:
        config: the tap config.

    Returns:
        One message per problem, each naming its setting.
    """
    errors: list[str] = []
    moments: dict[str, dt.datetime] = {}
    for key in ("start_date", "end_date"):
        value = config.get(key)
        if value is None:
            continue
        try:
            moments[key] = parse_datetime_setting(value)
        except ValueError:
            errors.append(
                f"{key}: {value!r} is not an ISO 8601 date or date-time "
                "(e.g. 2024-01-31 or 2024-01-31T00:00:00Z)"
            )
    if len(moments) == 2 and moments["end_date"] <= moments["start_date"]:  # noqa: PLR2004 - both dates
        errors.append("end_date: must be later than start_date")
    zone = config.get("timezone")
    try:
        if zone:  # when absent, the schema's default (UTC) applies
            load_zone(str(zone))
    except ValueError as exc:
        errors.append(f"timezone: {exc}")
    return errors


def _checked_state(state: IO[str]) -> IO[str]:
    """The --state file, re-opened as text once it proved to be a JSON object.

    Exits with one error line naming the file when it is not.
    """
    name = getattr(state, "name", "<state>")
    text = state.read()
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        problem = f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    else:
        if isinstance(value, dict):
            return io.StringIO(text if text.strip() else "{}")
        problem = f"holds a JSON {type(value).__name__}, not an object"
    TapCleverTap.logger.error(
        "tap-clevertap stopped: the state file %s %s", name, problem
    )
    sys.exit(1)


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
        th.Property(
            "max_retries",
            th.IntegerType(minimum=1, maximum=20),
            default=MAX_TRIES,
            description="Attempts per request on 429, 5xx, timeouts, connection "
            "errors and 'still in progress' answers (1: no retry).",
        ),
        th.Property(
            "backoff_base_seconds",
            th.NumberType(minimum=0),
            default=BACKOFF_BASE_SECONDS,
            description="First wait before a retry, in seconds; each further wait "
            "doubles, randomised down to half of it.",
        ),
        th.Property(
            "backoff_max_seconds",
            th.NumberType(minimum=0),
            default=MAX_BACKOFF_SECONDS,
            description="Longest wait between two attempts, in seconds.",
        ),
    ).to_dict()

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """The SDK's JSON Schema checks, then what a schema cannot say.

        Dates must parse (the schema's ``format`` is not enforced), `end_date`
        must follow `start_date` and `timezone` must be an IANA name: a mistake
        there stops the run at start-up, not midway through a sync.
        """
        errors = super()._validate_config(raise_errors=raise_errors)
        extra = settings_errors(self.config)
        if extra and raise_errors:
            msg = "Config validation failed"
            raise ConfigValidationError(msg, errors=[*errors, *extra])
        for error in extra:
            self.logger.warning("Config validation error: %s", error)
        return [*errors, *extra]

    @override
    def load_state(self, state: dict[str, Any]) -> None:
        """Load the input state, then check the bookmarks the sync will read.

        An unreadable bookmark stops the run before any record or STATE is
        written, naming the stream and the value.
        """
        super().load_state(state)
        if state.get("bookmarks"):
            self.check_bookmarks()

    def check_bookmarks(self) -> None:
        """Every date-time bookmark of a selected stream must parse.

        Raises:
            BadBookmarkError: one does not.
        """
        bookmarks = self.state.get("bookmarks") or {}
        for name, stream in self.streams.items():
            entry = bookmarks.get(name)
            if (
                not isinstance(entry, dict)
                or not stream.selected
                or not stream.is_timestamp_replication_key
            ):
                continue
            for state in [entry, *(entry.get("partitions") or [])]:
                value = state.get("replication_key_value")
                if value is None:
                    continue
                try:
                    parse_datetime_setting(value)
                except ValueError as exc:
                    raise bad_bookmark(name, value, "date-time") from exc

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        """The SDK's command plus `--preflight` (see tap_clevertap.preflight)."""
        command = super().get_singer_command()
        return preflight.with_option(command, cls.config_jsonschema)

    @classmethod
    @override
    def invoke(cls, *args: Any, state: IO[str] | None = None, **kwargs: Any) -> None:
        """Run the CLI; a stopping error ends with one line on stderr and exit 1.

        A ``--state`` file that is not a JSON object is reported by name before
        anything runs. API failures that end the sync (wrong credentials, a
        repeating cursor, retries used up) and unreadable bookmarks are logged as
        one line, without a traceback; no STATE is written past them.
        """
        if state is not None:
            state = _checked_state(state)
        try:
            super().invoke(*args, state=state, **kwargs)
        except _STOPPING_ERRORS as exc:
            retried = isinstance(
                exc, RetriableAPIError | requests.exceptions.RequestException
            ) and not isinstance(exc, requests.exceptions.SSLError)  # never retried
            cause = f"gave up after max_retries attempts: {exc}" if retried else exc
            cls.logger.error("tap-clevertap stopped: %s", cause)  # noqa: TRY400 - the message says it all; a traceback would only add noise
            sys.exit(1)

    @functools.cached_property
    def _event_listing(self) -> list[dict[str, Any]] | None:
        """The events entries of /getSchema (fetched once), None if refused."""
        return EventSchemaStream(self).fetch_or_warn()

    @functools.cached_property
    def _user_property_listing(self) -> list[dict[str, Any]] | None:
        """The userProperties entries of /getSchema (fetched once), None if refused."""
        return UserPropertiesStream(self).fetch_or_warn()

    @functools.cached_property
    def event_names(self) -> list[str]:
        """The configured event names, else every exportable discovered one.

        Raises:
            FatalAPIError: no `event_names` and CleverTap refused the listing.
        """
        configured = self.config.get("event_names") or []
        if configured:
            return list(dict.fromkeys(str(name) for name in configured))
        events = self._event_listing
        if events is None:
            msg = (
                "CleverTap refused /getSchema?type=events, the only source of the "
                "event names when event_names is not set (see the WARNING above); "
                "set event_names to the events to export"
            )
            raise FatalAPIError(msg)
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
        ``/getSchema`` is asked only when `event_names` is not set or a column
        type is not in the catalog; a refusal is a WARNING where the samples can
        stand in.
        """
        try:
            load_zone(str(self.config["timezone"]))
        except ValueError as exc:
            raise ConfigValidationError(str(exc), errors=[str(exc)]) from exc
        names = self.event_names
        stream_names = event_stream_names(names)
        catalog = {name: self._catalog_schema(stream_names[name]) for name in names}
        profiles_schema = self._catalog_schema(ProfilesStream.name)
        # /getSchema only types columns the input catalog does not give; when
        # CleverTap refuses it, the samples type them instead.
        must_type = profiles_schema is None or None in catalog.values()
        events = (self._event_listing or []) if must_type else []
        user_property_entries = (self._user_property_listing or []) if must_type else []
        by_name = {str(entry["name"]): entry for entry in events}
        listed = {name: event_property_types(by_name.get(name, {})) for name in names}
        to_sample = [n for n in names if catalog[n] is None and not listed[n]]
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
