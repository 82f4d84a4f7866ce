"""Bulk API 2.0 I/O: one ingest job from creation to its three result files.

`BulkClient` runs every step through `SalesforceClient.call`, so the quota
guard, re-login and retries are the same as for every other call. The pure
pieces (CSV, limits, result rows) are in `target_salesforce.bulk`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

from target_salesforce.bulk import parse_csv
from target_salesforce.client import raw_request
from target_salesforce.errors import (
    CallFailed,
    OutcomeUnknownError,
    TargetSalesforceError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests
    from simple_salesforce.api import Salesforce

    from target_salesforce.client import SalesforceClient

T = TypeVar("T")

BULK_DONE: Final = frozenset({"JobComplete", "Failed", "Aborted"})
HTTP_CREATED: Final = 201
# raw REST calls: anything from here up is handed to simple-salesforce's error mapping
# How long an aborted job may take to show a final state before the run stops
ABORT_WAIT_SECONDS: Final = 120


class BulkJobFailedError(TargetSalesforceError):
    """A late Bulk 2.0 job could not be aborted, or a call on an existing job failed."""


@dataclasses.dataclass(frozen=True)
class BulkOutcome:
    """Per-record results of one Bulk 2.0 ingest job."""

    job_id: str
    successful: list[dict[str, str]]
    failed: list[dict[str, str]]
    unprocessed: list[dict[str, str]]
    state: str = "JobComplete"
    error_message: str = ""

    @property
    def finished(self) -> bool:
        """Whether the job ran to JobComplete (Failed/Aborted ones may be partial)."""
        return self.state == "JobComplete"


@dataclasses.dataclass
class JobHooks:
    """What a caller hears of the jobs `BulkClient.ingest` makes for one upload."""

    #: a job was created (its upload not complete yet)
    created: Callable[[str], None] = lambda _job_id: None
    #: a job was aborted while Open (its upload failed): it stored nothing
    abandoned: Callable[[str], None] = lambda _job_id: None


class BulkClient:
    """Bulk 2.0 ingest jobs through a `SalesforceClient` (its session and retries)."""

    def __init__(self, client: SalesforceClient) -> None:
        """Use the client's session, login and settings; no network yet."""
        self.client = client
        self.poll_interval = float(client.config["bulk_poll_interval"])
        self.timeout = float(client.config["bulk_timeout"])
        self.sleep: Callable[[float], None] = time.sleep

    def _raw(
        self,
        sf: Salesforce,
        method: str,
        url: str,
        *,
        expect: int | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        response = raw_request(
            sf,
            self.client.session,
            method,
            url,
            name=url,
            timeout=self.client.timeout,
            **kwargs,
        )
        if expect is not None and response.status_code != expect:
            msg = f"{method} {url}: expected HTTP {expect}, got {response.status_code}"
            raise TargetSalesforceError(msg)
        return response

    def _bulk_step(
        self,
        what: str,
        func: Callable[[Salesforce], T],
        *,
        new_work: bool = False,
        idempotent: bool = True,
    ) -> T:
        """One call on an existing Bulk job (idempotent unless said); fatal if failed.

        Once the job exists its records may be written, so a failed step leaves
        their outcome unknown: the run stops without STATE instead of rejecting.
        The quota guard holds back only the upload and the close (`new_work`):
        a job stopped before its close processes nothing, while one closed is
        polled and its result files read whatever the usage, so its rows settle.

        Raises:
            BulkJobFailedError: when the step fails for any reason.
        """
        try:
            return self.client.call(
                what, func, idempotent=idempotent, new_work=new_work
            )
        except CallFailed as exc:
            msg = (
                f"{what}: HTTP {exc.status} {exc}; the outcome of the job's records "
                "is unknown, so the run stops without STATE"
            )
            raise BulkJobFailedError(msg) from None

    def _url(self, suffix: str = "") -> str:
        return f"{self.client.sf.bulk2_url}ingest{suffix}"

    def _try_abort(self, job_id: str) -> Exception | None:
        """Abort a job (`PATCH {"state": "Aborted"}`); None, or why it failed.

        A step of work under way: the quota guard lets it through.
        """
        try:
            self.client.call(
                f"bulk abort {job_id}",
                lambda sf: self._raw(
                    sf, "PATCH", self._url(f"/{job_id}"), json={"state": "Aborted"}
                ),
                idempotent=True,
                new_work=False,
            )
        except (CallFailed, TargetSalesforceError) as exc:
            return exc
        return None

    def _abort(self, job_id: str, late: str) -> dict[str, Any]:
        """Abort a job that outlived `bulk_timeout`; its info once it is final.

        Salesforce goes on processing a job the client stopped waiting for, so
        a rerun would race it (or insert its rows twice). The job is aborted
        (Bulk API 2.0 developer guide, "Close or Abort a Job": PATCH
        jobs/ingest/{jobId} with `{"state": "Aborted"}`) and polled until it
        is final, so that its result files tell which rows it processed. A job
        that finished meanwhile refuses the abort (INVALIDJOBSTATE "Aborting
        already Completed Job not allowed", restforce/restforce#905): its
        status then shows it final.

        Raises:
            BulkJobFailedError: the abort failed and the job is not final, or
                it is still not final `ABORT_WAIT_SECONDS` after the abort.
        """
        self.client.logger.warning("%s; aborting it", late)
        failed = self._try_abort(job_id)
        why = "" if failed is None else f"aborting it failed ({failed})"
        deadline = time.monotonic() + ABORT_WAIT_SECONDS
        while True:
            try:
                info = self.state(job_id)
            except TargetSalesforceError as exc:
                info, why = {}, why or f"its state after the abort is unknown ({exc})"
            state = str(info.get("state"))
            if state in BULK_DONE:
                if state == "Aborted" and not info.get("errorMessage"):
                    info["errorMessage"] = (
                        f"aborted by the target after bulk_timeout {self.timeout:g}s"
                    )
                return info
            if not why and time.monotonic() > deadline:
                why = f"aborted, but still {state} {ABORT_WAIT_SECONDS}s later"
            if why:
                msg = (
                    f"{late}; {why}. Salesforce may still write its records: look "
                    f"job {job_id} up in Setup > Bulk Data Load Jobs and abort it "
                    "there before a rerun. Stopping without STATE"
                )
                raise BulkJobFailedError(msg)
            self.sleep(self.poll_interval)

    def ingest(
        self,
        operation: str,
        sobject: str,
        external_id_field: str | None,
        csv_text: str,
        hooks: JobHooks | None = None,
    ) -> BulkOutcome:
        """Run one Bulk 2.0 ingest job to the end and fetch its per-record results.

        A job that ends Failed or Aborted is not an error here: its result
        files are fetched all the same (`BulkOutcome.state` tells). A job still
        running after `bulk_timeout` is aborted first (see `_abort`). `hooks`
        hear of every job created, before its upload, and of every job
        abandoned while Open (the insert journal records and drops them there).

        Raises:
            BulkJobFailedError: when a job that outlived `bulk_timeout` cannot
                be aborted, or a step on the existing job fails.
        """
        body: dict[str, Any] = {
            "object": sobject,
            "operation": operation,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "CRLF",
        }
        if operation == "upsert":
            body["externalIdFieldName"] = external_id_field

        job_id = self._uploaded_job(body, csv_text, hooks or JobHooks())
        try:
            self._bulk_step(
                f"bulk close {job_id}",
                lambda sf: self._raw(
                    sf,
                    "PATCH",
                    self._url(f"/{job_id}"),
                    json={"state": "UploadComplete"},
                ),
                new_work=True,
            )
        except TargetSalesforceError:
            # A retried close whose first reply was lost is refused (the job is
            # no longer Open): the close did happen, so go on to poll the job.
            info = self.state(job_id)
            if str(info.get("state")) == "Open":
                raise
            self.client.logger.info(
                "bulk close %s: job already %s; polling it", job_id, info.get("state")
            )
        return self.finish(job_id, sobject)

    def _upload_request(
        self, job_id: str, csv_text: str
    ) -> Callable[[Salesforce], requests.Response]:
        """The call that uploads a job's CSV (`PUT .../batches`, 201 expected)."""
        return lambda sf: self._raw(
            sf,
            "PUT",
            self._url(f"/{job_id}/batches"),
            expect=HTTP_CREATED,
            data=csv_text.encode("utf-8"),
            headers={"Content-Type": "text/csv; charset=UTF-8"},
        )

    def _uploaded_job(
        self,
        body: dict[str, Any],
        csv_text: str,
        hooks: JobHooks,
    ) -> str:
        """Create a job and upload its CSV; the job id (the job still Open).

        An upload whose reply is lost or refused (5xx, connection error) is not
        sent again to the same job: a real org refuses a second upload to a job
        ("Found multiple contents for job: only one upload is allowed"; see the
        fidelity audit in sandbox/SALESFORCE.md), so the run used to stop there.
        The job, still Open and so never processed, is aborted instead (then
        `hooks.abandoned`), and the CSV goes to a new job (up to `max_retries`
        times, backing off as for other calls).

        Raises:
            TargetSalesforceError: the upload was refused (`BulkJobFailedError`
                for an answer about the CSV), or the last job's failed too.
        """
        url = self._url
        fresh_jobs = self.client.max_retries
        for attempt in range(fresh_jobs + 1):
            # Creating a job writes no record: a retry after a lost reply at
            # worst leaves an empty Open job behind, which Salesforce discards.
            job = self.client.call(
                "bulk create job",
                lambda sf: self._raw(sf, "POST", url(), json=body).json(),
                idempotent=True,
            )
            job_id = str(job["id"])
            hooks.created(job_id)
            try:
                self._bulk_step(
                    f"bulk upload {job_id}",
                    self._upload_request(job_id, csv_text),
                    new_work=True,
                    idempotent=False,
                )
            except TargetSalesforceError as exc:
                if self._try_abort(job_id) is None:
                    hooks.abandoned(job_id)
                # an answer about the CSV, the quota or the settings: the same
                # upload would fail again
                if attempt == fresh_jobs or not isinstance(exc, OutcomeUnknownError):
                    raise
                self.client.logger.warning(
                    "%s; job %s aborted (an Open job processes nothing), its "
                    "rows go in a new job",
                    exc,
                    job_id,
                )
                self.sleep(self.client.backoff * 2**attempt)
                continue
            return job_id
        raise AssertionError  # pragma: no cover - the loop returns or raises

    def state(self, job_id: str) -> dict[str, Any]:
        """The job's info (its `state` and `errorMessage`, among others).

        Raises:
            BulkJobFailedError: when the call fails.
        """
        info: dict[str, Any] = self._bulk_step(
            f"bulk status {job_id}", lambda sf: self.state_raw(sf, job_id)
        )
        return info

    def state_raw(self, sf: Salesforce, job_id: str) -> dict[str, Any]:
        """One job-info call, for `SalesforceClient.call` (errors as they come)."""
        info: dict[str, Any] = self._raw(sf, "GET", self._url(f"/{job_id}")).json()
        return info

    def abort(self, job_id: str) -> None:
        """Abort an Open job (its upload never completed: nothing was processed).

        Raises:
            BulkJobFailedError: when the call fails.
        """
        failed = self._try_abort(job_id)
        if failed is not None:
            msg = f"bulk abort {job_id}: {failed}"
            raise BulkJobFailedError(msg)

    def finish(self, job_id: str, sobject: str) -> BulkOutcome:
        """Poll a closed job until it ends (`bulk_timeout`), then read its results.

        Raises:
            BulkJobFailedError: when the job does not finish in time, or a call
                on it fails.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            info = self.state(job_id)
            state = str(info.get("state"))
            if state in BULK_DONE:
                break
            if time.monotonic() > deadline:
                late = (
                    f"Bulk 2.0 job {job_id} on {sobject} still {state} after "
                    f"{self.timeout:g}s (bulk_timeout)"
                )
                info = self._abort(job_id, late)
                state = str(info.get("state"))
                break
            self.sleep(self.poll_interval)
        if state != "JobComplete":
            # A Failed (or Aborted) job may have processed some rows: its result
            # files still tell which; the caller settles them before stopping.
            self.client.logger.error(
                "Bulk 2.0 job %s on %s ended %s: %s",
                job_id,
                sobject,
                state,
                info.get("errorMessage") or "no error message",
            )
        return BulkOutcome(
            job_id=job_id,
            successful=self.results(job_id, "successfulResults"),
            failed=self.results(job_id, "failedResults"),
            unprocessed=self.results(job_id, "unprocessedrecords"),
            state=state,
            error_message=str(info.get("errorMessage") or ""),
        )

    def results(self, job_id: str, kind: str) -> list[dict[str, str]]:
        """One result file of a finished job, as rows.

        Raises:
            BulkJobFailedError: when the call fails.
        """
        # Salesforce sends UTF-8 under a bare `text/csv` (no charset), which
        # `requests` would decode as ISO-8859-1: decode the bytes ourselves.
        body = self._bulk_step(
            f"bulk {kind} {job_id}",
            lambda sf: self._raw(sf, "GET", self._url(f"/{job_id}/{kind}/")).content,
        )
        return parse_csv(decode_csv(body))


def decode_csv(body: bytes) -> str:
    """A Bulk 2.0 result file as text: always UTF-8 (a BOM, if any, dropped)."""
    return body.decode("utf-8-sig")
