"""TargetCleverTap: records into CleverTap profiles and events."""

from __future__ import annotations

import gc
import sys
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any

import msgspec
from singer_sdk import typing as th
from singer_sdk.contrib import msgspec as sdk_msgspec
from singer_sdk.exceptions import (
    ConfigValidationError,
    InvalidJSONSchema,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.target_base import Target
from typing_extensions import override

from target_clevertap import identity_join, preflight, readahead, stopping
from target_clevertap.client import REGION_HOSTS, CleverTapError
from target_clevertap.loader import Loader
from target_clevertap.mapping import StreamMapping, referenced_objects
from target_clevertap.mapping_load import MappingError, load_mappings
from target_clevertap.payloads import account_zone
from target_clevertap.refs import ComputedReferences, own_identity_patterns
from target_clevertap.sinks import CleverTapSink
from target_clevertap.stopping import StoppableReader

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import FrameType

    import click

    from target_clevertap.loader import Loader as LoaderType


class CleverTapReader(StoppableReader):
    """The SDK's msgspec reader, reporting a bad line as one clear error.

    The SDK's reader logs a traceback and the whole (possibly huge) line. A piped
    standard input is read ahead on a thread (readahead.py), so the tap is not
    held up while a window is built. A signal or an error ends the reading as
    stopping.py says (`on_stop`: the target stops its uploads).
    """

    @override
    def input_lines(self, file_input: IO[str] | None) -> Iterable[str]:
        if file_input is None and readahead.is_pipe(sys.stdin.buffer):
            return readahead.ReadAhead(sys.stdin.buffer)
        return super().input_lines(file_input)

    @override
    def deserialize_json(self, line: str) -> dict[str, Any]:
        try:
            result: dict[str, Any] = sdk_msgspec.decoder.decode(line)
        except msgspec.DecodeError as exc:
            msg = f"Unable to parse line as JSON ({exc}; {len(line)} characters)"
            raise InvalidInputLine(msg) from exc
        return result


_GC_GEN1_THRESHOLD = 100
_GC_GEN2_THRESHOLD = 1000
#: records read between checks for streams the input moved away from
_IDLE_CHECK_EVERY = 250

_STOPPING_ERRORS = (
    CleverTapError,
    InvalidInputLine,
    InvalidJSONSchema,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)


class TargetCleverTap(Target):
    """Load Singer records (e.g. tap-salesforce) into CleverTap profiles and events.

    Records are mapped per stream to profile upserts and/or events, typed for
    CleverTap ($D_ dates, E.164 phones, multi-values), uploaded concurrently with
    retries, and settled durably: per-record rejects go to a 0600 JSONL file and an
    event ledger in `state_dir` guarantees no event is sent twice.
    """

    name = "target-clevertap"
    message_reader_class = CleverTapReader
    default_sink_class = CleverTapSink
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
            description="CleverTap account passcode (sent only in the auth header).",
        ),
        th.Property(
            "region",
            th.StringType,
            default="eu1",
            allowed_values=list(REGION_HOSTS),
            description="Account region: eu1 -> api.clevertap.com, others -> "
            "<region>.api.clevertap.com.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            description="Overrides the region's API base URL (tests, proxies).",
        ),
        th.Property(
            "mappings",
            th.CustomType({"type": ["object", "string", "null"]}),
            description="Inline per-stream mappings (object, or JSON/YAML text); "
            "wins over mappings_file for the same stream. See the README.",
        ),
        th.Property(
            "mappings_file",
            th.StringType,
            description="Path of a YAML/JSON mappings file "
            "(e.g. transforms/salesforce_to_clevertap.yml).",
        ),
        th.Property(
            "batch_size",
            th.IntegerType(minimum=1, maximum=1000),
            default=1000,
            description="Upload records per request (CleverTap allows at most 1000).",
        ),
        th.Property(
            "max_concurrency",
            th.IntegerType(minimum=1, maximum=15),
            default=8,
            description="Upload requests in flight (CleverTap allows 15 per account).",
        ),
        th.Property(
            "request_timeout",
            th.NumberType(minimum=1),
            default=60,
            description="Seconds to wait for connect and for each reply.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=1, maximum=20),
            default=8,
            description="Attempts per request on 429, 5xx and unsent-connection "
            "errors (exponential backoff with jitter).",
        ),
        th.Property(
            "identity_lookup",
            th.StringType,
            default="none",
            allowed_values=list(identity_join.MODES),
            description="`email`: before the first profile of a person the identity "
            "map has never seen, look the record's Email up in CleverTap (Get User "
            "Profile API); one match: write to that profile from then on; several: "
            "reject (identity_ambiguous); none: create the profile as usual. "
            "`none`: no lookups.",
        ),
        th.Property(
            "identity_lookup_rate",
            th.NumberType(minimum=1),
            default=10,
            description="Profile lookups per second at most (never more than 3 at "
            "once, CleverTap's limit for its read APIs).",
        ),
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            description="Validate and build every payload, write them to "
            "dry_run_path, upload nothing (and emit no STATE).",
        ),
        th.Property(
            "dry_run_remote",
            th.BooleanType,
            default=False,
            description="Send every batch with dryRun=1: CleverTap validates it and "
            "stores nothing; its would-be rejects are reported like a real run's "
            "(no ledger, no STATE, no profile deletes).",
        ),
        th.Property(
            "max_request_bytes",
            th.IntegerType(minimum=10_000),
            default=1_048_576,
            description="Upload request body bytes at most; larger batches are "
            "split (CleverTap documents no limit; 1 MiB passes common proxies).",
        ),
        th.Property(
            "reconcile_lag_seconds",
            th.NumberType(minimum=0),
            default=120,
            description="How long an accepted event may take to show in Get Events. "
            "An event whose reply was lost (or an HTTP 5xx but 503) is only resent "
            "once a check this long after sending did not find it.",
        ),
        th.Property(
            "reconcile_checks",
            th.IntegerType(minimum=1, maximum=50),
            default=5,
            description="Get Events reads spread over reconcile_lag_seconds when "
            "settling events of unknown fate; what stays unknown is in doubt.",
        ),
        th.Property(
            "skip_events_older_than_days",
            th.NumberType(minimum=0),
            description="Skip (and count in the summary) events older than this "
            "many days; unset: send every event whatever its age.",
        ),
        th.Property(
            "account_custom_profile_keys",
            th.IntegerType(minimum=0, maximum=256),
            default=0,
            description="Custom profile property keys already in the account that "
            "this target did not send (CleverTap allows 256 per account).",
        ),
        th.Property(
            "account_event_names",
            th.IntegerType(minimum=0, maximum=512),
            default=0,
            description="Event names already in the account that this target did "
            "not send (CleverTap allows 512 per account).",
        ),
        th.Property(
            "dry_run_path",
            th.StringType,
            default="target-clevertap-dry-run.jsonl",
            description="Where dry_run writes one JSON line per upload record.",
        ),
        th.Property(
            "rejects_path",
            th.StringType,
            default="target-clevertap-rejects.jsonl",
            description="JSON lines {stream, key, code, message, field, record} for "
            "every rejected record (file mode 0600).",
        ),
        th.Property(
            "on_reject",
            th.StringType,
            default="continue",
            allowed_values=["continue", "fail"],
            description="continue: write rejects and go on; fail: stop at the first.",
        ),
        th.Property(
            "max_reject_ratio",
            th.NumberType(minimum=0, maximum=1),
            description="Fail the run (no STATE) when rejected/received exceeds this.",
        ),
        th.Property(
            "deleted_records",
            th.StringType,
            default="ignore",
            allowed_values=["ignore", "delete_profile", "event"],
            description="What an IsDeleted=true row does: nothing, delete the "
            "profile (/1/delete/profiles.json), or send a '<stream> Deleted' event.",
        ),
        th.Property(
            "null_values",
            th.StringType,
            default="skip",
            allowed_values=["skip", "send"],
            description="skip: a null never wipes a CleverTap value; send: send nulls.",
        ),
        th.Property(
            "oversize_values",
            th.StringType,
            default="truncate",
            allowed_values=["truncate", "reject"],
            description="Keys over 120 bytes, values over 512 bytes, multi-values "
            "over 100 items: truncate with a warning, or reject the record.",
        ),
        th.Property(
            "max_event_properties",
            th.IntegerType(minimum=2, maximum=256),
            default=100,
            description="Properties allowed per event (CleverTap: 100 by default, "
            "configurable per account); extra ones are cut (oversize_values).",
        ),
        th.Property(
            "default_phone_country",
            th.StringType,
            description="ISO country (e.g. US, IN) for phone numbers without '+'.",
        ),
        th.Property(
            "timezone",
            th.StringType,
            default="UTC",
            description="The account's time zone (IANA name, e.g. Asia/Kolkata), "
            "as in the CleverTap dashboard and tap-clevertap's `timezone`: date-only "
            "values (Birthdate, CloseDate...) are sent as midnight of their day in it.",
        ),
        th.Property(
            "state_dir",
            th.StringType,
            default=".target-clevertap",
            description="Directory of the state store (event ledger, identity map, "
            "change tracking, caps; one SQLite file per namespace, 0600) when "
            "state_url is not set; keep it across runs.",
        ),
        th.Property(
            "state_url",
            th.StringType,
            secret=True,
            description="postgresql://user:password@host:port/database: keep the "
            "state store in PostgreSQL instead of state_dir (for workers whose "
            "disk does not survive the run). Unset: SQLite in state_dir.",
        ),
        th.Property(
            "state_namespace",
            th.StringType(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$"),
            description="Name of this job's store: the PostgreSQL schema, or the "
            "SQLite file target-clevertap-<namespace>.sqlite. Default: the account "
            "id. Jobs with different namespaces never share state; runs of one "
            "namespace must not overlap.",
        ),
        th.Property(
            "summary_path",
            th.StringType,
            description="Also write the run summary (per stream, totals, the state "
            "store and whether it was new) to this JSON file (mode 0600).",
        ),
        th.Property(
            "event_key_property",
            th.StringType,
            default="ct_event_key",
            description="Event property carrying the deterministic event key used "
            "for duplicate protection and reconciliation.",
        ),
    ).to_dict()

    @override
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.clevertap_sinks: list[CleverTapSink] = []
        self._dry_run_state_warned = False
        self._held_state: dict[str, Any] | None = None
        #: RECORD messages read so far (sinks note it: see _flush_idle_sinks)
        self.records_read = 0
        super().__init__(*args, **kwargs)
        # sinks share one upload pool; draining them one at a time keeps
        # profiles-before-events order across streams and bounds concurrency
        self.max_parallelism = 1
        try:
            self.mappings: dict[str, StreamMapping] = load_mappings(
                self.config.get("mappings"), self.config.get("mappings_file")
            )
        except MappingError as exc:
            raise ConfigValidationError(str(exc), errors=[str(exc)]) from exc
        try:
            account_zone(self.config.get("timezone"))
        except ValueError as exc:
            raise ConfigValidationError(str(exc), errors=[str(exc)]) from exc
        url = self.config.get("state_url")
        if url and not str(url).startswith(("postgresql://", "postgres://")):
            # the value is a secret: the message never shows it
            msg = "state_url must be a postgresql:// URL"
            raise ConfigValidationError(msg, errors=[msg])
        self.loader: LoaderType = Loader(
            self.config, self.logger, referenced_objects(self.mappings.values())
        )
        self.loader.refs.computed = ComputedReferences.from_mappings(self.mappings)
        self.loader.joins.own_patterns = own_identity_patterns(self.mappings.values())
        if isinstance(self.message_reader, CleverTapReader):
            self.message_reader.on_stop = self._stop_uploads
            # a first signal also ends the waits of event reconciliation
            self.loader.ctx.stop_asked = self.message_reader.stop_reading

    def _stop_uploads(self) -> None:
        """Reading stopped on an error: windows not started send nothing.

        The upload threads outlive the main thread's error (the interpreter
        waits for them at exit), so the windows still waiting would upload
        after the run reported its failure; the ones uploading now finish.
        """
        self.loader.dispatch.pipeline.close()

    def _check_reject_ratio(self) -> None:
        ratio = self.config.get("max_reject_ratio")
        if ratio is None:
            return
        totals = self.loader.counters.totals()
        if totals["received"] and totals["rejected"] / totals["received"] > ratio:
            msg = (
                f"{totals['rejected']} of {totals['received']} records rejected, "
                f"over max_reject_ratio {ratio}; see the rejects file"
            )
            raise CleverTapError(msg)

    @override
    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        super()._process_record_message(message_dict)
        self.records_read += 1
        if self.records_read % self._idle_check_every == 0:
            self._flush_idle_sinks()

    @override
    def _process_schema_message(self, message_dict: dict[str, Any]) -> None:
        new_stream = message_dict.get("stream") not in self.mapper.stream_maps
        super()._process_schema_message(message_dict)
        if new_stream and self.loader.overlaps_uploads:
            # a tap starts its next stream: the others' last windows go now
            self._flush_idle_sinks(0)

    @cached_property
    def _idle_check_every(self) -> int:
        if not self.loader.overlaps_uploads:  # windows fill up or wait for the end
            return 2**62
        return max(1, min(self.loader.ctx.batch_size, _IDLE_CHECK_EVERY))

    def _flush_idle_sinks(self, idle: int | None = None) -> None:
        """Hand over the windows of streams the input has moved away from.

        Taps write their streams one after the other: a stream's last, partly
        filled window would otherwise wait for the end of input, and its
        uploads (and the events that need its profiles) with it. Such a window
        is handed over when the next stream's SCHEMA arrives (`idle` 0), or
        once its sink got no record while a window's worth of other records
        were read (taps that send every SCHEMA first), so at the end of input
        little more than the last stream's last window is left to upload.
        Live runs only; a sink is drained the second way at most once per
        window's worth of records read.

        Args:
            idle: records read since a sink's last record that make it idle
                (None: its window size).
        """
        read = self.records_read
        for sink in self.clevertap_sinks:
            after = sink.max_size if idle is None else idle
            if sink.window_records and read - sink.read_at >= after:
                self.drain_one(sink)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM or Ctrl-C: end the input, then a second one stops (stopping.py)."""
        del frame
        stopping.on_signal(self.message_reader, self.logger, self.name, signum)

    def hand_over_profiles_first(self, sink: CleverTapSink) -> None:
        """Hand over other streams' profile windows before `sink`'s events window.

        The pipeline orders a window after the windows handed over before it: a
        person whose profile still waits in another stream's partly filled
        window (streams interleaved, or small windows) must be handed over
        first, so that the events naming them wait for it (profiles before
        the events that need them). Live runs only.

        Args:
            sink: the sink whose window is about to be handed over.
        """
        if self.loader.ctx.any_dry_run:
            return
        for other in self.clevertap_sinks:
            if (
                other is not sink
                and not other.draining
                and other.window_records
                and other.makes_profiles
            ):
                self.drain_one(other)

    @override
    def _write_state_message(self, state: dict[str, Any]) -> None:
        if self.loader.ctx.any_dry_run:
            if not self._dry_run_state_warned:
                self.logger.info("dry run: STATE is not emitted")
                self._dry_run_state_warned = True
            return
        # every window before this STATE settled (raises when one failed)
        self.loader.drain()
        if any(sink.deferred for sink in self.clevertap_sinks):
            self.logger.info("STATE held back: records wait for their person")
            self._held_state = state
            return
        self._held_state = None
        self._check_reject_ratio()
        super()._write_state_message(state)

    def _settle_deferred(self) -> None:
        """Retry records waiting for a person until no more resolve; reject the rest."""
        pending = [sink for sink in self.clevertap_sinks if sink.deferred]
        progress = True
        while pending and progress:
            progress = False
            for sink in pending:
                before = len(sink.deferred)
                sink.deferred = self.loader.process_window(sink.deferred, final=False)
                progress = progress or len(sink.deferred) < before
            pending = [sink for sink in pending if sink.deferred]
        for sink in pending:
            self.loader.refs.register_unresolved(sink.deferred)
        for sink in pending:
            sink.deferred = self.loader.process_window(sink.deferred, final=True)

    @override
    def process_endofpipe(self) -> None:
        try:
            super().process_endofpipe()
            self._settle_deferred()
            if self._held_state is not None:
                self._write_state_message(self._held_state)
            self.loader.drain()
            self._check_reject_ratio()
        finally:
            self.loader.dispatch.pipeline.close()  # the summary counts every window
            self.loader.counters.log_summary()
            self.loader.close()

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        """The SDK's command plus `--preflight` (see target_clevertap.preflight)."""
        command = super().get_singer_command()
        return preflight.with_option(command, cls.config_jsonschema)

    @classmethod
    @override
    def invoke(cls, *args: Any, **kwargs: Any) -> None:
        # The records of a window and the identity caches are many long-lived
        # containers without reference cycles; with the default thresholds the
        # cyclic collector walks them again and again (a fifth of the CPU time
        # on 100k records, bench P1). Full collections are made rarer;
        # reference counting still frees whatever the target drops.
        gc.set_threshold(gc.get_threshold()[0], _GC_GEN1_THRESHOLD, _GC_GEN2_THRESHOLD)
        try:
            super().invoke(*args, **kwargs)
        except _STOPPING_ERRORS as exc:
            # one clear line instead of a traceback; no STATE was written past it
            cls.logger.error("target-clevertap stopped: %s", exc)  # noqa: TRY400 - the message says it all
            sys.exit(1)
