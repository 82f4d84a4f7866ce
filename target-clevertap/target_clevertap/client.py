"""All HTTP to CleverTap: uploads, profile deletes and event reads (reconciliation)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

import backoff
import msgspec
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError, ProxyError

from target_clevertap.replies import Rejection, Unmatched, match_unprocessed
from target_clevertap.throttle import TokenBucket

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Mapping, Sequence

LOGGER = logging.getLogger("target-clevertap.client")
T = TypeVar("T")

REGION_HOSTS = {
    "eu1": "https://api.clevertap.com",
    "in1": "https://in1.api.clevertap.com",
    "us1": "https://us1.api.clevertap.com",
    "sg1": "https://sg1.api.clevertap.com",
    "aps3": "https://aps3.api.clevertap.com",
    "mec1": "https://mec1.api.clevertap.com",
}
UPLOAD_PATH = "/1/upload"
DELETE_PATH = "/1/delete/profiles.json"
EVENTS_PATH = "/1/events.json"
PROFILE_PATH = "/1/profile.json"
#: Get User Profiles counts among CleverTap's "other" APIs: 3 concurrent requests
#: per account (docs/api-request-limit; ../shared/docs/clevertap-api.md 2.11)
READ_CONCURRENCY = 3
_MAX_CURSOR_PAGES = 10_000


#: 429 and 503 ("retry later") mean the request was not taken; every other 5xx
#: may come after CleverTap stored the batch (an internal error, or a gateway or
#: CDN giving up on a backend that went on: 500, 501, 502, 504, 520-524...): a
#: lost reply for events. Nothing documents that a 5xx means "not stored".
def _maybe_stored(status: int) -> bool:
    return (
        status >= HTTPStatus.INTERNAL_SERVER_ERROR
        and status != HTTPStatus.SERVICE_UNAVAILABLE
    )


#: Get Events' "still in progress" code (recorded text: "Request still in
#: progress, please retry later"), whatever the HTTP status it comes with
IN_PROGRESS_CODE = 2

#: compact UTF-8 JSON for request bodies and output files (C speed)
JSON_ENCODER = msgspec.json.Encoder()


class CleverTapError(Exception):
    """A failure that stops the run (the message is safe to log)."""


class RefusedError(CleverTapError):
    """CleverTap answered a 4xx other than 401 and 429: it took the credentials."""


class RetryableError(Exception):
    """429, 5xx or a request that certainly was not sent."""


class ReadStoppedError(CleverTapError):
    """A stop was asked for while CleverTap was still preparing a read's answer."""


class AmbiguousSendError(Exception):
    """The request may have reached CleverTap, but no reply was read."""


@dataclass
class UploadResult:
    """The outcome of one upload request.

    `unmatched` holds `unprocessed` entries that no record could be matched to:
    the records not named in `rejections` are then of unknown fate.
    """

    processed: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)


def _says_in_progress(response: requests.Response) -> bool:
    try:
        return in_progress(response.json())
    except ValueError:
        return False


def _until_settled(
    fetch: Callable[[], object], tries: int, nap: Callable[[], None]
) -> object:
    """`fetch()`, asked again while it answers "still in progress" (`tries` times)."""
    reply = fetch()
    for _ in range(tries):
        if not in_progress(reply):
            break
        nap()
        reply = fetch()
    return reply


def in_progress(body: object) -> bool:
    """Whether a read reply says "still in progress" (code 2).

    Args:
        body: the parsed reply.

    Returns:
        True for an in-progress answer.
    """
    if not isinstance(body, dict) or body.get("status") == "success":
        return False
    return body.get("code") == IN_PROGRESS_CODE or (
        "in progress" in str(body.get("error", "")).lower()
    )


def profile_records(body: object) -> list[dict[str, Any]]:
    """The profiles in a Get User Profile answer (none unless `"status":"success"`).

    Args:
        body: the parsed reply.

    Returns:
        The `record` object, or each object of a `record` list.
    """
    if not isinstance(body, dict) or body.get("status") != "success":
        return []
    record = body.get("record")
    if isinstance(record, dict):
        return [record] if record else []
    if isinstance(record, list):
        return [r for r in record if isinstance(r, dict)]
    return []


def base_url_for(region: str, api_url: str | None) -> str:
    """The API base URL.

    Args:
        region: eu1 | in1 | us1 | sg1 | aps3 | mec1.
        api_url: an override (tests, proxies).

    Returns:
        The URL without a trailing slash.

    Raises:
        CleverTapError: for an unknown region.
    """
    if api_url:
        return api_url.rstrip("/")
    try:
        return REGION_HOSTS[region]
    except KeyError as exc:
        msg = f"unknown region {region!r}; use one of {', '.join(REGION_HOSTS)}"
        raise CleverTapError(msg) from exc


def _not_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """Whether a connection error happened before any byte of the request left."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ProxyError):
        return True
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, (NewConnectionError, ProxyError)) or (
        isinstance(reason, OSError) and "refused" in str(reason).lower()
    )


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])[:200]
    return str(body)[:200]


class CleverTapClient:
    """A small CleverTap API client: one keep-alive session, timeouts, retries."""

    #: seconds between fetches of an export page CleverTap is still preparing
    in_progress_wait = 2.0
    #: fetches of one such page before giving up
    in_progress_tries = 15

    def __init__(  # noqa: PLR0913 - keyword-only settings
        self,
        *,
        account_id: str,
        passcode: str,
        region: str = "eu1",
        api_url: str | None = None,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        max_tries: int = 8,
        read_rate: float = 10.0,
    ) -> None:
        """Create the client.

        Args:
            account_id: the CleverTap account id.
            passcode: the passcode (never logged).
            region: the account's region.
            api_url: overrides the region's host.
            timeout: seconds for every call (connect and read).
            max_concurrency: connections kept alive.
            max_tries: attempts per request for retryable failures.
            read_rate: profile lookups per second at most (a token bucket; they
                are also never more than 3 at once, CleverTap's read limit).
        """
        self.account_id = account_id
        self.region = region
        self.base_url = base_url_for(region, api_url)
        self.timeout = timeout
        self.max_tries = max_tries
        self._headers = {
            "X-CleverTap-Account-Id": account_id,
            "X-CleverTap-Passcode": passcode,
            "Content-Type": "application/json; charset=utf-8",
        }
        self.session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=2, pool_maxsize=max(1, max_concurrency), max_retries=0
        )
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.retries = 0
        self._lock = threading.Lock()
        self._read_slots = threading.BoundedSemaphore(READ_CONCURRENCY)
        self._read_bucket = TokenBucket(read_rate, burst=READ_CONCURRENCY)
        #: set when the run is asked to stop (a first signal): the waits for a
        #: Get Events answer still in preparation end then (`ReadStoppedError`)
        self.stop: threading.Event | None = None

    def close(self) -> None:
        """Close the session."""
        self.session.close()

    def _wait_in_progress(self) -> None:
        """Wait before asking again for an answer CleverTap is still preparing.

        Raises:
            ReadStoppedError: a stop was (or is) asked for: the read ends.
        """
        wait = self.in_progress_wait
        LOGGER.debug("Get Events still preparing its answer; asking in %.1f s", wait)
        if self.stop is None:
            time.sleep(wait)
        elif self.stop.wait(wait):
            msg = "a stop was asked for while Get Events was preparing its answer"
            raise ReadStoppedError(msg)

    # ------------------------------------------------------------------ retries

    @staticmethod
    def wait_generator() -> Generator[float, None, None]:
        """Backoff waits: exponential, 1 s doubling up to 60 s (tests patch this).

        Returns:
            The wait generator.
        """
        return backoff.expo(factor=1, max_value=60)

    #: full jitter (a random wait between 0 and the exponential one; tests patch it)
    jitter = staticmethod(backoff.full_jitter)

    def _on_backoff(self, details: Mapping[str, Any]) -> None:
        with self._lock:
            self.retries += 1
        LOGGER.warning(
            "CleverTap call failed (%s); retry %d in %.1f s",
            details.get("exception"),
            details.get("tries", 0),
            details.get("wait", 0.0),
        )

    def _with_retries(self, func: Callable[[], T]) -> T:
        wrapped = backoff.on_exception(
            self.wait_generator,
            RetryableError,
            max_tries=self.max_tries,
            jitter=self.jitter,
            on_backoff=self._on_backoff,
            logger=None,
        )(func)
        try:
            return wrapped()
        except RetryableError as exc:
            msg = f"CleverTap still failing after {self.max_tries} attempts: {exc}"
            raise CleverTapError(msg) from exc

    # ------------------------------------------------------------------- calls

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
    ) -> requests.Response:
        """One HTTP call; a TLS failure is fatal (a retry cannot fix it).

        Raises:
            CleverTapError: on a TLS error.
        """
        headers = self._headers
        if method == "GET":  # "Do not include Content-Type on GET requests"
            # (developer.clevertap.com/docs/get-user-profiles-api, 2026-07)
            headers = {k: v for k, v in headers.items() if k != "Content-Type"}
        try:
            # session.request (not send) so REQUESTS_CA_BUNDLE and proxies apply
            return self.session.request(
                method,
                f"{self.base_url}{path}",
                data=body,
                params=params,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.exceptions.SSLError as exc:
            msg = f"TLS error talking to {self.base_url}: {exc}"
            raise CleverTapError(msg) from exc

    def _post(
        self,
        path: str,
        body: bytes,
        params: dict[str, Any] | None = None,
        *,
        maybe_stored: bool = False,
        read: bool = False,
    ) -> requests.Response:
        try:
            response = self._request("POST", path, params, body)
        except requests.exceptions.ConnectionError as exc:
            if _not_sent(exc):
                msg = f"connection to {self.base_url} failed: {type(exc).__name__}"
                raise RetryableError(msg) from exc
            msg = f"connection lost after sending: {type(exc).__name__}"
            raise AmbiguousSendError(msg) from exc
        except requests.exceptions.Timeout as exc:
            msg = f"no reply within {self.timeout} s"
            raise AmbiguousSendError(msg) from exc
        except requests.exceptions.RequestException as exc:
            msg = f"reply could not be read: {type(exc).__name__}"
            raise AmbiguousSendError(msg) from exc
        if maybe_stored and _maybe_stored(response.status_code):
            msg = f"HTTP {response.status_code} (the batch may have been stored)"
            raise AmbiguousSendError(msg)
        if read and _says_in_progress(response):
            return response  # retried by the caller, whatever the status
        self._check_status(response, path)
        return response

    def _check_status(self, response: requests.Response, path: str) -> None:
        status = response.status_code
        if (
            status == HTTPStatus.TOO_MANY_REQUESTS
            or status >= HTTPStatus.INTERNAL_SERVER_ERROR
        ):
            msg = f"HTTP {status} from {path}: {_error_text(response)}"
            raise RetryableError(msg)
        if status == HTTPStatus.UNAUTHORIZED:
            msg = (
                f"CleverTap refused the credentials (HTTP 401) for account "
                f"{self.account_id!r} in region {self.region!r} ({self.base_url}). "
                "Check account_id, passcode and region (or api_url)."
            )
            raise CleverTapError(msg)
        if status >= HTTPStatus.BAD_REQUEST:
            msg = (
                f"CleverTap answered HTTP {status} for {path}: {_error_text(response)}"
            )
            raise RefusedError(msg)

    def _upload_once(
        self,
        records: Sequence[dict[str, Any]],
        body: bytes,
        params: dict[str, Any] | None,
    ) -> UploadResult:
        response = self._post(UPLOAD_PATH, body, params, maybe_stored=True)
        try:
            reply = response.json()
        except ValueError as exc:
            msg = "upload reply is not JSON"
            raise AmbiguousSendError(msg) from exc
        if not isinstance(reply, dict):
            msg = "upload reply is not a JSON object"
            raise AmbiguousSendError(msg)
        unprocessed = reply.get("unprocessed") or []
        if reply.get("status") == "fail" and not unprocessed:
            msg = f"upload failed: {str(reply.get('error', 'no reason given'))[:200]}"
            raise CleverTapError(msg)
        matched = match_unprocessed(
            unprocessed if isinstance(unprocessed, list) else [unprocessed], records
        )
        try:
            processed = int(reply.get("processed") or 0)
        except (TypeError, ValueError):
            processed = 0
        return UploadResult(processed, matched.rejections, matched.unmatched)

    def upload(
        self,
        records: Sequence[dict[str, Any]],
        *,
        idempotent: bool,
        dry_run: bool = False,
        body: bytes | None = None,
    ) -> UploadResult:
        """POST records to /1/upload.

        Retries 429, 503 and connection errors that happened before sending.
        Ambiguous failures (no reply after sending, or 500/502/504, which may
        come after the batch was stored) are retried only when `idempotent`
        (profiles, or a dry run); otherwise `AmbiguousSendError` is raised.

        Args:
            records: at most 1000 upload records.
            idempotent: whether resending is harmless.
            dry_run: send `dryRun=1`: CleverTap validates and stores nothing.
            body: `{"d": records}` already encoded (the batching checked its size).

        Returns:
            The processed count and the rejections by position.

        Raises:
            RetryableError: never (converted to CleverTapError after max tries).
            AmbiguousSendError: for events whose fate is unknown.
        """
        if body is None:
            body = JSON_ENCODER.encode({"d": list(records)})
        params = {"dryRun": 1} if dry_run else None

        def attempt() -> UploadResult:
            try:
                return self._upload_once(records, body, params)
            except AmbiguousSendError as exc:
                if idempotent or dry_run:
                    raise RetryableError(str(exc)) from exc
                raise

        result: UploadResult = self._with_retries(attempt)
        return result

    def delete_profiles(self, identities: Sequence[str]) -> str | None:
        """Delete profiles by identity (at most 100 per call).

        Args:
            identities: the identities.

        Returns:
            None when CleverTap's body says `"status": "success"`; otherwise
            why the delete is not known to be done.
        """
        body = json.dumps({"identity": list(identities)}).encode("utf-8")

        def attempt() -> str | None:
            try:
                response = self._post(DELETE_PATH, body)
            except AmbiguousSendError as exc:  # deleting twice is harmless
                raise RetryableError(str(exc)) from exc
            try:
                reply = response.json()
            except ValueError:
                return f"HTTP {response.status_code} with a body that is not JSON"
            if isinstance(reply, dict) and reply.get("status") == "success":
                return None
            return f"CleverTap did not confirm the delete: {str(reply)[:200]}"

        return self._with_retries(attempt)

    def _get(self, path: str, params: dict[str, Any]) -> object:
        def attempt() -> object:
            try:
                response = self._request("GET", path, params)
            except requests.exceptions.RequestException as exc:
                msg = f"reading {path} failed: {type(exc).__name__}"
                raise RetryableError(msg) from exc
            try:
                body = response.json()
            except ValueError:
                body = None
            if in_progress(body):  # retried by the caller, whatever the status
                return body
            self._check_status(response, path)
            if body is None:
                msg = f"reply from {path} is not JSON"
                raise RetryableError(msg)
            return body

        return self._with_retries(attempt)

    def get_schema(self, kind: str) -> dict[str, Any]:
        """`GET /getSchema?type=events|userProperties`: a read (the preflight's)."""
        reply = self._get("/getSchema", {"type": kind})
        return reply if isinstance(reply, dict) else {}

    def profiles_by_email(self, email: str) -> list[dict[str, Any]]:
        """The profiles `GET /1/profile.json?email=` names (clevertap-api.md 3.2).

        Undocumented answers: a 404, a null or absent `record` and a `fail` body
        mean none; a `record` list (the sandbox's "several") counts each entry.
        At most 3 at once (CleverTap's read limit), `read_rate` a second.

        Args:
            email: the normalised email.

        Returns:
            The profile records (empty when none).
        """

        def attempt() -> list[dict[str, Any]]:
            self._read_bucket.acquire()
            with self._read_slots:
                try:
                    response = self._request("GET", PROFILE_PATH, {"email": email})
                except requests.exceptions.RequestException as exc:
                    msg = f"reading {PROFILE_PATH} failed: {type(exc).__name__}"
                    raise RetryableError(msg) from exc
            if response.status_code == HTTPStatus.NOT_FOUND:
                return []
            self._check_status(response, PROFILE_PATH)
            try:
                body = response.json()
            except ValueError as exc:
                msg = f"reply from {PROFILE_PATH} is not JSON"
                raise RetryableError(msg) from exc
            return profile_records(body)

        return self._with_retries(attempt)

    def iter_events(
        self, event_name: str, day_from: int, day_to: int, batch_size: int = 5000
    ) -> Iterator[dict[str, Any]]:
        """Walk the Get Events API for one event name and day range.

        Args:
            event_name: the event.
            day_from: first day, YYYYMMDD.
            day_to: last day, YYYYMMDD.
            batch_size: records per page.

        Yields:
            Event records.

        Raises:
            CleverTapError: when the API answers with an error.
        """
        body = json.dumps(
            {"event_name": event_name, "from": day_from, "to": day_to}
        ).encode("utf-8")

        def start() -> object:
            try:
                return self._post(
                    EVENTS_PATH, body, params={"batch_size": batch_size}, read=True
                ).json()
            except (AmbiguousSendError, ValueError) as exc:  # a read: ask again
                raise RetryableError(str(exc)) from exc

        reply = _until_settled(
            lambda: self._with_retries(start),
            self.in_progress_tries,
            self._wait_in_progress,
        )
        cursor = reply.get("cursor") if isinstance(reply, dict) else None
        if not cursor:
            if isinstance(reply, dict) and reply.get("status") == "fail":
                msg = f"Get Events failed: {str(reply.get('error'))[:200]}"
                raise CleverTapError(msg)
            return
        seen: set[str] = set()
        waits = 0
        for _ in range(_MAX_CURSOR_PAGES):
            if cursor in seen:
                msg = "Get Events returned a repeating cursor"
                raise CleverTapError(msg)
            seen.add(cursor)
            # cursors come percent-encoded: put them in the URL as they are
            page = self._get(f"{EVENTS_PATH}?cursor={cursor}", {})
            if not isinstance(page, dict) or page.get("status") == "fail":
                error = page.get("error") if isinstance(page, dict) else page
                if in_progress(page) and waits < self.in_progress_tries:
                    waits += 1
                    seen.discard(cursor)
                    self._wait_in_progress()
                    continue
                msg = f"Get Events page failed: {str(error)[:200]}"
                raise CleverTapError(msg)
            yield from page.get("records") or []
            cursor = page.get("next_cursor")
            if not cursor:
                return
        msg = "Get Events cursor walk did not end"
        raise CleverTapError(msg)
