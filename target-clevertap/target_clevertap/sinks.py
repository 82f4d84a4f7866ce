"""The CleverTap sink: validates, maps and hands batch windows to the loader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from singer_sdk.sinks import BatchSink
from typing_extensions import override

from target_clevertap.loader import Entry
from target_clevertap.mapping import default_mapping
from target_clevertap.payloads import SchemaInfo, record_key
from target_clevertap.validation import RejectingValidator

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

    @property
    @override
    def max_size(self) -> int:
        if self.batch_size_rows is not None:
            return self.batch_size_rows
        return self.loader.ctx.batch_size * self.loader.ctx.max_concurrency

    @property
    @override
    def current_size(self) -> int:
        # deferred records count, so the end-of-input drain reaches them
        return super().current_size + len(self.deferred)

    @property
    @override
    def is_full(self) -> bool:
        return super().current_size >= self.max_size

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

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
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
