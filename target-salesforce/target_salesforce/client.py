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
were not loaded, so the run stops without STATE and a rerun loads them. The
exceptions, and how an error body maps to one, are in `errors`; Bulk 2.0 jobs
run in `bulk_client.BulkClient` over this client's calls.
"""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

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
from target_salesforce.errors import (
    CallFailed,
    ConcurrentLimitError,
    ConfigurationError,
    OutcomeUnknownError,
    QuotaExceededError,
    RequestLimitError,
    TargetSalesforceError,
    error_details,
    refusal_error,
    whole_call_error,
)
from target_salesforce.values import CODE_LOCK_ROW, JsonValue, encode_json

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

T = TypeVar("T")

HTTP_TOO_MANY_REQUESTS: Final = 429
TRANSIENT_STATUS: Final = frozenset({HTTP_TOO_MANY_REQUESTS, 500, 502, 503, 504})
# whole-call answers that are about the records sent (a reason to reject them)
RECORD_LEVEL_STATUS: Final = frozenset({300, 400, 404})
# raw calls (Apex): anything from here up goes to simple-salesforce's error mapping
FIRST_NON_SUCCESS_STATUS: Final = 300
MAX_LIMIT_WAIT_STEP: Final = 60.0


class _Transient(Exception):  # noqa: N818 - internal retry signal
    """A failure worth resending the same call for (5xx, 429, connection)."""

    def __init__(self, note: str, final: str) -> None:
        """Keep the log note for a retry and the message for giving up."""
        super().__init__(note)
        self.note = note
        self.final = final


class _Relogin:
    """One new login per call: a second INVALID_SESSION_ID in a row is fatal."""

    def __init__(self, what: str) -> None:
        """Nothing used yet."""
        self.what = what
        self.used = False

    def use(self) -> None:
        """Take the one new login of this call.

        Raises:
            TargetSalesforceError: the call already logged in again once.
        """
        if self.used:
            msg = f"{self.what}: INVALID_SESSION_ID again right after a new login"
            raise TargetSalesforceError(msg)
        self.used = True


def retry_concurrent_limits(
    attempt: Callable[[], T],
    *,
    what: str,
    max_time: float,
    factor: float,
    logger: logging.Logger,
) -> T:
    """Run `attempt`, retrying `ConcurrentLimitError` with exponential backoff.

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
        ConcurrentLimitError,
        max_time=max_time,
        factor=max(factor, 0.001),
        max_value=MAX_LIMIT_WAIT_STEP,
        jitter=backoff.full_jitter,
        on_backoff=waiting,
        logger=None,
    )(attempt)
    try:
        return retrying()
    except ConcurrentLimitError as exc:
        msg = (
            f"{what}: Salesforce refused the call with REQUEST_LIMIT_EXCEEDED "
            f"({exc.message}) for more than {max_time:g}s "
            "(concurrent_limit_max_wait); the records of this call are not "
            "loaded. Stopping; rerun when fewer long requests run in the org."
        )
        raise RequestLimitError(msg) from None


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


def raw_request(  # noqa: PLR0913 - the request's parts, as requests names them
    sf: Salesforce,
    session: requests.Session,
    method: str,
    url: str,
    *,
    name: str,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> requests.Response:
    """One request with the session's auth headers, outside simple-salesforce's helpers.

    An error status raises as simple-salesforce would (`name` in its message),
    and `Sforce-Limit-Info` updates `sf.api_usage` (the quota guard).
    """
    response = session.request(
        method, url, headers={**sf.headers, **(headers or {})}, **kwargs
    )
    if response.status_code >= FIRST_NON_SUCCESS_STATUS:
        exception_handler(response, name=name)
    info = response.headers.get("Sforce-Limit-Info")
    if info:
        sf.api_usage = Salesforce.parse_api_usage(info)
    return response


class SalesforceClient:
    """simple-salesforce with login, quota guard, retries and Bulk 2.0 ingest."""

    def __init__(
        self, config: Mapping[str, Any], logger: logging.Logger | None = None
    ) -> None:
        """Read the settings; no network until the first call.

        `config` holds every setting (the SDK fills the schema's defaults in).
        """
        self.config = config
        self.logger = logger or logging.getLogger("target-salesforce.client")
        self.session = make_session(config)
        self.version = str(config["api_version"])
        self.timeout = float(config["request_timeout"])
        self.quota_percent = float(config["quota_percent"])
        self.max_retries = int(config["max_retries"])
        self.backoff = float(config["retry_backoff_seconds"])
        self.limit_wait = float(config["concurrent_limit_max_wait"])
        self.usage: tuple[int, int] | None = None
        self.calls = 0
        self.logins = 0
        self.retries = 0
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
                "write. Records already written are settled; rerun later."
            )
            raise QuotaExceededError(msg)

    # ------------------------------------------------------------------ calls

    def retrying(
        self,
        exception: type[Exception],
        *,
        giveup: Callable[[Exception], bool] = lambda _: False,
        on_backoff: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> Callable[[Callable[[], T]], Callable[[], T]]:
        """The target's one retry policy (python-backoff), for calls and records.

        At most `max_retries` resends; waits of `retry_backoff_seconds` doubling
        each time, plus up to a quarter of `retry_backoff_seconds` of jitter.
        """
        base = self.backoff

        def counted(details: Mapping[str, Any]) -> None:
            self.retries += 1
            if on_backoff is not None:
                on_backoff(details)

        return backoff.on_exception(
            backoff.expo,
            exception,
            factor=base,
            max_tries=self.max_retries + 1,
            jitter=lambda wait: wait + random.uniform(0, base / 4),  # noqa: S311 - spreads retries; not security
            giveup=giveup,
            on_backoff=counted,
            logger=None,
        )

    def _http_error(
        self, what: str, exc: SalesforceError, *, idempotent: bool
    ) -> NoReturn:
        """Raise the exception an HTTP error stands for.

        Raises:
            _Transient: a status worth resending the call for (5xx, 429).
            CallFailed: the answer is about the records (300, 400, 404, a lock,
                APEX_ERROR: an Apex exception, never retried).
            ConfigurationError: the whole call was refused for its settings.
            TargetSalesforceError: any other status.
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
        tried = f" after {self.max_retries + 1} attempts" if retryable else ""
        outcome = (
            "the records of this call are not loaded, rerun to load them"
            if exc.status == HTTP_TOO_MANY_REQUESTS
            else "the outcome of this call is unknown, rerun to settle its records"
        )
        msg = f"{what}: HTTP {exc.status} {code}: {message}{tried}; {outcome}"
        if retryable:
            note = f"HTTP {exc.status} ({code})"
            raise _Transient(note, msg) from None
        if exc.status in TRANSIENT_STATUS:  # a 5xx not resent, or a lasting 429
            raise OutcomeUnknownError(msg) from None
        raise TargetSalesforceError(msg) from None

    def call(
        self,
        what: str,
        func: Callable[[Salesforce], T],
        *,
        idempotent: bool,
        new_work: bool = True,
    ) -> T:
        """Run one API call, resent while a concurrency limit refuses it.

        `new_work` False marks a step of work already under way (the status
        polls and result files of a Bulk job already closed): the quota guard
        lets it go, since stopping there would leave written rows unsettled.

        Raises:
            RequestLimitError: the concurrency limit outlasted the wait.
        """
        return retry_concurrent_limits(
            lambda: self._call(what, func, idempotent=idempotent, new_work=new_work),
            what=what,
            max_time=self.limit_wait,
            factor=self.backoff,
            logger=self.logger,
        )

    def _call(
        self,
        what: str,
        func: Callable[[Salesforce], T],
        *,
        idempotent: bool,
        new_work: bool,
    ) -> T:
        """Run one API call with the quota guard, re-login and retries.

        Args:
            what: a short name for logs and errors.
            func: does the call with the simple-salesforce client.
            idempotent: whether a 5xx or connection error may be retried.
            new_work: whether the quota guard may refuse it (see `call`).

        Returns:
            What `func` returns.

        Raises:
            TargetSalesforceError: on fatal conditions (and retries used up).
            CallFailed: when the call failed for its records.
        """
        relogin = _Relogin(what)

        def waiting(details: Mapping[str, Any]) -> None:
            self.logger.warning("%s: %s; retrying", what, details["exception"].note)

        attempt = self.retrying(_Transient, on_backoff=waiting)(
            lambda: self._attempt(
                what, func, relogin, idempotent=idempotent, new_work=new_work
            )
        )
        try:
            return attempt()
        except _Transient as exc:
            raise OutcomeUnknownError(exc.final) from None

    def _attempt(
        self,
        what: str,
        func: Callable[[Salesforce], T],
        relogin: _Relogin,
        *,
        idempotent: bool,
        new_work: bool,
    ) -> T:
        """One try of a call (logging in again once if the session expired).

        Raises:
            _Transient: a failure worth resending the call for.
        """
        while True:
            if new_work:
                self.check_quota()
            sf = self.sf
            try:
                self.calls += 1
                result = func(sf)
            except SalesforceExpiredSession:
                relogin.use()
                self.logger.warning("%s: session expired; logging in again", what)
                with self._lock:
                    if self._sf is sf:
                        self._sf = self._connect()
                continue
            except SalesforceRefusedRequest as exc:
                # HTTP 403: a limit or access, never about the records
                raise refusal_error(what, exc) from None
            except SalesforceError as exc:
                self._http_error(what, exc, idempotent=idempotent)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                msg = (
                    f"{what}: {type(exc).__name__} talking to Salesforce; the "
                    "outcome of this call is unknown, rerun to settle its records"
                )
                if idempotent:
                    raise _Transient(type(exc).__name__, msg) from None
                raise OutcomeUnknownError(msg) from None
            except (requests.RequestException, ValueError) as exc:
                # e.g. a reply that is not JSON: the outcome of the call is unknown
                msg = (
                    f"{what}: unusable reply from Salesforce ({type(exc).__name__}); "
                    "the outcome of this call is unknown, rerun to settle its records"
                )
                raise OutcomeUnknownError(msg) from None
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
        """One sObject Collections call (path under /services/data/vXX.X/).

        A `json` body is encoded here by `values.encode_json` (Decimals as JSON
        numbers with every digit), not by `requests`.
        """
        if "json" in kwargs:
            body = encode_json(kwargs["json"])
            kwargs = {k: v for k, v in kwargs.items() if k != "json"} | {"data": body}
        return self.call(
            f"{method} {path}",
            lambda sf: sf.restful(path, method=method, timeout=self.timeout, **kwargs),
            idempotent=idempotent,
        )

    def apex(self, method: str, path: str, body: JsonValue) -> JsonValue:
        """One Apex REST call to /services/apexrest/<path>.

        Sent as simple-salesforce's `apexecute` sends it (its headers, its error
        mapping, the reply as JSON or else text), but with the body encoded by
        `values.encode_json`: `apexecute`'s json.dumps cannot write a Decimal.
        """
        data = None if body is None else encode_json(body)

        def send(sf: Salesforce) -> JsonValue:
            response = raw_request(
                sf,
                sf.session,
                method,
                sf.apex_url + path,
                name="apexecute",
                data=data,
                timeout=self.timeout,
            )
            try:
                return response.json()
            except ValueError:
                return response.text

        return self.call(f"apex {method} {path}", send, idempotent=False)
