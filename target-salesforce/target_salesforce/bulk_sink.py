"""Bulk API 2.0 writes of a sink: byte-sized jobs, limits, Failed jobs settled.

A mixin of `SalesforceSink` (kept apart so the sink class stays small); the
pure pieces (limits, splitting, row matching) are in `target_salesforce.bulk`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from target_salesforce import bulk
from target_salesforce.bulk import bulk_columns, bulk_results
from target_salesforce.bulk_client import JobHooks
from target_salesforce.errors import CallFailed, SendIncompleteError
from target_salesforce.inflight import Scope
from target_salesforce.results import error_result

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, NoReturn

    from target_salesforce.journal_sink import BatchJournal
    from target_salesforce.mapping import StreamMapping
    from target_salesforce.payloads import Prepared
    from target_salesforce.rejects import StreamSummary
    from target_salesforce.results import ItemResult
    from target_salesforce.run_context import RunContext


@dataclasses.dataclass
class BulkSend:
    """One batch's Bulk work: jobs run, and whether an insert stored rows yet.

    Each batch in flight has its own (the work runs in a worker thread); the
    sink adds `jobs` to its summary when it settles the batch.
    """

    jobs: int = 0
    stored: bool = False


class BulkWrites:
    """Send prepared items through Bulk 2.0 jobs (mixed into SalesforceSink)."""

    mapping: StreamMapping
    run: RunContext
    summary: StreamSummary
    # raw CSV bytes per job upload (bulk.MAX_UPLOAD_BYTES; small in tests)
    bulk_max_bytes: int
    stream_name: str

    if TYPE_CHECKING:  # SalesforceSink's own steps, used here

        def _send_around(
            self,
            items: list[Prepared],
            known: Mapping[int, ItemResult],
            send: Callable[[list[Prepared]], list[ItemResult]],
        ) -> list[ItemResult]: ...

        def _settle(
            self,
            records: list[dict[str, Any]],
            items: Sequence[Prepared],
            results: Sequence[ItemResult],
        ) -> None: ...

        def _enforce_reject_policy(self) -> None: ...

        def _settle_known(
            self,
            records: list[dict[str, Any]],
            items: Sequence[Prepared],
            stop: SendIncompleteError,
        ) -> NoReturn: ...

    def _submit_bulk(
        self,
        records: list[dict[str, Any]],
        items: list[Prepared],
        settle_first: Callable[[], None],
        known: Mapping[int, ItemResult],
        journal: BatchJournal | None,
    ) -> None:
        """Send the batch through Bulk 2.0 while the target reads on.

        `known` are the items an earlier run stored (insert journal): they
        settle with the others, unsent; `journal` records the jobs and the
        rows they store.

        The jobs (and the resends of UNABLE_TO_LOCK_ROW rows or of rows a
        Failed insert job left unprocessed) run in a worker thread; the batch
        settles in the reading thread once every batch sent before it has:
        `settle_first` (the records refused before sending), then the result
        rows, then the reject policy. Rows that a job left unsettled stop the
        run there, without STATE, after the known rows are settled.
        """
        mapping = self.mapping
        send = BulkSend()
        keys = frozenset(i.key for i in items if i.key is not None)
        scope = Scope(str(mapping.sobject), mapping.key_field, keys)

        def work() -> list[ItemResult]:
            return self._send_around(
                items, known, lambda chosen: self._send_bulk(chosen, send, journal)
            )

        def settle(future: concurrent.futures.Future[list[ItemResult]]) -> None:
            settle_first()
            try:
                results = future.result()
            except SendIncompleteError as exc:
                self._settle_known(records, items, exc)
            finally:
                if send.jobs:
                    self.summary.api_calls["bulk2_jobs"] += send.jobs
            self._settle(records, items, results)
            if not self.run.inflight.stopping:
                self._enforce_reject_policy()

        self.run.inflight.submit(scope, work, settle)

    def _send_bulk(
        self, items: list[Prepared], send: BulkSend, journal: BatchJournal | None
    ) -> list[ItemResult]:
        """Bulk 2.0 in jobs of at most `bulk_max_bytes` of CSV each.

        Items over the Bulk per-field or per-record limits are refused first.
        Runs in a worker thread: it reads the sink's settings and writes only
        `send` (and the log).

        Raises:
            SendIncompleteError: a job left rows unsettled (see `_bulk_job`),
                or a later job failed: with the results known so far.
        """
        columns = bulk_columns(self.mapping.action, self.mapping.key_field, items)
        out: list[ItemResult | None] = [None] * len(items)
        sendable: list[int] = []
        for position, item in enumerate(items):
            problem = bulk.limit_problem(columns, item)
            if problem is None:
                sendable.append(position)
            else:
                out[position] = error_result(*problem)
        chunks = bulk.split_uploads(
            columns, [items[p] for p in sendable], self.bulk_max_bytes
        )
        for positions, csv_text in chunks:
            chosen = [sendable[p] for p in positions]
            try:
                results = self._bulk_job(
                    columns, [items[p] for p in chosen], csv_text, send, journal
                )
            except SendIncompleteError as exc:
                for position, result in zip(chosen, exc.results, strict=True):
                    out[position] = result
                raise exc.with_results(out) from None
            except Exception as exc:  # the earlier jobs' results are known
                raise SendIncompleteError(str(exc), out, exc) from exc
            for position, result in zip(chosen, results, strict=True):
                out[position] = result
        return [r for r in out if r is not None]

    def _bulk_job(
        self,
        columns: list[str],
        items: list[Prepared],
        csv_text: str,
        send: BulkSend,
        journal: BatchJournal | None,
    ) -> list[ItemResult]:
        """One ingest job; its rows are settled from its three result files.

        With the insert journal, the job is recorded in it before its upload
        completes, and its stored rows replace that entry (one transaction)
        once its results are read, before anything of it settles.

        A job that ends Failed or Aborted may have processed some rows. Rows
        it left unprocessed are "not loaded": the run stops (without STATE)
        once the others are settled, and a rerun sends them again. An insert
        must not be rerun once it stored rows (the rerun would store them
        twice), so there the unprocessed rows are resent in a new job instead,
        and rejected with BULK_JOB_FAILED if they never get processed.

        Raises:
            SendIncompleteError: rows not loaded, or with no result row at all;
                or Salesforce refused the job as a whole (none of its rows).
        """
        mapping = self.mapping
        key_field = mapping.key_field
        try:
            outcome = self.run.bulk.ingest(
                mapping.action,
                str(mapping.sobject),
                mapping.external_id_field,
                csv_text,
                _job_hooks(send, journal, columns),
            )
        except CallFailed as exc:
            # Creating a job sends no record, so a refusal is about the job, the
            # org or the user, never the records: ExceededQuota (the 24-hour batch
            # allowance is used up), InvalidJob, FeatureNotEnabled, InvalidUser
            # (Bulk API 2.0 developer guide, "Errors": api_asynch
            # asynch_api_reference_errors.htm). As for a whole Collections call
            # refused: nothing is rejected, the run stops without STATE.
            msg = (
                f"stream {self.stream_name}: Salesforce refused a Bulk 2.0 "
                f"{mapping.action} job on {mapping.sobject} with HTTP {exc.status} "
                f"{exc.code}: {exc.message}; this is about the job, the org or the "
                "user, not the records. Nothing of this job was written and no "
                "STATE covers it: fix the cause (or wait for the 24-hour Bulk "
                "allowance) and rerun."
            )
            raise SendIncompleteError(msg, [None] * len(items)) from None
        matched = bulk_results(
            columns, key_field, items, outcome.successful, outcome.failed
        )
        if journal is not None:  # before anything of the job settles
            journal.job_finished(
                outcome.job_id, columns, items, matched, outcome.successful
            )
        insert = mapping.action == "insert"
        if insert and any(r is not None and r.success for r in matched):
            send.stored = True
        missing = [i for i, r in enumerate(matched) if r is None]
        if not missing:
            return [r for r in matched if r is not None]
        job = f"Bulk 2.0 job {outcome.job_id}"
        if outcome.finished:
            msg = (
                f"{job}: {len(missing)} of {len(items)} records have no result row "
                f"({len(outcome.unprocessed)} unprocessed); their outcome is "
                "unknown, so the run stops without STATE"
            )
            raise SendIncompleteError(msg, list(matched))
        unprocessed = bulk.match_rows(columns, key_field, items, outcome.unprocessed)
        ended = f"{job} ended {outcome.state} ({outcome.error_message or 'no message'})"
        if insert and send.stored and set(missing) <= unprocessed:
            message = f"{ended} before processing this record; it was not written"
            for i in missing:
                matched[i] = error_result(bulk.CODE_BULK_JOB_FAILED, message)
            return [r for r in matched if r is not None]
        not_processed = len(set(missing) & unprocessed)
        msg = (
            f"{ended}: {len(items) - len(missing)} of {len(items)} records settled "
            f"from its result files, {not_processed} not processed"
            + (
                f", {len(missing) - not_processed} with no result row"
                if len(missing) > not_processed
                else ""
            )
            + "; stopping without STATE so a rerun loads them"
        )
        raise SendIncompleteError(msg, list(matched))


def _job_hooks(
    send: BulkSend, journal: BatchJournal | None, columns: Sequence[str]
) -> JobHooks:
    """Count every job made for one upload; the journal records and drops them."""

    def created(job_id: str) -> None:
        send.jobs += 1
        if journal is not None:
            journal.job_created(job_id, columns)

    hooks = JobHooks(created)
    if journal is not None:
        hooks.abandoned = journal.job_abandoned
    return hooks
