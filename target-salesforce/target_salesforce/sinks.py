"""Sinks: one per mapped stream (sObject or Apex REST), one for unmapped streams.

`process_batch` returns only when every record of the batch is settled (written,
or rejected with a reason in the rejects file). A fatal error raises out of it, so
the SDK never writes a STATE that covers unsettled records. Records that were not
written because of a transport problem are never rejected: they are "not loaded",
the run stops and a rerun loads them. A record that does not match its stream's
schema is rejected (code INVALID_RECORD, naming the field) when it arrives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from singer_sdk.exceptions import InvalidRecord
from singer_sdk.sinks import BatchSink
from typing_extensions import override

from target_salesforce import bulk
from target_salesforce.apex_sink import ApexWrites
from target_salesforce.bulk_sink import BulkWrites
from target_salesforce.collections_sink import CollectionsWrites
from target_salesforce.describe import check_mapping_against_describe, parse_describe
from target_salesforce.errors import (
    CODE_APEX_ERROR,
    SendIncompleteError,
    TargetSalesforceError,
)
from target_salesforce.exprlang import ExpressionError
from target_salesforce.journal_sink import BatchJournal
from target_salesforce.payloads import (
    Prepared,
    apex_calls,
    prepare_apex_batch,
    prepare_batch,
)
from target_salesforce.rejects import StreamSummary, reject_entry
from target_salesforce.validation import (
    CODE_INVALID_RECORD,
    CompiledValidator,
    describe_invalid,
)
from target_salesforce.values import (
    CODE_MISSING_KEY,
    MISSING,
    get_path,
    json_safe,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from target_salesforce.describe import FieldInfo
    from target_salesforce.mapping import ApexSpec, StreamMapping
    from target_salesforce.payloads import LocalReject
    from target_salesforce.results import ItemResult
    from target_salesforce.run_context import RunContext
    from target_salesforce.target import TargetSalesforce


# an invalid record held until its batch settles: (record, message, fields)
Held = tuple[dict[str, Any], str, list[str]]


class _CompiledValidation(BatchSink):
    """Shared by both sinks: compiled validation and the summary at the end."""

    MAX_SIZE_DEFAULT = 10000

    run: RunContext
    stream_mapping: StreamMapping | None
    summary: StreamSummary
    # set by _validate_and_parse for the record that process_record gets next
    invalid: InvalidRecord | None = None

    def __init__(
        self,
        target: TargetSalesforce,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: Sequence[str] | None,
    ) -> None:
        """Remember the run context and open the stream's summary."""
        super().__init__(target, stream_name, schema, key_properties)
        self.run = target.run
        self.stream_mapping = self.run.mapping_for(stream_name)
        self.summary = self.run.summary(
            stream_name, self.summary_label(self.stream_mapping), self
        )

    @staticmethod
    def summary_label(mapping: StreamMapping | None) -> str:
        """What the stream goes to, for the run summary."""
        raise NotImplementedError

    @override
    def _validate_and_parse(self, record: dict[str, Any]) -> dict[str, Any]:
        """Validate without raising: an invalid record is rejected, not fatal.

        The SDK validates each record right before `process_record` (one record
        at a time, in the reading thread), so the outcome is kept for that call.
        """
        self.invalid = None
        if self._validator is not None:
            try:
                self._validator.validate(record)
            except InvalidRecord as exc:
                self.invalid = exc
                return record
        self._parse_timestamps_in_record(
            record=record, schema=self.schema, treatment=self.datetime_error_treatment
        )
        return record

    @override
    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """The compiled validator, or None when validation is off."""
        if not self.validate_schema:
            return None
        return CompiledValidator(
            self.schema, validate_formats=self.validate_field_string_format
        )

    @override
    def clean_up(self) -> None:
        """Log the stream's run summary (and update the summary file).

        A sink replaced after a schema change leaves it to the stream's
        current sink, which holds the same (whole-stream) summary.
        """
        if self.run.is_current_sink(self.stream_name, self):
            self.run.log_summary(self.logger, self.summary)
        self.run.write_summary_file()
        super().clean_up()


class SkippedStreamSink(_CompiledValidation):
    """A stream with no mapping, or switched off: records are counted, not written."""

    @staticmethod
    @override
    def summary_label(mapping: StreamMapping | None) -> str:
        """Switched off by its mapping, or not mapped at all."""
        return "(skip: true)" if mapping is not None else "(unmapped: skipped)"

    @override
    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        """Count the record (valid or not); nothing is kept."""
        self.invalid = None
        self.summary.received += 1

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        """Nothing to write."""


class SalesforceSink(BulkWrites, ApexWrites, CollectionsWrites, _CompiledValidation):
    """Write one stream to an sObject (Collections or Bulk 2.0) or Apex REST."""

    def __init__(
        self,
        target: TargetSalesforce,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: Sequence[str] | None,
    ) -> None:
        """Find the stream's mapping; describe checks run in `setup`."""
        super().__init__(target, stream_name, schema, key_properties)
        mapping = self.stream_mapping
        if mapping is None:  # pragma: no cover - summary_label refused it already
            msg = f"stream {stream_name!r} has no mapping"
            raise TargetSalesforceError(msg)
        self.mapping: StreamMapping = mapping
        self.fields: dict[str, FieldInfo] = {}
        cfg = self.config
        self.null_policy = mapping.null_policy or cfg["null_policy"]
        self.duplicate_policy = mapping.duplicate_keys or cfg["duplicate_keys"]
        threshold = mapping.bulk_threshold
        self.bulk_threshold = int(
            threshold if threshold is not None else cfg["bulk_threshold"]
        )
        self.allow_duplicate_save = cfg["duplicate_rules"] == "allow_save"
        size = int(cfg["collections_batch_size"])
        self.collection_size = max(1, min(size, 200))
        self.max_retries = int(cfg["max_retries"])
        # raw CSV bytes per Bulk job upload (a module constant, small in tests)
        self.bulk_max_bytes = bulk.MAX_UPLOAD_BYTES
        # invalid records, rejected when their batch settles
        self._held: list[Held] = []

    @override
    def clean_up(self) -> None:
        """Settle everything still out; the summary (and STATE) come after."""
        self._settle_now(self._take_held())
        super().clean_up()

    @staticmethod
    @override
    def summary_label(mapping: StreamMapping | None) -> str:
        """`apex:<path>` or `<sObject>:<action>`.

        Raises:
            TargetSalesforceError: for a stream with no mapping (get_sink_class
                routes those to SkippedStreamSink).
        """
        if mapping is None:  # pragma: no cover - get_sink_class routes these
            msg = "a stream with no mapping cannot be written"
            raise TargetSalesforceError(msg)
        if mapping.apex:
            return f"apex:{mapping.apex.path}"
        return f"{mapping.sobject}:{mapping.action}"

    @override
    def setup(self) -> None:
        """Check the mapping against the object's describe before any write."""
        if self.mapping.mode != "sobject":
            return
        describe = self.run.client.describe(str(self.mapping.sobject))
        self.fields = parse_describe(describe)
        check_mapping_against_describe(
            self.mapping,
            self.fields,
            self.schema.get("properties", {}),
            related=lambda name: parse_describe(self.run.client.describe(name)),
        )

    # ------------------------------------------------------------------ batches

    @override
    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        """Queue a valid record; reject one that does not match its schema.

        An entry with `when` (a second entry reading another stream) keeps only
        the records its condition lets through; the others are not its records.
        Rejects of invalid records are written when their batch settles (at
        once with on_reject `fail`, after the batches still in flight), so the
        reject policy sees whole batches.
        """
        invalid, self.invalid = self.invalid, None
        when = self.mapping.when
        if when is not None:
            try:
                if not when(record, config=self.config.get("stream_map_config")):
                    return
            except ExpressionError as exc:
                self.summary.received += 1
                self._held.append((record, f"when {when.text!r}: {exc}", []))
                return
        if invalid is None:
            super().process_record(record, context)
            context.setdefault("seqs", []).append(self.run.seq)
            return
        self.summary.received += 1
        message, fields = describe_invalid(invalid)
        self._held.append((record, message, fields))
        if self.config["on_reject"] == "fail":
            # the run stops here: the batches sent before this record settle
            # first, so the rejects file keeps the input order
            self.run.inflight.stop()
            self._settle_held(self._take_held())
            self._enforce_reject_policy()

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        """Write the batch; settle it now, or (Bulk) once its jobs are done.

        A Bulk batch joins the run's batches in flight (`run.inflight`), which
        settle in the order sent; any other batch first waits for all of them,
        so records are settled in input order either way.
        """
        records: list[dict[str, Any]] = context.get("records", [])
        held = self._take_held()
        self.summary.received += len(records)
        apex = self.mapping.apex
        if not records:
            self._settle_now(held)
        elif apex is not None:  # apex mode, and only apex mode
            self._settle_now(held)
            self._process_apex(records, apex)
        elif self._process_sobject(records, held, context.get("seqs", [])):
            return  # a Bulk batch in flight: judged when it settles
        self._enforce_reject_policy()

    def _take_held(self) -> list[Held]:
        held, self._held = self._held, []
        return held

    def _settle_held(self, held: list[Held]) -> None:
        for record, message, fields in held:
            self._reject(record, None, CODE_INVALID_RECORD, message, fields)

    def _settle_now(self, held: list[Held]) -> None:
        """Settle every batch in flight (any stream), then `held`."""
        self.run.inflight.settle_all()
        self._settle_held(held)

    def _process_sobject(
        self, records: list[dict[str, Any]], held: list[Held], seqs: list[int]
    ) -> bool:
        """Send the batch; True when it went out as a Bulk batch in flight."""
        mapping = self.mapping
        items, local = prepare_batch(
            records,
            mapping,
            self.fields,
            self.null_policy,
            self.duplicate_policy,
            now=self.run.started_at,
        )

        def settle_local() -> None:  # records refused before sending
            self._settle_held(held)
            self._settle_local(records, local)

        journal, known = BatchJournal.start(self, seqs, items)
        use_bulk = len(items) - len(known) > self.bulk_threshold
        if use_bulk and not self.run.dry_run:
            self._submit_bulk(records, items, settle_local, known, journal)
            return True
        self.run.inflight.settle_all()
        settle_local()
        if not items:
            return False
        if self.run.dry_run:
            self._dry_run("bulk2" if use_bulk else "collections", items)
            return False
        try:
            results = self._send_around(
                items, known, lambda chosen: self._send_collections(chosen, journal)
            )
        except SendIncompleteError as exc:
            self._settle_known(records, items, exc)
        self._settle(records, items, results)
        return False

    def _settle_local(
        self, records: list[dict[str, Any]], local: list[LocalReject]
    ) -> None:
        """Records refused before sending: not linked, or rejected with a reason."""
        for rej in local:
            if self._is_not_linked(rej.code):
                self._not_linked(records[rej.index], rej.fields)
                continue
            self._reject(records[rej.index], rej.key, rej.code, rej.message, rej.fields)

    def _process_apex(self, records: list[dict[str, Any]], apex: ApexSpec) -> None:
        items, local = prepare_apex_batch(records, self.mapping)
        self._settle_local(records, local)
        if self.run.dry_run:
            self._dry_run("apex", items)
            return
        for path, body, call_items in apex_calls(items, self.mapping):
            results = self._apex_call(apex.method, path, body, len(call_items))
            if (
                len(call_items) > 1
                and apex.isolate_errors
                and all(r.code == CODE_APEX_ERROR for r in results)
            ):
                results = self._apex_one_by_one(apex, path, call_items)
            self._settle(records, call_items, results)

    # ------------------------------------------------------------------ outcomes

    def _settle_known(
        self,
        records: list[dict[str, Any]],
        items: Sequence[Prepared],
        stop: SendIncompleteError,
    ) -> NoReturn:
        """Settle the items whose outcome is known, then stop the run (no STATE).

        A send that stops part-way (a later call refused, the quota reached,
        retries used up) still counts and rejects what Salesforce answered for
        its earlier calls, so those outcomes are not lost with the run.

        Raises:
            BaseException: what stopped the send.
        """
        known = [(i, r) for i, r in zip(items, stop.results, strict=True) if r]
        self._settle(records, [i for i, _ in known], [r for _, r in known])
        raise stop.fatal() from None

    def _settle(
        self,
        records: list[dict[str, Any]],
        items: Sequence[Prepared],
        results: Sequence[ItemResult],
    ) -> None:
        apex = self.mapping.mode == "apex"
        for item, result in zip(items, results, strict=True):
            for index in item.inputs:
                if result.success:
                    self.summary.succeeded += 1
                    if result.already_inserted:  # by an earlier run
                        self.summary.already_inserted += 1
                    elif result.created is True:
                        self.summary.created += 1
                    elif result.created is False:
                        self.summary.updated += 1
                else:
                    self._reject(
                        records[index],
                        None if apex else item.key,  # an Apex item key is its path
                        str(result.code),
                        str(result.message or ""),
                        list(result.fields),
                        result.matches,
                    )

    def _record_key(self, record: Mapping[str, Any]) -> str | None:
        if self.mapping.mode == "apex":
            # the stream's key properties name the record (an Apex call has no key)
            values = [record.get(k) for k in self.key_properties or ()]
            if not values or all(v is None for v in values):
                return None
            return "/".join("" if v is None else str(v) for v in values)
        key_field = self.mapping.key_field
        for spec in self.mapping.fields:
            if spec.target == key_field and spec.source:
                value = get_path(record, spec.source)
                return None if value is MISSING or value is None else str(value)
        if key_field and key_field in record:
            return str(record[key_field])
        return None

    def _reject(  # noqa: PLR0913, PLR0917 - one argument per reject column
        self,
        record: Mapping[str, Any],
        key: str | None,
        code: str,
        message: str,
        fields: Sequence[str],
        matches: Sequence[str] = (),
    ) -> None:
        self.summary.rejected += 1
        self.summary.codes[code] += 1
        self.run.write_reject(
            reject_entry(
                stream=self.stream_name,
                sobject=self.mapping.sobject,
                action=self.mapping.action
                if self.mapping.mode == "sobject"
                else "apex",
                key=key if key is not None else self._record_key(record),
                code=code,
                message=message,
                fields=fields,
                record=record,
                matches=matches,
            )
        )

    def _is_not_linked(self, code: str) -> bool:
        """A missing key that the mapping calls "not linked" (not an error)."""
        return code == CODE_MISSING_KEY and self.mapping.on_missing_key == "not_linked"

    def _not_linked(self, record: Mapping[str, Any], fields: Sequence[str]) -> None:
        """Count a record with no Salesforce record to write, and list it."""
        self.summary.not_linked += 1
        entry = reject_entry(
            stream=self.stream_name,
            sobject=self.mapping.sobject,
            action=self.mapping.action if self.mapping.mode == "sobject" else "apex",
            key=None,
            code="NOT_LINKED",
            message="no Salesforce record to write (on_missing_key: not_linked)",
            fields=fields,
            record=record,
        )
        self.run.write_not_linked(entry)

    def _dry_run(self, api: str, items: Sequence[Prepared]) -> None:
        mapping = self.mapping
        for item in items:
            self.summary.dry_run += len(item.inputs)
            self.run.write_dry_run(
                {
                    "stream": self.stream_name,
                    "object": mapping.sobject,
                    "action": mapping.action if mapping.mode == "sobject" else "apex",
                    "api": api,
                    "path": item.key if mapping.mode == "apex" else None,
                    "key": item.key if mapping.mode == "sobject" else None,
                    "inputs": len(item.inputs),
                    "payload": json_safe(item.payload),
                }
            )

    def _enforce_reject_policy(self) -> None:
        summary = self.summary
        if not summary.rejected:
            return
        codes = ", ".join(f"{c}={n}" for c, n in sorted(summary.codes.items()))
        if self.config["on_reject"] == "fail":
            self.run.inflight.stop()  # the batches still out are settled first
            msg = (
                f"stream {self.stream_name}: {summary.rejected} records rejected "
                f"({codes}) and on_reject is 'fail'; see {self.run.rejects_path}"
            )
            raise TargetSalesforceError(msg)
        ratio = self.config.get("max_reject_ratio")
        if ratio is not None and summary.reject_ratio > float(ratio):
            self.run.inflight.stop()
            msg = (
                f"stream {self.stream_name}: reject ratio {summary.reject_ratio:.3f} "
                f"is above max_reject_ratio {float(ratio):g} ({codes}); see "
                f"{self.run.rejects_path}"
            )
            raise TargetSalesforceError(msg)
