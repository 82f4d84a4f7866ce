"""All Salesforce HTTP for the target, through simple-salesforce and one session.

One `SalesforceClient` per run. It logs in lazily, keeps the describe cache, reads
`Sforce-Limit-Info` after every call and refuses to make another call once usage
is above `quota_percent`. It logs in again once on INVALID_SESSION_ID, stops on
REQUEST_LIMIT_EXCEEDED for the daily allocation ("TotalRequests") but retries the
transient concurrency limits ("ConcurrentRequests", "ConcurrentPerOrgLongTxn") with
exponential backoff for up to `concurrent_limit_max_wait` seconds, retries HTTP 429
(the request was refused, not processed) on any call and idempotent calls on 5xx
and connection errors, with a bounded backoff. Only answers that concern the
records of one call (300, 400, 404, a lock, an Apex APEX_ERROR) come back as
`CallFailed` so the sink can reject or retry those records. A whole call refused
for a settings problem (400 JSON_PARSER_ERROR, an Apex path with no class behind
it) raises `ConfigurationError`; every other failure (retries used up, an
unexpected status, a broken reply) raises `TargetSalesforceError`: the records
were not loaded, so the run stops without STATE and a rerun loads them.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import backoff
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceRefusedRequest,
)
from simple_salesforce.util import exception_handler

from target_salesforce.auth import Token, login
from target_salesforce.bulk import parse_csv
from target_salesforce.values import CODE_LOCK_ROW, JsonValue

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

T = TypeVar("T")

DEFAULT_API_VERSION: Final = "62.0"
HTTP_TOO_MANY_REQUESTS: Final = 429
TRANSIENT_STATUS: Final = frozenset({HTTP_TOO_MANY_REQUESTS, 500, 502, 503, 504})
# whole-call answers that are about the records sent (a reason to reject them)
RECORD_LEVEL_STATUS: Final = frozenset({300, 400, 404})
BULK_DONE: Final = frozenset({"JobComplete", "Failed", "Aborted"})
HTTP_CREATED: Final = 201
HTTP_NOT_FOUND: Final = 404
CODE_APEX_ERROR: Final = "APEX_ERROR"
CODE_JSON_PARSER_ERROR: Final = "JSON_PARSER_ERROR"
CODE_REQUEST_LIMIT: Final = "REQUEST_LIMIT_EXCEEDED"
# REQUEST_LIMIT_EXCEEDED texts of the transient concurrency limits (the daily
# allocation says "TotalRequests Limit exceeded."): SalesforceLabs/OrgCheck#432,
# salesforcecli/cli PR #2180 (retries it), mautic/mautic#5006.
TRANSIENT_LIMITS: Final = ("ConcurrentRequests", "ConcurrentPerOrgLongTxn")
# Salesforce's answer for an /services/apexrest/ path no @RestResource maps
APEX_NO_MAPPING: Final = "Could not find a match for URL"
MAX_LIMIT_WAIT_STEP: Final = 60.0
# raw REST calls: anything from here up is handed to simple-salesforce's error mapping
FIRST_NON_SUCCESS_STATUS: Final = 300


class TargetSalesforceError(RuntimeError):
    """A fatal condition: the run stops, no STATE is written after it."""


class QuotaExceededError(TargetSalesforceError):
    """API usage is above `quota_percent`."""


class RequestLimitError(TargetSalesforceError):
    """Salesforce answered REQUEST_LIMIT_EXCEEDED."""


class ConfigurationError(TargetSalesforceError):
    """Salesforce refused a whole call because of the settings, not the records.

    An Apex path with no class behind it (404), a body Salesforce cannot parse
    (400 JSON_PARSER_ERROR), a field or object the whole call is refused for, or
    missing access (403): the run stops without STATE whatever `on_reject` says,
    and a rerun after fixing the settings loads the records.
    """


class _ConcurrentLimit(Exception):  # noqa: N818 - internal retry signal
    """REQUEST_LIMIT_EXCEEDED for a transient concurrency limit; retried."""

    def __init__(self, what: str, message: str) -> None:
        """Keep what was called and Salesforce's message."""
        super().__init__(f"{what}: {message}")
        self.what = what
        self.message = message


class BulkJobFailedError(TargetSalesforceError):
    """A Bulk 2.0 job did not finish in time, or a call on an existing job failed."""


class CallFailed(Exception):  # noqa: N818 - a result, not a crash
    """One call failed as a whole; its records are rejected (or retried)."""

    def __init__(
        self, code: str, message: str, status: int, fields: list[str] | None = None
    ) -> None:
        """Keep the Salesforce error code and message."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields or []


def error_details(content: JsonValue) -> tuple[str, str, list[str]]:
    """Pull (errorCode, message, fields) out of a Salesforce error body."""
    first = content[0] if isinstance(content, list) and content else content
    if isinstance(first, dict):
        code = (
            first.get("errorCode") or first.get("exceptionCode") or first.get("error")
        )
        message = (
            first.get("message")
            or first.get("exceptionMessage")
            or first.get("error_description")
            or ""
        )
        return (
            str(code or "UNKNOWN_ERROR"),
            str(message),
            list(first.get("fields") or []),
        )
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    return "UNKNOWN_ERROR", str(content)[:500], []


def refusal_error(what: str, exc: SalesforceRefusedRequest) -> Exception:
    """The exception for an HTTP 403: a limit or access, never the records."""
    code, message, _ = error_details(exc.content)
    if code == CODE_REQUEST_LIMIT and any(t in message for t in TRANSIENT_LIMITS):
        return _ConcurrentLimit(what, message)
    if code == CODE_REQUEST_LIMIT:
        return RequestLimitError(
            f"{what}: Salesforce refused the call with REQUEST_LIMIT_EXCEEDED "
            f"({message}); the org's API limit is used up. Stopping; rerun once "
            "usage has dropped."
        )
    return ConfigurationError(
        f"{what}: Salesforce refused the call with HTTP {exc.status} {code}: "
        f"{message}; the records of this call are not loaded, fix access and rerun"
    )


def whole_call_error(what: str, exc: SalesforceError) -> Exception | None:
    """CallFailed for APEX_ERROR, ConfigurationError for a settings answer, or None.

    APEX_ERROR (HTTP 500) is an unhandled Apex exception: the class rolled its
    transaction back, so the records were not written, and resending the same
    call fails the same way. 400 JSON_PARSER_ERROR (a body Salesforce cannot
    deserialize) and 404 "Could not find a match for URL" (no Apex class) are
    settings problems.
    """
    code, message, fields = error_details(exc.content)
    if code == CODE_APEX_ERROR:
        return CallFailed(code, message, exc.status, fields)
    if code == CODE_JSON_PARSER_ERROR or (
        exc.status == HTTP_NOT_FOUND and APEX_NO_MAPPING in message
    ):
        return ConfigurationError(
            f"{what}: HTTP {exc.status} {code}: {message}; Salesforce refused the "
            "whole call, which is a settings problem (mapping, payload template, "
            "Apex path), not a record problem. Nothing of this call was written "
            "and no STATE covers it: fix the settings and rerun."
        )
    return None


def retry_concurrent_limits(
    attempt: Callable[[], T],
    *,
    what: str,
    max_time: float,
    factor: float,
    logger: logging.Logger,
) -> T:
    """Run `attempt`, retrying `_ConcurrentLimit` with exponential backoff.

    Full jitter, waits from `factor` seconds doubling up to 60 s, for up to
    `max_time` seconds in all (python-backoff).

    Raises:
        RequestLimitError: the concurrency limit outlasted `max_time`.
    """

    def waiting(details: Mapping[str, Any]) -> None:
        logger.warning(
            "%s: concurrent API request limit exceeded; retrying in %.2fs",
            what,
            float(details.get("wait") or 0.0),
        )

    retrying = backoff.on_exception(
        backoff.expo,
        _ConcurrentLimit,
        max_time=max_time,
        factor=max(factor, 0.001),
        max_value=MAX_LIMIT_WAIT_STEP,
        jitter=backoff.full_jitter,
        on_backoff=waiting,
        logger=None,
    )(attempt)
    try:
        return retrying()
    except _ConcurrentLimit as exc:
        msg = (
            f"{what}: Salesforce refused the call with REQUEST_LIMIT_EXCEEDED "
            f"({exc.message}) for more than {max_time:g}s "
            "(concurrent_limit_max_wait); the records of this call are not "
            "loaded. Stopping; rerun when fewer long requests run in the org."
        )
        raise RequestLimitError(msg) from None


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


class PinnedCASession(requests.Session):
    """A session whose configured CA bundle wins over REQUESTS_CA_BUNDLE.

    requests merges the environment into every request: with `trust_env` on and
    no per-request `verify`, REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) replaces
    `Session.verify` (`Session.merge_environment_settings`). Proxies must still
    come from the environment, so `trust_env` stays on and the merged `verify`
    is put back to the configured bundle unless a caller passed its own.
    """

    def __init__(self, ca_bundle: str) -> None:
        """Verify TLS against `ca_bundle` on every request."""
        super().__init__()
        self.ca_bundle = ca_bundle
        self.verify = ca_bundle

    def merge_environment_settings(
        self,
        url: Any,  # noqa: ANN401 - requests' own signature
        proxies: Any,  # noqa: ANN401 - requests' own signature
        stream: Any,  # noqa: ANN401 - requests' own signature
        verify: Any,  # noqa: ANN401 - requests' own signature
        cert: Any,  # noqa: ANN401 - requests' own signature
    ) -> Any:  # noqa: ANN401 - requests' own signature
        """The environment's proxies, but the configured CA bundle."""
        settings = super().merge_environment_settings(
            url, proxies, stream, verify, cert
        )
        if verify is None or verify is True:
            settings["verify"] = self.ca_bundle
        return settings


def make_session(config: Mapping[str, Any]) -> requests.Session:
    """The one HTTP session: proxies from the environment, CA bundle from settings.

    `trust_env` stays on, so HTTPS_PROXY/NO_PROXY apply. An explicit `ca_bundle`
    wins over REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE; without it, requests' own
    defaults (the environment, then certifi) apply.

    Raises:
        ConfigurationError: `ca_bundle` names a file that does not exist.
    """
    ca_bundle = config.get("ca_bundle")
    if ca_bundle and not Path(str(ca_bundle)).exists():
        msg = f"ca_bundle {ca_bundle} does not exist; set the path of a PEM bundle"
        raise ConfigurationError(msg)
    session = PinnedCASession(str(ca_bundle)) if ca_bundle else requests.Session()
    session.headers["User-Agent"] = "target-salesforce"
    return session


class SalesforceClient:
    """simple-salesforce with login, quota guard, retries and Bulk 2.0 ingest."""

    def __init__(
        self, config: Mapping[str, Any], logger: logging.Logger | None = None
    ) -> None:
        """Read the settings; no network until the first call."""
        self.config = config
        self.logger = logger or logging.getLogger("target-salesforce.client")
        self.session = make_session(config)
        self.version = str(config.get("api_version") or DEFAULT_API_VERSION)
        self.timeout = float(config.get("request_timeout", 120))
        self.quota_percent = float(config.get("quota_percent", 80))
        self.max_retries = int(config.get("max_retries", 3))
        self.backoff = float(config.get("retry_backoff_seconds", 1.0))
        self.bulk_poll = float(config.get("bulk_poll_interval", 2.0))
        self.bulk_timeout = float(config.get("bulk_timeout", 3600))
        self.limit_wait = float(config.get("concurrent_limit_max_wait", 300))
        self.sleep: Callable[[float], None] = time.sleep
        self.usage: tuple[int, int] | None = None
        self.calls = 0
        self.logins = 0
        self._sf: Salesforce | None = None
        self._token: Token | None = None
        self._lock = threading.RLock()
        self._describe: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ session

    @property
    def sf(self) -> Salesforce:
        """The simple-salesforce client, logging in on first use."""
        with self._lock:
            if self._sf is None:
                self._sf = self._connect()
            return self._sf

    def _connect(self) -> Salesforce:
        if self._token is not None and self._token.flow == "access_token":
            msg = (
                "INVALID_SESSION_ID: the configured access_token has expired and a "
                "direct token cannot be refreshed; configure a login flow"
            )
            raise TargetSalesforceError(msg)
        self._token = login(self.config, self.session, timeout=self.timeout)
        self.logins += 1
        sf = Salesforce(
            session_id=self._token.access_token,
            instance_url=self._token.instance_url,
            session=self.session,
            version=self.version,
        )
        self.logger.info(
            "Connected to %s (auth flow %s)", self._token.instance_url, self._token.flow
        )
        return sf

    @property
    def instance_url(self) -> str | None:
        """The instance the client talks to (after login)."""
        return self._token.instance_url if self._token else None

    # ------------------------------------------------------------------ quota

    def _note_usage(self) -> None:
        usage = self._sf.api_usage.get("api-usage") if self._sf else None
        if usage is not None:
            self.usage = (int(usage.used), int(usage.total))

    def usage_percent(self) -> float | None:
        """Last seen API usage in percent of the org's daily limit."""
        if not self.usage or not self.usage[1]:
            return None
        return 100.0 * self.usage[0] / self.usage[1]

    def check_quota(self) -> None:
        """Refuse the next call when the last seen usage is above quota_percent.

        Raises:
            QuotaExceededError: usage is above the limit.
        """
        percent = self.usage_percent()
        if percent is not None and percent > self.quota_percent and self.usage:
            msg = (
                f"API usage {self.usage[0]}/{self.usage[1]} ({percent:.1f}%) is above "
                f"quota_percent {self.quota_percent:g}; stopping before the next "
                "call. Records already written are settled; rerun later."
            )
            raise QuotaExceededError(msg)

    # ------------------------------------------------------------------ calls

    def wait_before_retry(self, attempt: int) -> None:
        """Sleep with exponential backoff (base `retry_backoff_seconds`) and jitter."""
        delay = self.backoff * (2**attempt)
        self.sleep(delay + random.uniform(0, self.backoff / 4))  # noqa: S311 - jitter

    def _http_error(
        self, what: str, exc: SalesforceError, attempt: int, *, idempotent: bool
    ) -> None:
        """Return when the call may be retried; raise otherwise.

        Raises:
            CallFailed: the answer is about the records (300, 400, 404, a lock,
                APEX_ERROR: an Apex exception, never retried).
            ConfigurationError: the whole call was refused for its settings.
            TargetSalesforceError: retries used up, or a status that is not.
        """
        code, message, fields = error_details(exc.content)
        whole_call = whole_call_error(what, exc)
        if whole_call is not None:
            raise whole_call from None
        if code == CODE_LOCK_ROW or exc.status in RECORD_LEVEL_STATUS:
            raise CallFailed(code, message, exc.status, fields) from None
        # 429 means the request was refused unprocessed: safe to resend any call
        retryable = exc.status in TRANSIENT_STATUS and (
            idempotent or exc.status == HTTP_TOO_MANY_REQUESTS
        )
        if retryable and attempt < self.max_retries:
            self.logger.warning("%s: HTTP %s (%s); retrying", what, exc.status, code)
            return
        tried = f" after {attempt + 1} attempts" if retryable else ""
        outcome = (
            "the records of this call are not loaded, rerun to load them"
            if exc.status == HTTP_TOO_MANY_REQUESTS
            else "the outcome of this call is unknown, rerun to settle its records"
        )
        msg = f"{what}: HTTP {exc.status} {code}: {message}{tried}; {outcome}"
        raise TargetSalesforceError(msg) from None

    def call(
        self, what: str, func: Callable[[Salesforce], T], *, idempotent: bool
    ) -> T:
        """Run one API call, resent while a concurrency limit refuses it.

        Raises:
            RequestLimitError: the concurrency limit outlasted the wait.
        """
        return retry_concurrent_limits(
            lambda: self._call(what, func, idempotent=idempotent),
            what=what,
            max_time=self.limit_wait,
            factor=self.backoff,
            logger=self.logger,
        )

    def _call(
        self, what: str, func: Callable[[Salesforce], T], *, idempotent: bool
    ) -> T:
        """Run one API call with the quota guard, re-login and retries.

        Args:
            what: a short name for logs and errors.
            func: does the call with the simple-salesforce client.
            idempotent: whether a 5xx or connection error may be retried.

        Returns:
            What `func` returns.

        Raises:
            TargetSalesforceError: on fatal conditions.
            CallFailed: when the call failed for its records.
        """
        relogged = False
        attempt = 0
        while True:
            self.check_quota()
            sf = self.sf
            try:
                self.calls += 1
                result = func(sf)
            except SalesforceExpiredSession:
                if relogged:
                    msg = f"{what}: INVALID_SESSION_ID again right after a new login"
                    raise TargetSalesforceError(msg) from None
                relogged = True
                self.logger.warning("%s: session expired; logging in again", what)
                with self._lock:
                    if self._sf is sf:
                        self._sf = self._connect()
                continue
            except SalesforceRefusedRequest as exc:
                # HTTP 403: a limit or access, never about the records
                raise refusal_error(what, exc) from None
            except SalesforceError as exc:
                self._http_error(what, exc, attempt, idempotent=idempotent)
                self.wait_before_retry(attempt)
                attempt += 1
                continue
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                if idempotent and attempt < self.max_retries:
                    self.logger.warning("%s: %s; retrying", what, type(exc).__name__)
                    self.wait_before_retry(attempt)
                    attempt += 1
                    continue
                msg = (
                    f"{what}: {type(exc).__name__} talking to Salesforce; the "
                    "outcome of this call is unknown, rerun to settle its records"
                )
                raise TargetSalesforceError(msg) from None
            except (requests.RequestException, ValueError) as exc:
                # e.g. a reply that is not JSON: the outcome of the call is unknown
                msg = (
                    f"{what}: unusable reply from Salesforce ({type(exc).__name__}); "
                    "the outcome of this call is unknown, rerun to settle its records"
                )
                raise TargetSalesforceError(msg) from None
            self._note_usage()
            return result

    def describe(self, sobject: str) -> dict[str, Any]:
        """The sObject describe (cached for the run).

        Raises:
            TargetSalesforceError: when the object does not exist.
        """
        with self._lock:
            if sobject not in self._describe:
                try:
                    result = self.call(
                        f"describe {sobject}",
                        lambda sf: sf.restful(
                            f"sobjects/{sobject}/describe", timeout=self.timeout
                        ),
                        idempotent=True,
                    )
                except CallFailed as exc:
                    msg = f"sObject {sobject!r} cannot be described: {exc}"
                    raise TargetSalesforceError(msg) from None
                self._describe[sobject] = dict(result or {})
            return self._describe[sobject]

    def collections(
        self, method: str, path: str, kwargs: Mapping[str, Any], *, idempotent: bool
    ) -> JsonValue:
        """One sObject Collections call (path under /services/data/vXX.X/)."""
        return self.call(
            f"{method} {path}",
            lambda sf: sf.restful(path, method=method, timeout=self.timeout, **kwargs),
            idempotent=idempotent,
        )

    def apex(self, method: str, path: str, body: JsonValue) -> JsonValue:
        """One Apex REST call to /services/apexrest/<path>."""
        return self.call(
            f"apex {method} {path}",
            lambda sf: sf.apexecute(
                path, method=method, data=body, timeout=self.timeout
            ),
            idempotent=False,
        )

    # ------------------------------------------------------------------ bulk 2.0

    def _raw(
        self,
        sf: Salesforce,
        method: str,
        url: str,
        *,
        expect: int | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        headers = dict(sf.headers)
        headers.update(kwargs.pop("headers", {}))
        response = self.session.request(
            method, url, headers=headers, timeout=self.timeout, **kwargs
        )
        if response.status_code >= FIRST_NON_SUCCESS_STATUS:
            exception_handler(response, name=url)
        if expect is not None and response.status_code != expect:
            msg = f"{method} {url}: expected HTTP {expect}, got {response.status_code}"
            raise TargetSalesforceError(msg)
        info = response.headers.get("Sforce-Limit-Info")
        if info:
            sf.api_usage = Salesforce.parse_api_usage(info)
        return response

    def _bulk_step(self, what: str, func: Callable[[Salesforce], T]) -> T:
        """One idempotent call on an existing Bulk job; any failure is fatal.

        Once the job exists its records may be written, so a failed step leaves
        their outcome unknown: the run stops without STATE instead of rejecting.

        Raises:
            BulkJobFailedError: when the step fails for any reason.
        """
        try:
            return self.call(what, func, idempotent=True)
        except CallFailed as exc:
            msg = (
                f"{what}: HTTP {exc.status} {exc}; the outcome of the job's records "
                "is unknown, so the run stops without STATE"
            )
            raise BulkJobFailedError(msg) from None

    def bulk_ingest(
        self, operation: str, sobject: str, external_id_field: str | None, csv_text: str
    ) -> BulkOutcome:
        """Run one Bulk 2.0 ingest job to the end and fetch its per-record results.

        A job that ends Failed or Aborted is not an error here: its result
        files are fetched all the same (`BulkOutcome.state` tells).

        Raises:
            BulkJobFailedError: when the job does not finish in time, or a step
                on the existing job fails.
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

        def url(suffix: str = "") -> str:
            return f"{self.sf.bulk2_url}ingest{suffix}"

        # Creating a job writes no record: a retry after a lost reply at worst
        # leaves an empty Open job behind, which Salesforce discards.
        job = self.call(
            "bulk create job",
            lambda sf: self._raw(sf, "POST", url(), json=body).json(),
            idempotent=True,
        )
        job_id = str(job["id"])
        step = self._bulk_step
        step(
            f"bulk upload {job_id}",
            lambda sf: self._raw(
                sf,
                "PUT",
                url(f"/{job_id}/batches"),
                expect=HTTP_CREATED,
                data=csv_text.encode("utf-8"),
                headers={"Content-Type": "text/csv; charset=UTF-8"},
            ),
        )
        try:
            step(
                f"bulk close {job_id}",
                lambda sf: self._raw(
                    sf, "PATCH", url(f"/{job_id}"), json={"state": "UploadComplete"}
                ),
            )
        except TargetSalesforceError:
            # A retried close whose first reply was lost is refused (the job is
            # no longer Open): the close did happen, so go on to poll the job.
            info = step(
                f"bulk status {job_id}",
                lambda sf: self._raw(sf, "GET", url(f"/{job_id}")).json(),
            )
            if str(info.get("state")) == "Open":
                raise
            self.logger.info(
                "bulk close %s: job already %s; polling it", job_id, info.get("state")
            )
        deadline = time.monotonic() + self.bulk_timeout
        while True:
            info = step(
                f"bulk status {job_id}",
                lambda sf: self._raw(sf, "GET", url(f"/{job_id}")).json(),
            )
            state = str(info.get("state"))
            if state in BULK_DONE:
                break
            if time.monotonic() > deadline:
                msg = (
                    f"Bulk 2.0 job {job_id} on {sobject} still {state} after "
                    f"{self.bulk_timeout:g}s; its records are not settled"
                )
                raise BulkJobFailedError(msg)
            self.sleep(self.bulk_poll)
        if state != "JobComplete":
            # A Failed (or Aborted) job may have processed some rows: its result
            # files still tell which; the caller settles them before stopping.
            self.logger.error(
                "Bulk 2.0 job %s on %s ended %s: %s",
                job_id,
                sobject,
                state,
                info.get("errorMessage") or "no error message",
            )

        def results(kind: str) -> list[dict[str, str]]:
            # Salesforce sends UTF-8 under a bare `text/csv` (no charset), which
            # `requests` would decode as ISO-8859-1: decode the bytes ourselves.
            body = step(
                f"bulk {kind} {job_id}",
                lambda sf: self._raw(sf, "GET", url(f"/{job_id}/{kind}/")).content,
            )
            return parse_csv(decode_csv(body))

        return BulkOutcome(
            job_id=job_id,
            successful=results("successfulResults"),
            failed=results("failedResults"),
            unprocessed=results("unprocessedrecords"),
            state=state,
            error_message=str(info.get("errorMessage") or ""),
        )


def decode_csv(body: bytes) -> str:
    """A Bulk 2.0 result file as text: always UTF-8 (a BOM, if any, dropped)."""
    return body.decode("utf-8-sig")
