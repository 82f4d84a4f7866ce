"""TargetSalesforce: records into Salesforce objects or Apex REST endpoints."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import msgspec
from singer_sdk import typing as th
from singer_sdk.contrib import msgspec as sdk_msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.exceptions import FatalSyncError, InvalidJSONSchema
from singer_sdk.singerlib.exceptions import InvalidInputLine, SingerReadError
from singer_sdk.target_base import Target
from typing_extensions import override

from target_salesforce import preflight
from target_salesforce.auth import FLOWS, AuthError
from target_salesforce.bulk_client import BulkClient
from target_salesforce.client import SalesforceClient
from target_salesforce.errors import TargetSalesforceError
from target_salesforce.inflight import InFlight
from target_salesforce.mapping import MappingError, find_mapping, load_mappings
from target_salesforce.rejects import (
    PrivateJsonLines,
    StreamSummary,
    not_linked_path,
)
from target_salesforce.sinks import SalesforceSink, SkippedStreamSink

if TYPE_CHECKING:
    import logging
    from collections import Counter
    from collections.abc import Callable, Mapping
    from pathlib import PurePath
    from types import FrameType

    import click
    from singer_sdk.sinks import Sink

    from target_salesforce.mapping import StreamMapping

DEFAULT_REJECTS_PATH: Final = "target-salesforce-rejects.jsonl"
DRY_RUN_LOG_LINES: Final = 20

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


class SalesforceReader(MsgSpecReader):
    """The SDK's msgspec reader; a line that is not JSON is one clear error.

    The SDK's own reader logs a traceback with the whole (maybe huge) line.
    When reading stops on an error (a bad line, a stopping error of a sink,
    Ctrl-C), `on_stop` runs before the error goes on.
    """

    #: called when reading ends with an error: the target settles its Bulk jobs
    on_stop: Callable[[], None] | None = None

    @override
    def process_lines(
        self,
        file_input: IO[str] | None,
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
    ) -> Counter[str]:
        try:
            return super().process_lines(file_input, callbacks)
        except BaseException:
            if self.on_stop is not None:
                self.on_stop()
            raise

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


class RunContext:
    """What the sinks of one run share: mappings, client, rejects and summaries."""

    def __init__(self, config: Mapping[str, Any], logger: logging.Logger) -> None:
        """Parse the mappings (fails early on a bad mapping); no network yet."""
        self.config = config
        self.logger = logger
        self.mappings = load_mappings(
            config.get("streams"), config.get("mappings_file")
        )
        self.started_at = run_start(config.get("run_started_at"))
        self.dry_run = bool(config["dry_run"])
        self.rejects_path = str(config["rejects_path"])
        self._rejects = PrivateJsonLines(self.rejects_path)
        self.not_linked_path = not_linked_path(self.rejects_path)
        self._not_linked = PrivateJsonLines(self.not_linked_path)
        dry_path = config.get("dry_run_path")
        self._dry = PrivateJsonLines(dry_path) if dry_path else None
        self._dry_logged = 0
        self._client: SalesforceClient | None = None
        self._bulk: BulkClient | None = None
        # Bulk batches sent and not settled yet (every sink of the run)
        self.inflight = InFlight(int(config["bulk_jobs_in_flight"]), logger)
        self._summaries: dict[str, StreamSummary] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @property
    def client(self) -> SalesforceClient:
        """The Salesforce client, created on first use."""
        with self._lock:
            if self._client is None:
                self._client = SalesforceClient(
                    self.config, self.logger.getChild("client")
                )
            return self._client

    @property
    def bulk(self) -> BulkClient:
        """Bulk API 2.0 jobs over the client's session and retries."""
        client = self.client  # takes the lock itself
        with self._lock:
            if self._bulk is None:
                self._bulk = BulkClient(client)
            return self._bulk

    def close(self) -> None:
        """Wait for Bulk worker threads; close the HTTP session if one was opened."""
        self.inflight.close()
        with self._lock:
            if self._client is not None:
                self._client.session.close()

    def mapping_for(self, stream: str) -> StreamMapping | None:
        """The stream's mapping (exact name, then pattern), or None."""
        return find_mapping(self.mappings, stream)

    def note_skipped(self, stream: str) -> None:
        """Say once per stream that its mapping switches it off."""
        if stream not in self._warned:
            self._warned.add(stream)
            self.logger.info(
                "Stream %r is switched off by its mapping (skip: true); its records "
                "are validated and counted but not written.",
                stream,
            )

    def warn_unmapped(self, stream: str) -> None:
        """Say once per stream that it has no mapping and is skipped."""
        if stream not in self._warned:
            self._warned.add(stream)
            self.logger.warning(
                "Stream %r has no mapping in `streams` or `mappings_file`; its "
                "records are validated and counted but not written "
                "(unmapped_streams=skip).",
                stream,
            )

    def summary(self, stream: str, target: str) -> StreamSummary:
        """The stream's summary (one per stream for the whole run)."""
        with self._lock:
            if stream not in self._summaries:
                self._summaries[stream] = StreamSummary(stream=stream, target=target)
            return self._summaries[stream]

    @property
    def summaries(self) -> dict[str, StreamSummary]:
        """All stream summaries so far."""
        return dict(self._summaries)

    def write_reject(self, entry: Mapping[str, Any]) -> None:
        """Append one reject to the rejects file (mode 0600)."""
        self._rejects.write(entry)

    def write_not_linked(self, entry: Mapping[str, Any]) -> None:
        """Append one not-linked record to the not-linked file (mode 0600)."""
        self._not_linked.write(entry)

    def write_dry_run(self, entry: Mapping[str, Any]) -> None:
        """Record what would be written: to dry_run_path, else to the log."""
        if self._dry is not None:
            self._dry.write(entry)
            return
        if self._dry_logged < DRY_RUN_LOG_LINES:
            self._dry_logged += 1
            self.logger.info("Dry run, would write: %s", json.dumps(entry))

    def write_summary_file(self) -> None:
        """Write every stream summary to `summary_path` (mode 0600), if set."""
        path = self.config.get("summary_path")
        if not path:
            return
        data = {
            "dry_run": self.dry_run,
            "rejects_path": self.rejects_path,
            "not_linked_path": self.not_linked_path,
            "streams": [s.as_dict() for s in self._summaries.values()],
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)


def run_start(value: str | None) -> dt.datetime:
    """The run's start time: the `run_started_at` setting, else now (UTC).

    Raises:
        TargetSalesforceError: when the setting is not an ISO 8601 date-time.
    """
    if not value:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        msg = f"run_started_at {value!r} is not an ISO 8601 date-time"
        raise TargetSalesforceError(msg) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


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
            # Bulk jobs in flight are settled (rejects written) before the run
            # stops, whatever stopped it (settle errors already do this)
            self.message_reader.on_stop = self.run.inflight.stop
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
        """SIGTERM or Ctrl-C: stop without draining; STATE stays at the last one.

        The SDK's handler drains every sink and writes STATE from inside the
        handler, in the middle of whatever the reading thread was doing: most
        often waiting for the oldest Bulk job, which is then off the batches in
        flight and not waited for (a STATE before it settled), or sending a
        batch (sent twice). Instead the run stops as on any stopping error: the
        batches in flight are settled, no STATE is written past the last one,
        and the exit code is 128 + the signal.

        Args:
            signum: the signal.
            frame: where the reading thread was (unused).
        """
        del frame
        self.logger.error(
            "target-salesforce stopped by signal %d: no STATE past the last one "
            "written",
            signum,
        )
        sys.exit(128 + signum)

    @override
    def process_endofpipe(self) -> None:
        """Drain everything, then close the HTTP session."""
        try:
            super().process_endofpipe()
        finally:
            self.run.close()

    @override
    def _write_state_message(self, state: dict[str, Any]) -> None:
        """Emit STATE only once every Bulk batch sent before it is settled.

        The SDK writes STATE after a full drain; Bulk batches may still be in
        flight then. An error while settling them stops the run without STATE.
        """
        self.run.inflight.settle_all()
        super()._write_state_message(state)

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
