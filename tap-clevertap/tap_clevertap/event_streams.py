"""Event streams: one export stream per event name, daily counts and trends."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import typing as th
from typing_extensions import override

from tap_clevertap.client import ExportNotAllowedError
from tap_clevertap.streams import (
    CAMPAIGN_WINDOW_DAYS,
    SchemaListingStream,
    WindowedStream,
    bad_bookmark,
    count_or_none,
    parse_datetime_setting,
)
from tap_clevertap.timeutil import day_windows, local_date, month_windows, yyyymmdd

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_clevertap.event_records import EventShape


class EventsStream(WindowedStream):
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
            "batch_size": int(self.config["batch_size"]),
            "events": "false",
            "profile": "true",
            "app": "true" if self.config.get("include_app_fields") else "false",
        }
        unreadable = 0
        for window in day_windows(
            start=start,
            end=end,
            zone=self.zone,
            days_per_window=int(self.config["window_days"]),
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


class _PerEventDailyStream(WindowedStream):
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
            lookback = int(self.config["lookback_days"])
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
                "count": count_or_none(payload.get("count")),
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
                    "count": count_or_none(series.get(str(yyyymmdd(day)), 0)),
                }
                day += dt.timedelta(days=1)


class EventSchemaStream(SchemaListingStream, WindowedStream):
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
