"""Start-up recovery of the insert journal: Bulk insert jobs an earlier run left.

A run killed while a Bulk 2.0 insert job ran never read the job's results, yet
Salesforce goes on processing a job whose upload was complete. Before this run
inserts anything, each such job (`InsertJournal.open_jobs`) is looked at:

- `Open` (the upload never completed): nothing was processed; it is aborted.
- `UploadComplete` / `InProgress`: polled until it ends (`bulk_poll_interval`,
  at most `bulk_timeout`), then as below.
- ended (`JobComplete`, `Failed`, `Aborted`): its successfulResults rows become
  journal rows of that earlier run (digest over the job's own columns); an
  `Aborted` job that processed no record (aborted while Open) has none to read.
- gone (HTTP 404: Salesforce deletes jobs some days after they end): dropped
  with a warning; what it stored, if anything, cannot be known any more.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from target_salesforce.bulk_client import BulkJobFailedError
from target_salesforce.errors import HTTP_NOT_FOUND, CallFailed
from target_salesforce.journal import JournalRow, result_row_digest

if TYPE_CHECKING:
    import logging

    from target_salesforce.bulk_client import BulkClient
    from target_salesforce.journal import InsertJournal, OpenJob


def recover_jobs(
    journal: InsertJournal, bulk: BulkClient, logger: logging.Logger
) -> None:
    """Settle every Bulk insert job an earlier run left in the journal.

    Raises:
        BulkJobFailedError: when a job does not end within `bulk_timeout`, or a
            call on it fails (the run stops: its rows are not known yet).
    """
    for job in journal.open_jobs():
        if _nothing_to_read(job, bulk, logger):
            journal.finish_job(job.job_id, job.scope, [], run_id=job.run_id)
            continue
        outcome = bulk.finish(job.job_id, job.scope.sobject)
        rows = [
            JournalRow(
                result_row_digest(job.columns, row), row.get("sf__Id") or None, 0
            )
            for row in outcome.successful
        ]
        journal.finish_job(job.job_id, job.scope, rows, run_id=job.run_id)
        logger.info(
            "Insert journal: %s ended %s with %d rows stored; they will not be "
            "inserted again",
            _what(job),
            outcome.state,
            len(rows),
        )


def _what(job: OpenJob) -> str:
    return f"Bulk 2.0 job {job.job_id} on {job.scope.sobject} of an earlier run"


def _nothing_to_read(job: OpenJob, bulk: BulkClient, logger: logging.Logger) -> bool:
    """Whether the job has no result files worth reading (it is then dropped).

    Gone (HTTP 404), still Open (aborted here: nothing was processed), or
    Aborted before it processed any record.

    Raises:
        BulkJobFailedError: when its state cannot be read or the abort fails.
    """
    info = _job_info(job, bulk)
    if info is None:
        logger.warning(
            "Insert journal: %s is gone (HTTP 404); what it stored, if anything, "
            "cannot be told apart any more",
            _what(job),
        )
        return True
    state = str(info.get("state"))
    if state == "Open":
        bulk.abort(job.job_id)
        logger.info(
            "Insert journal: aborted %s (its upload never completed; nothing of "
            "it was stored)",
            _what(job),
        )
        return True
    return state == "Aborted" and not info.get("numberRecordsProcessed")


def _job_info(job: OpenJob, bulk: BulkClient) -> dict[str, object] | None:
    """The job's info; None when Salesforce no longer has it (HTTP 404).

    Raises:
        BulkJobFailedError: when the status read fails otherwise.
    """
    try:
        info: dict[str, object] = bulk.client.call(
            f"bulk status {job.job_id}",
            functools.partial(bulk.state_raw, job_id=job.job_id),
            idempotent=True,
            new_work=False,
        )
    except CallFailed as exc:
        if exc.status == HTTP_NOT_FOUND:
            return None
        msg = (
            f"insert journal: the state of Bulk 2.0 job {job.job_id} of an earlier "
            f"run cannot be read (HTTP {exc.status} {exc}); the run stops before "
            "inserting anything, as that job's rows are not known yet"
        )
        raise BulkJobFailedError(msg) from None
    return info
