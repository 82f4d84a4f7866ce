"""The CleverTap sink: validates, maps and hands batch windows to the loader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink
from typing_extensions import override

from target_clevertap.loader import Entry
from target_clevertap.mapping import default_mapping
from target_clevertap.payloads import SchemaInfo, record_key
from target_clevertap.validation import RejectingValidator

#: upload calls' worth of records per window in a live run
LIVE_WINDOW_CALLS = 5

if TYPE_CHECKING:
    from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from target_clevertap.loader import Loader
    from target_clevertap.mapping import StreamMapping
    from target_clevertap.target import TargetCleverTap


class CleverTapSink(BatchSink):
    """Turns a stream's records into CleverTap profiles and events."""

    def __init__(
        self,
        target: TargetCleverTap,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: list[str] | None,
    ) -> None:
        """Create the sink.

        Args:
            target: the target.
            stream_name: the stream.
            schema: its schema.
            key_properties: its key properties.
        """
        self.loader: Loader = target.loader
        self._target_ref = target
        self.deferred: list[Entry] = []
        #: the target's records_read when this sink last got a record
        self.read_at = 0
        self.draining = False  # in process_batch (not drained again meanwhile)
        super().__init__(target, stream_name, schema, key_properties)
        target.clevertap_sinks.append(self)

    @override
    def setup(self) -> None:
        self.schema_info = SchemaInfo.from_schema(self.schema)
        mapping = self._target_ref.mappings.get(self.stream_name)
        self.mapping: StreamMapping | None = mapping or default_mapping(
            self.stream_name, self.schema_info.fields
        )
        if self.mapping is None:
            self.loader.counters.warn_once(
                f"nomap:{self.stream_name}",
                "Stream %s has no mapping and no Email field; its records are "
                "skipped (add it to `mappings` to load it)",
                self.stream_name,
            )
        elif mapping is None:
            self.logger.info(
                "Stream %s has no mapping: default profile keyed on Email",
                self.stream_name,
            )
        self._window_size = self.max_size  # read per record: computed once

    @property
    @override
    def max_size(self) -> int:
        """Records per window.

        A live run hands a window over every `LIVE_WINDOW_CALLS` upload calls'
        worth of records (one call's worth for a stream that only sends events),
        so its uploads start while the input is still read (the pipeline keeps
        many such windows in flight, see pipeline.py). Profile windows are larger:
        consecutive windows that upsert the same people (e.g. Opportunities
        upserting their Contact) upload one after the other; events-only windows
        wait for nothing of their own stream, and a small last window leaves
        little to upload after the end of input. A dry run, or a run with
        `identity_lookup: email` (each window waits for all earlier ones), has
        nothing to overlap and keeps windows of `batch_size * max_concurrency`
        records (fewer per-window costs). `batch_size_rows` overrides both.
        """
        if self.batch_size_rows is not None:
            return self.batch_size_rows
        ctx = self.loader.ctx
        full = ctx.batch_size * ctx.max_concurrency
        if not self.loader.overlaps_uploads:
            return full
        mapping = getattr(self, "mapping", None)
        events_only = mapping is not None and mapping.profile is None
        return min(full, ctx.batch_size * (1 if events_only else LIVE_WINDOW_CALLS))

    @property
    def window_records(self) -> int:
        """Records of the window being filled (deferred ones not counted)."""
        return super().current_size

    @property
    @override
    def current_size(self) -> int:
        # deferred records count, so the end-of-input drain reaches them
        return super().current_size + len(self.deferred)

    @property
    @override
    def is_full(self) -> bool:
        return super().current_size >= self._window_size

    @override
    def get_validator(self) -> BaseJSONSchemaValidator | None:
        if not self.validate_schema:
            return None
        return RejectingValidator(self.schema)

    @override
    def _parse_timestamps_in_record(
        self,
        record: dict[str, Any],
        schema: dict[str, Any],
        treatment: DatetimeErrorTreatmentEnum,
    ) -> None:
        """Leave date strings as they are.

        payloads.py parses date and date-time values once, where it converts them
        to `$D_` (the schema's formats drive it), so the SDK's own pass would only
        cost time; rejects also keep the original text.
        """

    @override
    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        self.read_at = self._target_ref.records_read
        entry = self._intake(record)
        if entry is not None:
            context.setdefault("records", []).append(entry)

    def _intake(self, record: dict[str, Any]) -> Entry | None:
        """Count, check and register one record; None when it is settled already."""
        counters = self.loader.counters
        stream = self.stream_name
        counters.received(stream)
        key = record_key(record, self.key_properties)
        validator = self._validator
        if isinstance(validator, RejectingValidator):
            problem = validator.invalid.pop(id(record), None)
            if problem is not None:
                message, field = problem
                self.loader.rejects.reject(
                    stream,
                    key,
                    code="invalid_record",
                    message=f"schema: {message}",
                    field_name=field,
                    record=record,
                )
                return None
        if self.mapping is None:
            counters.skip(stream, "no_mapping")
            return None
        if self.mapping.skip:
            counters.skip(stream, "mapping_skip")
            return None
        entry = Entry(stream, key, record, self.mapping, self.schema_info)
        self.loader.refs.register_identity(entry)
        self.loader.tracker.track(entry)
        return entry

    @property
    def makes_profiles(self) -> bool:
        """Whether the stream's records upsert profiles."""
        mapping = getattr(self, "mapping", None)
        return mapping is not None and mapping.profile is not None

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        self.draining = True
        try:
            if self.mapping is not None and self.mapping.events:
                # people these events name may wait in another stream's window
                self._target_ref.hand_over_profiles_first(self)
            self._process_window(context)
        finally:
            self.draining = False

    def _process_window(self, context: dict[str, Any]) -> None:
        entries: list[Entry] = list(self.deferred)
        for item in context.get("records", []):
            if isinstance(item, Entry):
                entries.append(item)
            else:  # raw records from BATCH files (the SDK skips process_record)
                entry = self._intake(item)
                if entry is not None:
                    entries.append(entry)
        self.deferred = []
        if not entries:
            return
        # unresolved references wait; the target settles them after the last drain
        self.deferred = self.loader.process_window(entries, final=False)
        if self.deferred:
            self.logger.info(
                "Stream %s: %d records wait for their referenced person",
                self.stream_name,
                len(self.deferred),
            )
