"""CleverTap streams: events (one per name), profiles, campaigns, reports, counts."""

from __future__ import annotations

import datetime as dt
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import typing as th
from typing_extensions import override

from tap_clevertap.client import CleverTapStream, ExportNotAllowedError
from tap_clevertap.records import (
    EventShape,
    ProfileShape,
    canonical_json,
    coerce_datetime,
    json_or_none,
    parse_property_list,
    scalar_str,
    snake,
)
from tap_clevertap.timeutil import (
    UTC,
    day_windows,
    local_date,
    local_midnight,
    month_windows,
    yyyymmdd,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import requests
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context, Record

DEFAULT_BATCH_SIZE = 4991  # the largest multiple of 23 under 5000 (CleverTap advice)
CAMPAIGN_WINDOW_DAYS = 31
DEFAULT_WINDOW_DAYS = 7
# How CleverTap says a campaign has no report yet (HTTP 409, 500 or 200 bodies).
_NO_RESULT_MARKERS = (
    "no result",
    "no report",
    "not been completed",
    "hasn't been completed",
)


class BadBookmarkError(ValueError):
    """A bookmark in the input state that this tap cannot read."""


def parse_datetime_setting(value: object) -> dt.datetime:
    """Read a date or date-time setting as an aware datetime (naive means UTC).

    Raises:
        ValueError: the value is not an ISO 8601 date or date-time.
    """
    moment = dt.datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def bad_bookmark(stream: str, value: object, expected: str) -> BadBookmarkError:
    """The error for an unreadable bookmark of `stream` in the input state."""
    return BadBookmarkError(
        f"the input state's bookmark for stream {stream!r} is {value!r}, not an "
        f"ISO 8601 {expected}; correct or remove that bookmark in the state file"
    )


def schema_entries(payload: object, key: str) -> list[dict[str, Any]]:
    """The entries of a ``/getSchema`` answer under `key`, each as a dict.

    Plain strings become ``{"name": <string>}``.
    """
    raw = payload.get(key) if isinstance(payload, dict) else None
    entries: list[dict[str, Any]] = []
    for item in raw or []:
        if isinstance(item, str):
            entries.append({"name": item})
        elif isinstance(item, dict) and item.get("name"):
            entries.append(item)
    return entries


EVENT_PROPERTY_KEYS = ("properties", "event_props", "eventProperties", "props")


def event_property_types(entry: Mapping[str, Any]) -> dict[str, str]:
    """Property name -> column type of one ``/getSchema?type=events`` entry."""
    for key in EVENT_PROPERTY_KEYS:
        if key in entry:
            return parse_property_list(entry[key])
    return {}


class _WindowedMixin(CleverTapStream):
    """Start/end of the sync range from settings, state and lookback."""

    def range_end(self) -> dt.datetime:
        """`end_date` or now, whichever is earlier."""
        now = dt.datetime.now(UTC)
        if self.config.get("end_date"):
            return min(parse_datetime_setting(self.config["end_date"]), now)
        return now

    def range_start(self, bookmark: dt.datetime | None) -> dt.datetime:
        """Where to start reading.

        `start_date` on a first run; afterwards local midnight of the bookmark's
        day minus `lookback_days`, never before `start_date`.
        """
        start = parse_datetime_setting(self.config["start_date"])
        if bookmark is None or bookmark <= start:
            return start
        lookback = int(self.config.get("lookback_days", 1))
        day = local_date(bookmark, self.zone) - dt.timedelta(days=lookback)
        return max(start, local_midnight(day, self.zone))

    def last_day(self) -> dt.date:
        """The last account-local day the (end-exclusive) range touches."""
        return local_date(self.range_end() - dt.timedelta(microseconds=1), self.zone)

    def today(self) -> dt.date:
        """The account-local date now."""
        return local_date(dt.datetime.now(UTC), self.zone)

    def checkpoint(self, context: Context | None) -> None:
        """Promote the bookmark after a whole window and emit STATE.

        Records of a window are all written before this runs (the SDK writes each
        record before asking for the next), so the bookmark never passes a window
        that was only partly emitted.
        """
        state = self.get_context_state(context)
        markers = state.get("progress_markers") or {}
        if "replication_key_value" not in markers:
            return
        # Keep the SDK's "not resumable" note so the next window does not log its
        # unsorted-stream warning again.
        note = {k: v for k, v in markers.items() if not k.startswith("replication_")}
        previous = state.get("replication_key_value")
        self.state_manager.finalize_state(state)
        if note:
            state["progress_markers"] = note
        # A lookback window ends before the old bookmark: never move it back.
        if previous:
            try:
                earlier = parse_datetime_setting(previous)
            except ValueError as exc:
                raise bad_bookmark(self.name, previous, "date-time") from exc
            if earlier > parse_datetime_setting(state["replication_key_value"]):
                state["replication_key_value"] = previous
        self._write_state_message()


class EventsStream(_WindowedMixin):
    """One CleverTap event name, exported in whole local-day windows."""

    path = "/1/events.json"
    primary_keys: ClassVar[tuple[str, ...]] = ("event_key",)
    replication_key = "ts"
    is_sorted = False

    def __init__(self, tap: Tap, *, stream_name: str, shape: EventShape) -> None:
        """Build the stream for `shape.event_name` under `stream_name`."""
        self.shape = shape
        super().__init__(tap, name=stream_name, schema=shape.schema(), path=self.path)

    def _bookmark(self, context: Context | None) -> dt.datetime | None:
        state = self.get_context_state(context)
        value = state.get("replication_key_value")
        if not value or state.get("replication_key") != self.replication_key:
            return None
        try:
            return parse_datetime_setting(value)
        except ValueError as exc:
            raise bad_bookmark(self.name, value, "date-time") from exc

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        start = self.range_start(self._bookmark(context))
        end = self.range_end()
        params = {
            "batch_size": int(self.config.get("batch_size") or DEFAULT_BATCH_SIZE),
            "events": "false",
            "profile": "true",
            "app": "true" if self.config.get("include_app_fields") else "false",
        }
        unreadable = 0
        for window in day_windows(
            start=start,
            end=end,
            zone=self.zone,
            days_per_window=int(self.config.get("window_days") or DEFAULT_WINDOW_DAYS),
            today=self.today(),
        ):
            body = {
                "event_name": self.shape.event_name,
                "from": yyyymmdd(window.request_from),
                "to": yyyymmdd(window.request_to),
            }
            try:
                for raw in self.walk_cursor(self.path, body, params, context):
                    shaped = self.shape.record(raw, self.zone)
                    if shaped is None:
                        unreadable += 1
                        continue
                    record, moment = shaped
                    if window.contains(moment):
                        yield record
            except ExportNotAllowedError:
                self.warn_not_exportable(self.shape.event_name)
                return
            self.checkpoint(context)
        if unreadable:
            self.logger.warning(
                "Skipped %d %r records whose ts was not a yyyyMMddHHmmss value",
                unreadable,
                self.shape.event_name,
            )


class ProfilesStream(_WindowedMixin):
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
            "batch_size": int(self.config.get("batch_size") or DEFAULT_BATCH_SIZE),
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


class CampaignsStream(_WindowedMixin):
    """Campaigns by scheduled date, in 31-day windows, including future ones."""

    name = "campaigns"
    path = "/1/targets/list.json"
    primary_keys: ClassVar[tuple[str, ...]] = ("id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True, description="Campaign id."),
        th.Property("name", th.StringType),
        th.Property("status", th.StringType),
        th.Property(
            "scheduled_on", th.DateTimeType, description="Scheduled start, in UTC."
        ),
        th.Property(
            "scheduled_on_raw", th.StringType, description="scheduled_on as exported."
        ),
        th.Property("campaign_json", th.StringType, description="The whole entry."),
    ).to_dict()

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        first = local_date(self.range_start(None), self.zone)
        ahead = int(self.config.get("campaign_lookahead_days", 365))
        last = self.today() + dt.timedelta(days=ahead)
        if self.config.get("end_date"):
            last = min(last, self.last_day())
        seen: set[int] = set()
        for chunk_from, chunk_to in month_windows(first, last, CAMPAIGN_WINDOW_DAYS):
            body = {"from": yyyymmdd(chunk_from), "to": yyyymmdd(chunk_to)}
            _, payload = self.call("POST", self.path, body=body, context=context)
            self.fail_on_body(payload, f"the campaign list {body}")
            for target in payload.get("targets") or []:
                record = self._shape(target)
                if record is not None and record["id"] not in seen:
                    seen.add(record["id"])
                    yield record

    def _shape(self, target: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            campaign_id = int(target["id"])
        except (KeyError, TypeError, ValueError):
            return None
        scheduled = target.get("scheduled_on")
        return {
            "id": campaign_id,
            "name": scalar_str(target.get("name")),
            "status": scalar_str(target.get("status")),
            "scheduled_on": (
                coerce_datetime(scheduled, self.zone) if scheduled is not None else None
            ),
            "scheduled_on_raw": scalar_str(scheduled),
            "campaign_json": canonical_json(target),
        }

    @override
    def get_child_context(self, record: Record, context: Context | None) -> Context:
        return {"campaign_id": record["id"]}


CAMPAIGN_METRICS = (
    "sent",
    "delivered",
    "viewed",
    "clicked",
    "converted",
    "failed",
    "bounced",
    "errors",
)


class CampaignReportsStream(CleverTapStream):
    """The report of each campaign; campaigns without a result yet are skipped."""

    name = "campaign_reports"
    path = "/1/targets/result.json"
    parent_stream_type = CampaignsStream
    state_partitioning_keys: ClassVar[list[str]] = []
    primary_keys: ClassVar[tuple[str, ...]] = ("campaign_id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("campaign_id", th.IntegerType, required=True),
        *(th.Property(metric, th.IntegerType) for metric in CAMPAIGN_METRICS),
        th.Property("result_json", th.StringType, description="The whole result."),
    ).to_dict()

    @override
    def tolerated(self, response: requests.Response) -> bool:
        if response.status_code == HTTPStatus.CONFLICT:
            return True
        return _says_no_result(response.text)

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        campaign_id = (context or {})["campaign_id"]
        response, payload = self.call(
            "POST", self.path, body={"id": campaign_id}, context=context
        )
        result = payload.get("result") if isinstance(payload, dict) else None
        if response.status_code >= HTTPStatus.BAD_REQUEST or not isinstance(
            result, dict
        ):
            if (
                response.status_code != HTTPStatus.CONFLICT
                and isinstance(payload, dict)
                and payload.get("status") == "fail"
                and not _says_no_result(str(payload.get("error", "")))
            ):
                self.fail_on_body(payload, f"the report of campaign {campaign_id}")
            self.logger.info("Campaign %s has no report yet; skipped", campaign_id)
            return
        record: dict[str, Any] = {"campaign_id": campaign_id}
        for metric in CAMPAIGN_METRICS:
            record[metric] = _count(result.get(metric))
        record["result_json"] = canonical_json(result)
        yield record


def _says_no_result(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _NO_RESULT_MARKERS)


MESSAGE_FILTERS = {
    "message_report_channels": "channel",
    "message_report_delivery": "delivery",
    "message_report_status": "status",
    "message_report_message_types": "message_type",
    "message_report_labels": "label",
}


class MessageReportsStream(_WindowedMixin):
    """Message reports by send date, in 31-day windows (full table)."""

    name = "message_reports"
    path = "/1/message/report.json"
    primary_keys: ClassVar[tuple[str, ...]] = ("message_id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("message_id", th.StringType, required=True),
        th.Property("message_name", th.StringType),
        th.Property("channel", th.StringType),
        th.Property("delivery", th.StringType),
        th.Property("status", th.StringType),
        th.Property("message_type", th.StringType),
        th.Property("label", th.StringType),
        th.Property("date", th.DateType, description="Send day (account-local)."),
        th.Property("sent", th.IntegerType),
        th.Property("viewed", th.IntegerType),
        th.Property("clicked", th.IntegerType),
        th.Property("daily_json", th.StringType, description="Day-wise split."),
        th.Property("message_json", th.StringType, description="The whole entry."),
    ).to_dict()

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        first = local_date(self.range_start(None), self.zone)
        last = self.last_day()
        filters: dict[str, Any] = {
            api_key: list(self.config[setting])
            for setting, api_key in MESSAGE_FILTERS.items()
            if self.config.get(setting)
        }
        if self.config.get("message_report_daily"):
            filters["daily"] = True
        seen: set[str] = set()
        for chunk_from, chunk_to in month_windows(first, last, CAMPAIGN_WINDOW_DAYS):
            body = {
                "from": str(yyyymmdd(chunk_from)),
                "to": str(yyyymmdd(chunk_to)),
                **filters,
            }
            _, payload = self.call("POST", self.path, body=body, context=context)
            self.fail_on_body(payload, f"the message report {body}")
            for message in payload.get("messages") or []:
                record = shape_message(message)
                if record is not None and record["message_id"] not in seen:
                    seen.add(record["message_id"])
                    yield record


_YYYYMMDD_DIGITS = 8


def _local_day(value: object) -> str | None:
    text = str(value or "")
    if len(text) != _YYYYMMDD_DIGITS or not text.isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
    except ValueError:
        return None


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def shape_message(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """A flat message-report row (keys like ``message id`` become snake_case)."""
    by_key = {snake(str(key)): value for key, value in message.items()}
    message_id = scalar_str(by_key.get("message_id") or by_key.get("id"))
    if message_id is None:
        return None
    record: dict[str, Any] = {"message_id": message_id}
    for key in ("message_name", "channel", "delivery", "status", "message_type"):
        record[key] = scalar_str(by_key.get(key))
    label = by_key.get("label")
    record["label"] = (
        canonical_json(label) if isinstance(label, list) else (scalar_str(label))
    )
    record["date"] = _local_day(by_key.get("date"))
    for metric in ("sent", "viewed", "clicked"):
        record[metric] = _count(by_key.get(metric))
    record["daily_json"] = json_or_none(by_key.get("daily"))
    record["message_json"] = canonical_json(message)
    return record


class _PerEventDailyStream(_WindowedMixin):
    """Daily numbers per configured event; one state partition per event."""

    primary_keys: ClassVar[tuple[str, ...]] = ("event_name", "date")
    replication_key = "date"
    # Rows come in date order, but the lookback re-reads days before the bookmark.
    is_sorted = False

    def __init__(self, tap: Tap, *, event_names: list[str]) -> None:
        """Build the stream over `event_names`."""
        self.event_names = event_names
        super().__init__(tap)

    @override
    @property
    def partitions(self) -> list[dict[str, Any]] | None:
        return [{"event_name": name} for name in self.event_names]

    def day_range(self, context: Context | None) -> tuple[dt.date, dt.date]:
        """First and last local day to read for this partition."""
        first = local_date(self.range_start(None), self.zone)
        state = self.get_context_state(context)
        bookmark = state.get("replication_key_value")
        if bookmark and state.get("replication_key") == self.replication_key:
            lookback = int(self.config.get("lookback_days", 1))
            try:
                day = dt.date.fromisoformat(str(bookmark))
            except ValueError as exc:
                raise bad_bookmark(self.name, bookmark, "date") from exc
            resume = day - dt.timedelta(days=lookback)
            first = max(first, resume)
        return first, self.last_day()


def _daily_counts_schema() -> dict[str, Any]:
    """Schema of the per-event, per-day count streams (a fresh dict each call)."""
    return th.PropertiesList(
        th.Property("event_name", th.StringType, required=True),
        th.Property(
            "date", th.DateType, required=True, description="Account-local day."
        ),
        th.Property("count", th.IntegerType),
    ).to_dict()


class EventCountsStream(_PerEventDailyStream):
    """How many times each configured event happened, per local day."""

    name = "event_counts"
    path = "/1/counts/events.json"
    schema = _daily_counts_schema()

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        event_name = str((context or {})["event_name"])
        first, last = self.day_range(context)
        day = first
        while day <= last:
            body = {
                "event_name": event_name,
                "from": yyyymmdd(day),
                "to": yyyymmdd(day),
            }
            try:
                payload = self.post_and_poll(self.path, body, context)
            except ExportNotAllowedError:
                self.warn_not_exportable(event_name)
                return
            yield {
                "event_name": event_name,
                "date": day.isoformat(),
                "count": _count(payload.get("count")),
            }
            day += dt.timedelta(days=1)


def _daily_series(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Find the ``{"YYYYMMDD": number}`` map in a trends answer."""
    candidates: list[Any] = [payload.get("daily"), payload.get("result")]
    candidates.extend(v for k, v in payload.items() if k not in {"status", "req_id"})
    for candidate in candidates:
        if isinstance(candidate, dict):
            if candidate and all(str(k).isdigit() for k in candidate):
                return candidate
            inner = candidate.get("daily")
            if isinstance(inner, dict):
                return inner
    return {}


class EventTrendsStream(_PerEventDailyStream):
    """Daily trend of each configured event: one row per local day (0 if none)."""

    name = "event_trends"
    path = "/1/counts/trends.json"
    schema = _daily_counts_schema()

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        event_name = str((context or {})["event_name"])
        first, last = self.day_range(context)
        for chunk_from, chunk_to in month_windows(first, last, CAMPAIGN_WINDOW_DAYS):
            body = {
                "event_name": event_name,
                "from": yyyymmdd(chunk_from),
                "to": yyyymmdd(chunk_to),
                "unique": False,
                "groups": {"daily": {"trend_type": "daily"}},
            }
            try:
                payload = self.post_and_poll(self.path, body, context)
            except ExportNotAllowedError:
                self.warn_not_exportable(event_name)
                return
            series = {str(k): v for k, v in _daily_series(payload).items()}
            day = chunk_from
            while day <= chunk_to:
                yield {
                    "event_name": event_name,
                    "date": day.isoformat(),
                    "count": _count(series.get(str(yyyymmdd(day)), 0)),
                }
                day += dt.timedelta(days=1)


class _SchemaStream(CleverTapStream):
    """A ``/getSchema`` listing (full table)."""

    path = "/getSchema"
    primary_keys: ClassVar[tuple[str, ...]] = ("name",)
    replication_key = None
    schema_type: ClassVar[str]
    schema = th.PropertiesList(
        th.Property("name", th.StringType, required=True),
        th.Property("type", th.StringType),
        th.Property("entry_json", th.StringType, description="The whole entry."),
    ).to_dict()

    def fetch(self) -> list[dict[str, Any]]:
        """The entries of this listing."""
        _, payload = self.call("GET", self.path, params={"type": self.schema_type})
        self.fail_on_body(payload, f"/getSchema?type={self.schema_type}")
        return schema_entries(payload, self.schema_type)

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        for entry in self.fetch():
            yield {
                "name": str(entry["name"]),
                "type": scalar_str(entry.get("type") or entry.get("dataType")),
                "entry_json": json_or_none(entry),
            }


class EventSchemaStream(_SchemaStream, _WindowedMixin):
    """Event names (and their properties when CleverTap lists them)."""

    name = "event_schema"
    schema_type = "events"

    def sample(self, event_name: str, size: int) -> list[dict[str, Any]]:
        """Up to `size` export records of `event_name` over the sync range.

        Used by discovery to type each event's properties when ``/getSchema``
        lists only names. Reads one page; an event CleverTap refuses to export
        gives no sample (the sync then skips it with a warning).
        """
        body = {
            "event_name": event_name,
            "from": yyyymmdd(local_date(self.range_start(None), self.zone)),
            "to": yyyymmdd(self.last_day()),
        }
        params = {"batch_size": size, "events": "false", "profile": "true"}
        rows: list[dict[str, Any]] = []
        walk = self.walk_cursor(EventsStream.path, body, params)
        try:
            for raw in walk:
                rows.append(raw)
                if len(rows) >= size:
                    break
        except ExportNotAllowedError:
            return []
        finally:
            walk.close()
        return rows


class UserPropertiesStream(_SchemaStream):
    """Profile (user) properties."""

    name = "user_properties"
    schema_type = "userProperties"
