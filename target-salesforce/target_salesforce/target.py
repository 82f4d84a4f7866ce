"""TargetSalesforce: records into Salesforce objects or Apex REST endpoints."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Final

import msgspec
from singer_sdk import typing as th
from singer_sdk.contrib import msgspec as sdk_msgspec
from singer_sdk.exceptions import FatalSyncError, InvalidJSONSchema
from singer_sdk.singerlib.exceptions import InvalidInputLine, SingerReadError
from singer_sdk.target_base import Target
from typing_extensions import override

from target_salesforce import preflight, stopping
from target_salesforce.auth import FLOWS, AuthError
from target_salesforce.errors import TargetSalesforceError
from target_salesforce.journal import DEFAULT_JOURNAL_PATH
from target_salesforce.mapping import MappingError
from target_salesforce.run_context import RunContext
from target_salesforce.sinks import SalesforceSink, SkippedStreamSink
from target_salesforce.stopping import StoppableReader

if TYPE_CHECKING:
    from pathlib import PurePath
    from types import FrameType

    import click
    from singer_sdk.sinks import Sink

DEFAULT_REJECTS_PATH: Final = "target-salesforce-rejects.jsonl"

# Errors that stop the run with one clear line (exit 1, no traceback). None of
# them lets the SDK write a STATE past records that were not settled.
STOPPING_ERRORS: Final = (
    TargetSalesforceError,
    AuthError,
    MappingError,
    SingerReadError,
    FatalSyncError,
    InvalidJSONSchema,
)


class SalesforceReader(StoppableReader):
    """The SDK's msgspec reader; a line that is not JSON is one clear error.

    The SDK's own reader logs a traceback with the whole (maybe huge) line. A
    signal or an error ends the reading as stopping.py says (`on_stop`: the
    target settles the Bulk batches out first).
    """

    @override
    def deserialize_json(self, line: str) -> dict[str, Any]:
        """Decode one line, or raise InvalidInputLine naming the problem.

        Raises:
            InvalidInputLine: when the line is not JSON.
        """
        try:
            result: dict[str, Any] = sdk_msgspec.decoder.decode(line)
        except msgspec.DecodeError as exc:
            msg = f"input line is not valid JSON ({exc}; {len(line)} characters)"
            raise InvalidInputLine(msg) from None
        return result


def _secret(name: str, description: str) -> th.Property[Any]:
    return th.Property(name, th.StringType, secret=True, description=description)


def _choice(name: str, values: list[str], description: str) -> th.Property[Any]:
    """A string setting limited to `values`; the first one is the default."""
    return th.Property(
        name,
        th.StringType,
        default=values[0],
        allowed_values=values,
        description=description,
    )


class TargetSalesforce(Target):
    """Load Singer records into Salesforce objects (any External ID) or Apex REST."""

    name = "target-salesforce"
    message_reader_class = SalesforceReader
    default_sink_class = SalesforceSink

    config_jsonschema = th.PropertiesList(
        # ---------------------------------------------------------------- auth
        th.Property(
            "auth_flow",
            th.StringType,
            allowed_values=list(FLOWS),
            description=(
                "Login flow. Default: the first configured of access_token, jwt, "
                "refresh_token, password (legacy), client_credentials."
            ),
        ),
        th.Property(
            "client_id",
            th.StringType,
            description="Connected App / External Client App consumer key.",
        ),
        _secret(
            "client_secret", "Consumer secret (client credentials, refresh token)."
        ),
        th.Property(
            "username",
            th.StringType,
            description="Run-as user (JWT bearer) or login user (legacy password).",
        ),
        _secret("private_key", "PEM private key that signs the JWT bearer assertion."),
        th.Property(
            "private_key_path",
            th.StringType,
            description="Path of the PEM private key, instead of private_key.",
        ),
        _secret("refresh_token", "OAuth refresh token (refresh_token flow)."),
        _secret(
            "password",
            "Legacy username/password login; deprecated, ends 2027-02-20.",
        ),
        _secret("security_token", "Security token appended to the legacy password."),
        _secret(
            "access_token", "A ready access token (with instance_url); no refresh."
        ),
        th.Property(
            "instance_url",
            th.StringType,
            description="Instance URL for access_token, e.g. https://acme.my.salesforce.com.",
        ),
        th.Property(
            "domain",
            th.StringType,
            default="login",
            description=(
                "Login host prefix: `login`, `test` (sandboxes) or your My Domain "
                "such as `acme.my` or `acme--uat.sandbox.my` (required for client "
                "credentials). Token requests go to https://<domain>.salesforce.com."
            ),
        ),
        th.Property(
            "jwt_audience",
            th.StringType,
            description=(
                "The `aud` claim of the JWT bearer assertion. Salesforce accepts "
                "only https://login.salesforce.com (production) or "
                "https://test.salesforce.com (sandboxes), never the My Domain "
                "host. Default: test for `domain` test or a `.sandbox.` My "
                "Domain, else login."
            ),
        ),
        th.Property(
            "api_version",
            th.StringType,
            default="62.0",
            description="Salesforce REST API version, without a leading v.",
        ),
        th.Property(
            "ca_bundle",
            th.StringType,
            description=(
                "CA bundle for TLS verification (e.g. a TLS-inspecting proxy's "
                "CA). Wins over REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE in the "
                "environment; unset, those (then certifi) apply."
            ),
        ),
        th.Property(
            "request_timeout",
            th.NumberType,
            default=120,
            description="HTTP timeout per request, in seconds.",
        ),
        # ---------------------------------------------------------------- mapping
        th.Property(
            "streams",
            th.ObjectType(additional_properties=True),
            description=(
                "Per-stream mapping: stream name (or pattern) -> {object, action, "
                "external_id_field, fields, pass_through, pack_unmapped_into, "
                "null_policy, duplicate_keys, bulk_threshold} or {mode: apex, apex: "
                "{path, method, payload, batching, list_key, isolate_errors}}, or "
                "{skip: true} to "
                "switch off a stream that mappings_file maps. See README."
            ),
        ),
        th.Property(
            "mappings_file",
            th.StringType,
            description=(
                "YAML file with a top-level `streams:` mapping (e.g. "
                "transforms/clevertap_to_salesforce.yml); `streams` wins per stream."
            ),
        ),
        th.Property(
            "run_started_at",
            th.DateTimeType,
            description=(
                "The time `now: true` fields write (ISO 8601). Default: when the "
                "run starts; set it to reproduce a run."
            ),
        ),
        _choice(
            "unmapped_streams",
            ["skip", "fail"],
            "A stream without a mapping: skip it with one warning, or fail.",
        ),
        # ---------------------------------------------------------------- writes
        th.Property(
            "bulk_threshold",
            th.IntegerType,
            default=2000,
            description=(
                "Batches with more records than this go through Bulk API 2.0; "
                "smaller ones through sObject Collections."
            ),
        ),
        th.Property(
            "collections_batch_size",
            th.IntegerType,
            default=200,
            description="Records per sObject Collections call (at most 200).",
        ),
        _choice(
            "null_policy",
            ["skip", "set_null"],
            (
                "Null values: `skip` leaves the Salesforce field unchanged; "
                "`set_null` clears it (JSON null, Bulk CSV #N/A)."
            ),
        ),
        _choice(
            "duplicate_keys",
            ["merge", "reject"],
            (
                "Same key twice in one batch: merge (later values win) or reject "
                "all of them before sending."
            ),
        ),
        _choice(
            "duplicate_rules",
            ["respect", "allow_save"],
            (
                "Active duplicate rules (Contact, Lead): `respect` lets them "
                "block creates (DUPLICATES_DETECTED rejects with the matched "
                "Ids); `allow_save` sends Sforce-Duplicate-Rule-Header "
                "allowSave=true on sObject Collections writes. Bulk API 2.0 "
                "cannot bypass duplicate rules."
            ),
        ),
        th.Property(
            "bulk_poll_interval",
            th.NumberType,
            default=2.0,
            description="Seconds between Bulk 2.0 job status polls.",
        ),
        th.Property(
            "bulk_jobs_in_flight",
            th.IntegerType(minimum=1),
            default=3,
            description=(
                "Bulk 2.0 jobs that may run at once while the target reads and "
                "maps on (each holds one batch of `batch_size_rows` records). "
                "Batches settle in input order and STATE waits for all of them; "
                "a batch that shares a key with one still running waits for it. "
                "1 waits for each job before reading on."
            ),
        ),
        th.Property(
            "bulk_timeout",
            th.NumberType,
            default=3600,
            description="Give up waiting for a Bulk 2.0 job after this many seconds.",
        ),
        # ---------------------------------------------------------------- failures
        th.Property(
            "rejects_path",
            th.StringType,
            default=DEFAULT_REJECTS_PATH,
            description="JSON-lines file (mode 0600) for rejected records.",
        ),
        _choice(
            "on_reject",
            ["continue", "fail"],
            "After a batch with rejects: continue, or fail the run.",
        ),
        th.Property(
            "max_reject_ratio",
            th.NumberType,
            description=(
                "Fail the run when a stream's rejected/settled ratio exceeds this "
                "(0 to 1). Unset: no limit."
            ),
        ),
        th.Property(
            "insert_journal_path",
            th.StringType,
            default=DEFAULT_JOURNAL_PATH,
            description=(
                "SQLite file (mode 0600) remembering the rows `action: insert` "
                "streams stored that no STATE covers yet, so a rerun after a "
                "kill does not insert them twice (not for Apex mode, not in dry "
                "runs). One run at a time per file. Empty string: off."
            ),
        ),
        th.Property(
            "summary_path",
            th.StringType,
            description="Also write the per-stream run summary to this JSON file.",
        ),
        th.Property(
            "quota_percent",
            th.NumberType,
            default=80,
            description=(
                "Stop cleanly when Sforce-Limit-Info api-usage is above this "
                "percent of the org's daily limit."
            ),
        ),
        th.Property(
            "max_retries",
            th.IntegerType,
            default=3,
            description=(
                "Retries for UNABLE_TO_LOCK_ROW records and for 5xx or connection "
                "errors on idempotent calls."
            ),
        ),
        th.Property(
            "concurrent_limit_max_wait",
            th.NumberType,
            default=300,
            description=(
                "REQUEST_LIMIT_EXCEEDED for the concurrent request limits "
                "(ConcurrentRequests, ConcurrentPerOrgLongTxn) is retried with "
                "exponential backoff for up to this many seconds, then the run "
                "stops. The daily limit (TotalRequests) stops at once."
            ),
        ),
        th.Property(
            "retry_backoff_seconds",
            th.NumberType,
            default=1.0,
            description="Base of the exponential retry backoff, in seconds.",
        ),
        # ---------------------------------------------------------------- dry run
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            description=(
                "Validate (with describe checks) and show what would be written; "
                "write nothing."
            ),
        ),
        th.Property(
            "dry_run_path",
            th.StringType,
            description="Dry run: write the would-be payloads here as JSON lines.",
        ),
    ).to_dict()

    def __init__(
        self,
        *,
        config: dict[str, Any] | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        **kwargs: Any,
    ) -> None:
        """Initialise the SDK target, then parse the mappings (fails early)."""
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=setup_mapper,
            **kwargs,
        )
        self.max_parallelism = 1  # one shared client, quota guard and session
        self.run = RunContext(self.config, self.logger)
        if isinstance(self.message_reader, SalesforceReader):
            # an error while reading settles the Bulk batches out first
            self.message_reader.on_stop = self.run.stop
        if setup_mapper:
            self._add_source_stream_aliases()

    def _add_source_stream_aliases(self) -> None:
        """Entries with `source_stream` read that stream's records too.

        Each becomes an SDK stream-map alias (`<entry>: {__source__: <stream>}`),
        so the source stream's records reach this entry's sink too, which keeps
        those its `when` lets through (`SalesforceSink.process_record`). A
        `stream_maps` entry of the same name in the config wins.
        """
        aliases: dict[str, dict[str, str]] = {}
        for name, mapping in self.run.mappings.items():
            if mapping.source_stream and not mapping.skip:
                aliases[name] = {"__source__": mapping.source_stream}
        if aliases:
            configured = self.mapper.stream_maps_dict or {}
            self.mapper.stream_maps_dict = {**aliases, **configured}

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        """The SDK's command plus `--preflight` (see target_salesforce.preflight)."""
        command = super().get_singer_command()
        return preflight.with_option(command, cls.config_jsonschema)

    @classmethod
    @override
    def invoke(cls, *args: Any, **kwargs: Any) -> None:
        """Run the target; a stopping error ends it with one line and exit 1."""
        try:
            super().invoke(*args, **kwargs)
        except STOPPING_ERRORS as exc:
            # the message names the cause; no STATE was written past it
            cls.logger.error("target-salesforce stopped: %s", exc)  # noqa: TRY400 - one clear line, no traceback
            sys.exit(1)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM or Ctrl-C: end the input, then a second one stops (stopping.py)."""
        del frame
        stopping.on_signal(self.message_reader, self.logger, self.name, signum)

    @override
    def process_endofpipe(self) -> None:
        """Drain everything, then close the HTTP session.

        An error while draining settles the Bulk batches still out first.
        """
        try:
            super().process_endofpipe()
            reader = self.message_reader
            if not (
                isinstance(reader, SalesforceReader) and reader.stop_reading.is_set()
            ):
                self.run.ended_normally()
        except BaseException:
            self.run.stop()
            raise
        finally:
            self.run.close()

    @override
    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        """Count the input line (the insert journal's sequence number)."""
        self.run.seq += 1
        super()._process_record_message(message_dict)

    @override
    def _process_state_message(self, message_dict: dict[str, Any]) -> None:
        """Note the input line of a new STATE (the insert journal's coverage)."""
        self.run.seq += 1
        before = self._latest_state
        super()._process_state_message(message_dict)
        if self._latest_state is not before:
            self.run.state_read()

    @override
    def _write_state_message(self, state: dict[str, Any]) -> None:
        """Emit STATE only once every Bulk batch sent before it is settled.

        The SDK writes STATE after a full drain; Bulk batches may still be in
        flight then. An error while settling them stops the run without STATE.
        """
        self.run.inflight.settle_all()
        super()._write_state_message(state)
        self.run.state_written()

    @override
    def get_sink_class(self, stream_name: str) -> type[Sink]:
        """Mapped streams get SalesforceSink; unmapped ones skip or fail."""
        mapping = self.run.mapping_for(stream_name)
        if mapping is not None and mapping.skip:
            self.run.note_skipped(stream_name)
            return SkippedStreamSink
        if mapping is not None:
            return SalesforceSink
        if self.config["unmapped_streams"] == "fail":
            msg = (
                f"stream {stream_name!r} has no mapping in `streams` or "
                "`mappings_file` (unmapped_streams=fail)"
            )
            raise TargetSalesforceError(msg)
        self.run.warn_unmapped(stream_name)
        return SkippedStreamSink
