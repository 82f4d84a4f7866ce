"""Shared parts of the CleverTap streams: sync ranges, bookmarks, listings.

The streams themselves are split by resource: `event_streams` (one stream per
event, daily counts and trends, the event schema), `profile_streams` (profiles,
user properties) and `campaign_streams` (campaigns, their reports, message
reports). `tap.py` registers them.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import typing as th
from singer_sdk.exceptions import FatalAPIError
from typing_extensions import override

from tap_clevertap.client import CleverTapStream, CredentialsError
from tap_clevertap.records import json_or_none, parse_property_list, scalar_str
from tap_clevertap.timeutil import UTC, local_date, local_midnight

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
    from singer_sdk.helpers.types import Context

DEFAULT_BATCH_SIZE = 4991  # the largest multiple of 23 under 5000 (CleverTap advice)
CAMPAIGN_WINDOW_DAYS = 31
DEFAULT_WINDOW_DAYS = 7


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


def count_or_none(value: object) -> int | None:
    """A count from an answer: a number as int, anything else (bool too) None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


class WindowedStream(CleverTapStream):
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
        lookback = int(self.config["lookback_days"])
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

        With `batch_config` the records of the window may still sit in a batch file
        that no BATCH message has announced yet (the SDK collects them, then writes
        BATCH and only then STATE). Then the window's bookmark is only noted here
        and promoted by `get_batches` once the batch holding it has been sent.
        """
        state = self.get_context_state(context)
        markers = state.get("progress_markers") or {}
        if "replication_key_value" not in markers:
            return
        if self.get_batch_config(self.config) is not None:
            self._sent_bookmark = self._sent_bookmark or state.get(
                "replication_key_value"
            )
            self._unsent_bookmark = self._later(
                self._unsent_bookmark, str(markers.pop("replication_key_value"))
            )
            # Nothing left for the SDK to promote when the stream ends, which it
            # does before the last batch file is written: until `get_batches` moves
            # it, the state (also what a SIGTERM writes) keeps the sent bookmark.
            markers.pop("replication_key", None)
            return
        # Keep the SDK's "not resumable" note so the next window does not log its
        # unsorted-stream warning again.
        note = {k: v for k, v in markers.items() if not k.startswith("replication_")}
        previous = state.get("replication_key_value")
        self.state_manager.finalize_state(state)
        if note:
            state["progress_markers"] = note
        state["replication_key_value"] = self._later(
            previous, state["replication_key_value"]
        )
        self._write_state_message()

    _sent_bookmark: str | None = None
    _unsent_bookmark: str | None = None

    def _later(self, previous: object, value: str) -> str:
        """`value`, or `previous` if it is later (a lookback never moves it back)."""
        if not previous:
            return value
        try:
            earlier = parse_datetime_setting(previous)
        except ValueError as exc:
            raise bad_bookmark(self.name, previous, "date-time") from exc
        return str(previous) if earlier > parse_datetime_setting(value) else value

    @override
    def get_batches(
        self, batch_config: BatchConfig, context: Context | None = None
    ) -> Iterator[tuple[BaseBatchFileEncoding, list[str]]]:
        """The SDK's batches; after each, the windows it completed are bookmarked.

        The SDK writes a BATCH message, then STATE, for each batch yielded here. A
        window checkpointed while this batch was filled has all its records in it
        or in an earlier one, so its bookmark may go into that STATE. A failed run
        never wrote a STATE past records it did not send. The last window can end
        exactly on a batch boundary: its bookmark is set after the last batch, for
        the STATE the SDK writes when the stream ends.
        """
        for encoding, manifest in super().get_batches(batch_config, context):
            self._promote_sent_windows(context)
            yield encoding, manifest
        self._promote_sent_windows(context)

    def _promote_sent_windows(self, context: Context | None) -> None:
        if self._unsent_bookmark is None:
            return
        state = self.get_context_state(context)
        value = self._later(self._sent_bookmark, self._unsent_bookmark)
        state["replication_key"] = self.replication_key
        state["replication_key_value"] = value
        self._sent_bookmark = value
        self._unsent_bookmark = None
        self.state_manager.is_flushed = False


class SchemaListingStream(CleverTapStream):
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

    def fetch_or_warn(self) -> list[dict[str, Any]] | None:
        """The entries, or None with a WARNING when CleverTap refuses the call.

        ``/getSchema`` is not in CleverTap's public API reference, so an account
        may refuse it (a 4xx, or a ``"status": "fail"`` body). Wrong credentials
        (401) still stop the run.
        """
        try:
            return self.fetch()
        except CredentialsError:
            raise
        except FatalAPIError as exc:
            self.logger.warning(
                "CleverTap refused /getSchema?type=%s (%s); going on without that "
                "listing",
                self.schema_type,
                exc,
            )
            return None

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        for entry in self.fetch_or_warn() or []:
            yield {
                "name": str(entry["name"]),
                "type": scalar_str(entry.get("type") or entry.get("dataType")),
                "entry_json": json_or_none(entry),
            }
