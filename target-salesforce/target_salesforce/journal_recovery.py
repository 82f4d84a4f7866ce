"""Start-up recovery of the insert journal: Bulk insert jobs an earlier run left.

A run killed while a Bulk 2.0 insert job ran never read the job's results, yet
Salesforce goes on processing a job whose upload was complete. Before this run
inserts anything, each such job (`InsertJournal.open_jobs`) is looked at:

- `Open` (the upload never completed): nothing was processed; it is aborted.
- `UploadComplete` / `InProgress`: polled until it ends (`bulk_poll_interval`,
  at most `bulk_timeout`), then as below.
- ended (`JobComplete`, `Failed`, `Aborted`): its successfulResults rows become
  journal rows of that earlier run (digest over the job's own columns).
- gone (HTTP 404: Salesforce deletes jobs some days after they end): dropped
  with a warning; its rows, if any, cannot be known any more.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final

from target_salesforce.errors import CallFailed
from target_salesforce.journal import JournalRow, result_row_digest

if TYPE_CHECKING:
    import logging

    from target_salesforce.bulk_client import BulkClient
    from target_salesforce.journal import InsertJournal

HTTP_NOT_FOUND: Final = 404


def recover_jobs(
    journal: InsertJournal, bulk: BulkClient, logger: logging.Logger
) -> None:
    """Settle every Bulk insert job an earlier run left in the journal.

    Raises:
        BulkJobFailedError: when a job does not end within `bulk_timeout`, or a
            call on it fails (the run stops: its rows are not known yet).
    """
    for job_id, sobject, columns, run_id in journal.open_jobs():
        try:
            info = bulk.client.call(
                f"bulk status {job_id}",
                functools.partial(bulk.state_raw, job_id=job_id),
                idempotent=True,
            )
        except CallFailed as exc:
            if exc.status != HTTP_NOT_FOUND:
                raise
            logger.warning(
                "Insert journal: Bulk 2.0 job %s on %s of an earlier run is gone "
                "(HTTP 404); whatever it stored cannot be told apart any more",
                job_id,
                sobject,
            )
            journal.finish_job(job_id, sobject, [], run_id=run_id)
            continue
        state = str(info.get("state"))
        if state == "Open":
            bulk.abort(job_id)
            logger.info(
                "Insert journal: aborted Bulk 2.0 job %s on %s of an earlier run "
                "(its upload never completed; nothing of it was stored)",
                job_id,
                sobject,
            )
            journal.finish_job(job_id, sobject, [], run_id=run_id)
            continue
        outcome = bulk.finish(job_id, sobject)
        rows = [
            JournalRow(result_row_digest(columns, row), row.get("sf__Id") or None, 0)
            for row in outcome.successful
        ]
        journal.finish_job(job_id, sobject, rows, run_id=run_id)
        logger.info(
            "Insert journal: Bulk 2.0 job %s on %s of an earlier run ended %s "
            "with %d rows stored; they will not be inserted again",
            job_id,
            sobject,
            outcome.state,
            len(rows),
        )
