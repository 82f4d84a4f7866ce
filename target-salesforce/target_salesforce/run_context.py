"""RunContext: what the sinks of one run share, and how the run stops on an error.

The mappings, the Salesforce client (created on first use), the Bulk batches in
flight, the rejects, not-linked and dry-run files, and the stream summaries.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from target_salesforce.bulk_client import BulkClient
from target_salesforce.client import SalesforceClient
from target_salesforce.errors import TargetSalesforceError
from target_salesforce.inflight import InFlight
from target_salesforce.journal import AlreadyInserted, InsertJournal
from target_salesforce.journal_recovery import recover_jobs
from target_salesforce.mapping import find_mapping, load_mappings
from target_salesforce.rejects import (
    PrivateJsonLines,
    StreamSummary,
    not_linked_path,
)
from target_salesforce.values import dumps

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    from target_salesforce.mapping import StreamMapping

DRY_RUN_LOG_LINES: Final = 20


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
        #: streams whose summary was logged (each is logged once)
        self._summary_logged: set[str] = set()
        #: each stream's latest sink (the one that logs its summary)
        self._current_sinks: dict[str, object] = {}
        self._lock = threading.Lock()
        self.stopped = False
        #: input messages read so far (RECORD and STATE): a record's input line
        self.seq = 0
        #: the input line of the latest STATE (the one the SDK writes next)
        self.state_seq: int | None = None
        self._journal: InsertJournal | None = None
        self._journal_opened = False
        #: rows earlier runs stored and left in the insert journal
        self.already_inserted = AlreadyInserted(())
        #: insert streams that used the journal (their earlier rows go at a normal end)
        self.journal_streams: set[str] = set()

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
        """Wait for Bulk worker threads; close the HTTP session and the journal."""
        self.inflight.close()
        with self._lock:
            if self._client is not None:
                self._client.session.close()
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def insert_journal(self) -> InsertJournal | None:
        """The insert journal, opened on first use; None when off or a dry run.

        Opening it first settles the Bulk insert jobs an earlier run left
        (`journal_recovery`), then reads the rows earlier runs stored.
        """
        if self._journal_opened:
            return self._journal
        self._journal_opened = True
        path = self.config.get("insert_journal_path")
        if self.dry_run or not path:
            return None
        journal = InsertJournal(str(path))
        self._journal = journal
        recover_jobs(journal, self.bulk, self.logger)
        self.already_inserted = journal.earlier_rows()
        if len(self.already_inserted):
            self.logger.info(
                "Insert journal %s: %d rows stored by an earlier run that stopped "
                "before its STATE; records that match them are not inserted again",
                path,
                len(self.already_inserted),
            )
        return journal

    def state_read(self) -> None:
        """A new STATE was read at input line `seq`."""
        self.state_seq = self.seq

    def state_written(self) -> None:
        """STATE went out: the journal forgets this run's rows it covers."""
        if self._journal is not None and self.state_seq is not None:
            self._journal.forget_covered(self.state_seq)

    def ended_normally(self) -> None:
        """The input ended and everything settled, with no error or signal.

        Rows earlier runs left for the streams this run read had their chance
        to be met again, so they go (other streams' rows stay); a run that read
        no STATE at all leaves none of its own either (its tap
        sends everything again next time, so nothing of it is a replay).
        """
        if self._journal is None:
            return
        self._journal.forget_earlier_runs(self.journal_streams)
        if self.state_seq is None:
            self._journal.forget_this_run()

    def stop(self) -> None:
        """An error stops the run: settle the Bulk batches out, show the counts.

        The batches still in flight are waited for and settled as on the normal
        path (their rejects written, their rows counted; their own errors only
        logged), then the summary of every stream that has not logged its own
        yet is logged (marked: the run stopped before it) and `summary_path`
        written. No STATE is written here: the caller raises the error that
        stops the run, which stays the one the user sees. Runs once.
        """
        if self.stopped:
            return
        self.stopped = True
        try:
            self.inflight.stop()
        finally:
            for summary in self.summaries.values():
                if summary.stream not in self._summary_logged:
                    self.log_summary(self.logger.getChild(summary.stream), summary)
            try:
                self.write_summary_file()
            except OSError as exc:
                self.logger.error("Summary file not written: %s", exc)  # noqa: TRY400 - one line; the run's own error follows

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

    def summary(self, stream: str, target: str, sink: object) -> StreamSummary:
        """The stream's summary (one per stream for the whole run).

        `sink` becomes the stream's current sink: the SDK opens a new one when
        the stream's schema changes, and only the current one logs the summary.
        """
        with self._lock:
            self._current_sinks[stream] = sink
            if stream not in self._summaries:
                self._summaries[stream] = StreamSummary(stream=stream, target=target)
            return self._summaries[stream]

    def is_current_sink(self, stream: str, sink: object) -> bool:
        """Whether `sink` is the stream's latest (not replaced by a schema change)."""
        with self._lock:
            return self._current_sinks.get(stream) is sink

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
            self.logger.info("Dry run, would write: %s", dumps(entry))

    def log_summary(self, logger: logging.Logger, summary: StreamSummary) -> None:
        """Log a stream's run summary (marked when the run stopped before it)."""
        with self._lock:
            self._summary_logged.add(summary.stream)
        label = "Run summary (run stopped)" if self.stopped else "Run summary"
        if summary.already_inserted:
            logger.info(
                "%d records were stored by an earlier run that stopped before "
                "its STATE; not inserted again",
                summary.already_inserted,
            )
        logger.info("%s: %s", label, json.dumps(summary.as_dict(), sort_keys=True))

    def write_summary_file(self) -> None:
        """Write every stream summary to `summary_path` (mode 0600), if set."""
        path = self.config.get("summary_path")
        if not path:
            return
        data = {
            "stopped": self.stopped,
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
