"""All HTTP to CleverTap: base URL, auth headers, TLS, errors, retries, cursors.

Streams never talk to ``requests`` directly; they call `CleverTapStream.call`,
`CleverTapStream.walk_cursor` and `CleverTapStream.post_and_poll`, which send
through the SDK's request machinery (`_request` and `request_decorator`), so the
SDK backoff hooks apply to every call.
"""

from __future__ import annotations

import functools
import random
import weakref
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import backoff
import msgspec
import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.streams import RESTStream
from typing_extensions import override

from tap_clevertap.timeutil import load_zone

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Mapping
    from zoneinfo import ZoneInfo

    from backoff.types import Details
    from singer_sdk.helpers.types import Auth, Context, Record, RequestFunc

REGION_HOSTS: dict[str, str] = {
    "eu1": "https://api.clevertap.com",
    "in1": "https://in1.api.clevertap.com",
    "us1": "https://us1.api.clevertap.com",
    "sg1": "https://sg1.api.clevertap.com",
    "aps3": "https://aps3.api.clevertap.com",
    "mec1": "https://mec1.api.clevertap.com",
}
DEFAULT_REGION = "eu1"
# A cursor page or a count still being prepared: CleverTap's in-body code.
IN_PROGRESS_CODE = 2
# "Incorrect Usage" (seen live for a re-encoded or stale cursor).
INCORRECT_USAGE_CODE = 3
MAX_BACKOFF_SECONDS = 60
BACKOFF_BASE_SECONDS = 2
MAX_TRIES = 8
_ERROR_TEXT_LIMIT = 300
# Error bodies are a few hundred bytes; anything longer is a data page.
_SHORT_BODY_BYTES = 4096
_decoder = msgspec.json.Decoder()
# Event names already reported as not exportable, per tap instance.
_NOT_EXPORTABLE_WARNED: weakref.WeakKeyDictionary[object, set[str]] = (
    weakref.WeakKeyDictionary()
)


def base_url_for(config: Mapping[str, Any]) -> str:
    """The API base URL: `api_url` when set, else the region's host.

    Args:
        config: the tap config.

    Returns:
        The URL without a trailing slash.

    Raises:
        ValueError: the region is not one CleverTap documents.
    """
    if config.get("api_url"):
        return str(config["api_url"]).rstrip("/")
    region = str(config.get("region") or DEFAULT_REGION)
    if region not in REGION_HOSTS:
        msg = f"unknown region {region!r}; expected one of {', '.join(REGION_HOSTS)}"
        raise ValueError(msg)
    return REGION_HOSTS[region]


class ExportNotAllowedError(FatalAPIError):
    """CleverTap refuses to export this event (notification events)."""


class CredentialsError(FatalAPIError):
    """CleverTap rejected the account id or passcode (HTTP 401)."""


class CursorLoopError(FatalAPIError):
    """CleverTap handed back a cursor it had already given in this walk."""


class CleverTapAuth(requests.auth.AuthBase):
    """Adds the account and passcode headers; never shows the passcode."""

    def __init__(self, account_id: str, passcode: str) -> None:
        """Keep the credentials."""
        self._account_id = account_id
        self._passcode = passcode

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Set the two headers on `request`."""
        request.headers["X-CleverTap-Account-Id"] = self._account_id
        request.headers["X-CleverTap-Passcode"] = self._passcode
        return request

    def __repr__(self) -> str:
        """Name the account only."""
        return f"CleverTapAuth(account_id={self._account_id!r}, passcode=<hidden>)"


def _decode(response: requests.Response) -> Any:  # noqa: ANN401 - decoded JSON; callers index the shape each endpoint documents
    """The JSON body of a response, or None when it is empty or not JSON."""
    if not response.content:
        return None
    try:
        return _decoder.decode(response.content)
    except msgspec.DecodeError:
        return None


def _body_error(payload: object) -> str:
    if isinstance(payload, dict):
        return str(payload.get("error") or payload.get("message") or "")
    return ""


def _is_in_progress(payload: object) -> bool:
    if not isinstance(payload, dict) or payload.get("status") != "fail":
        return False
    code = payload.get("code")
    return code == IN_PROGRESS_CODE or "in progress" in _body_error(payload).lower()


def says_in_progress(response: requests.Response) -> bool:
    """Whether an answer is CleverTap's "still in progress" (code 2), any status.

    Recorded body: ``{"status":"fail","error":"Request still in progress, please
    retry later","code":2}``; the HTTP status it comes with is not recorded, so
    every status counts. Only short bodies are decoded (an export page is not).
    """
    content = response.content
    if not content or len(content) > _SHORT_BODY_BYTES:
        return False
    return _is_in_progress(_decode(response))


def _check_export_answer(
    what: str, response: requests.Response, payload: object
) -> None:
    """Retry an export answer that is neither a success nor a failure object.

    CleverTap's Get Events / Get Profiles reference says to fetch pages until a
    success answer carries no ``next_cursor``
    (developer.clevertap.com/docs/get-events-api). An empty, HTML or bare-string
    200 body is no such answer (a proxy or gateway page, a cut reply), so it is
    retried like "still in progress"; once the retries are used up the run stops
    naming the stream and window, before the window is bookmarked. A
    ``"status": "fail"`` body is left to `CleverTapStream.fail_on_body`.

    Raises:
        RetriableAPIError: the answer is not a JSON object with status success
            or fail.
    """
    if isinstance(payload, dict) and payload.get("status") in {"success", "fail"}:
        return
    if not response.content:
        got = "an empty body"
    elif payload is None:
        kind = response.headers.get("Content-Type") or "no Content-Type"
        got = f"a body that is not JSON ({kind}, {len(response.content)} bytes)"
    elif isinstance(payload, dict):
        got = f"a JSON object with status {payload.get('status')!r}"
    else:
        got = f"a JSON {type(payload).__name__}, not an object"
    msg = (
        f"CleverTap answered {what} with HTTP {response.status_code} and {got}, "
        'not {"status": "success", ...}; the rest of that window was not read'
    )
    raise RetriableAPIError(msg, response)


class CleverTapStream(RESTStream[Any]):
    """Base stream: CleverTap auth, TLS from the environment, errors and retries."""

    # Streams build each record with exactly the schema's JSON types (see
    # records.py), so the SDK's per-value conformance pass is skipped for speed.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    _verify_configured = False
    _unknown_keys: frozenset[str] | None = None

    @override
    @property
    def url_base(self) -> str:
        return base_url_for(self.config)

    @functools.cached_property
    def _auth(self) -> CleverTapAuth:
        return CleverTapAuth(
            str(self.config["account_id"]), str(self.config["passcode"])
        )

    @override
    @property
    def authenticator(self) -> Auth:
        return self._auth

    @override
    @property
    def http_headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }

    @override
    @property
    def requests_session(self) -> requests.Session:
        """The SDK session, verifying TLS the way ``requests.get`` would.

        ``Session.send`` (used by the SDK) skips REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE;
        copying the merged environment setting onto the session restores it.
        Proxies (HTTPS_PROXY/NO_PROXY) are already resolved by ``send``.
        """
        session = super().requests_session
        if not self._verify_configured:
            merged = session.merge_environment_settings(
                self.url_base, {}, None, None, None
            )
            session.verify = merged["verify"]
            self._verify_configured = True
        return session

    @override
    @property
    def timeout(self) -> int:
        return int(self.config["request_timeout"])

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        """The account time zone from the `timezone` setting."""
        return load_zone(str(self.config["timezone"]))

    @override
    def post_process(
        self, row: Record, context: Context | None = None
    ) -> Record | None:
        """Drop columns the (input catalog's) schema does not have.

        Records of one stream all have the same keys, so the set is computed once.
        """
        if self._unknown_keys is None:
            known = self.effective_schema.get("properties") or {}
            self._unknown_keys = frozenset(key for key in row if key not in known)
        for key in self._unknown_keys:
            row.pop(key, None)
        return row

    # -- errors -------------------------------------------------------------

    def warn_not_exportable(self, event_name: str) -> None:
        """Log, once per tap run and event, that CleverTap refuses to export it."""
        warned = _NOT_EXPORTABLE_WARNED.setdefault(self._tap, set())
        if event_name in warned:
            return
        warned.add(event_name)
        self.logger.warning(
            "Skipping event %r: CleverTap does not export it through the API "
            "(notification events are only in its S3/GCS data exports)",
            event_name,
        )

    def tolerated(self, response: requests.Response) -> bool:
        """Whether a non-2xx answer is a normal outcome for this stream.

        Args:
            response: the answer.

        Returns:
            False here; streams with "no result yet" answers override it.
        """
        del response
        return False

    @override
    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if says_in_progress(response):
            # "Still in progress" (code 2) is retried whatever the HTTP status.
            msg = f"CleverTap is still preparing this answer (code 2, HTTP {status})"
            raise RetriableAPIError(msg, response)
        if status == HTTPStatus.UNAUTHORIZED:
            region = self.config["region"]
            msg = (
                "CleverTap rejected the credentials (HTTP 401) for account "
                f"{self.config['account_id']!r} in region {region!r} "
                f"({self.url_base}). Check account_id, passcode and region: "
                "a passcode from another region's host also answers 401."
            )
            raise CredentialsError(msg)
        if status < HTTPStatus.BAD_REQUEST or self.tolerated(response):
            return
        if (
            status == HTTPStatus.BAD_REQUEST
            and b"export not allowed" in response.content.lower()
        ):
            raise ExportNotAllowedError(self.response_error_message(response))
        super().validate_response(response)

    @override
    def response_error_message(self, response: requests.Response) -> str:
        text = response.text[:_ERROR_TEXT_LIMIT] if response.content else ""
        path = urlparse(response.url).path
        return f"{response.status_code} {response.reason} for {path}: {text}"

    # -- retries ------------------------------------------------------------

    @override
    def backoff_wait_generator(self) -> Generator[float, None, None]:
        """Waits from `backoff_base_seconds`, doubling up to `backoff_max_seconds`."""
        return backoff.expo(
            factor=float(self.config["backoff_base_seconds"]),
            max_value=float(self.config["backoff_max_seconds"]),
        )

    @override
    def backoff_max_tries(self) -> int:
        """Attempts per request: the `max_retries` setting."""
        return int(self.config["max_retries"])

    @override
    def backoff_jitter(self, value: float) -> float:
        """Equal jitter: between half the wait and the whole wait, never more.

        The SDK's default adds up to a second, which would overrun a small
        `backoff_max_seconds`.
        """
        return value / 2 + random.uniform(0, value / 2)  # noqa: S311 - spreads retries; not security

    @override
    def request_decorator(self, func: RequestFunc) -> RequestFunc:
        """The SDK's retry decorator, except that TLS failures are not retried.

        ``SSLError`` is a ``ConnectionError``, so the SDK would retry a certificate
        that can never verify; it is raised at once instead.
        """
        decorator: Callable[[RequestFunc], RequestFunc] = backoff.on_exception(
            self.backoff_wait_generator,
            (
                ConnectionResetError,
                RetriableAPIError,
                requests.exceptions.Timeout,
                requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
            ),
            max_tries=self.backoff_max_tries,
            on_backoff=self.backoff_handler,
            jitter=self.backoff_jitter,
            giveup=lambda exc: isinstance(exc, requests.exceptions.SSLError),
            logger=self.logger,
        )
        return decorator(func)

    @override
    def backoff_handler(self, details: Details) -> None:
        exc = details.get("exception")
        self.logger.warning(
            "Retrying %s in %.2f s (attempt %d): %s",
            self.name,
            details.get("wait") or 0.0,
            details.get("tries") or 0,
            exc,
        )

    # -- calls --------------------------------------------------------------

    def call(  # noqa: PLR0913 - every argument is an independent request part
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        raw_query: str | None = None,
        check: Callable[[requests.Response, Any], None] | None = None,
        context: Context | None = None,
    ) -> tuple[requests.Response, Any]:
        """Send one request with the SDK's retries and return the decoded body.

        Args:
            method: HTTP method.
            path: path below the base URL, e.g. ``/1/events.json``.
            body: JSON body.
            params: query parameters (URL-encoded by requests).
            raw_query: a query string sent byte for byte, never re-encoded (used
                for cursors, which CleverTap already percent-encodes).
            check: inspects the decoded body; raise `RetriableAPIError` to retry
                the same request through the backoff hooks.
            context: stream context, for metrics.

        Returns:
            The response and its decoded JSON body (None when empty or not JSON).
        """
        url = f"{self.url_base}{path}"
        prepared = self.build_prepared_request(
            method=method,
            url=url,
            params=dict(params or {}),
            json=dict(body) if body is not None else None,
            headers=self.http_headers,
        )
        if raw_query is not None:
            prepared.url = f"{url}?{raw_query}"

        decoded: dict[str, Any] = {}

        def attempt(
            request: requests.PreparedRequest, ctx: Context | None
        ) -> requests.Response:
            response = self._request(request, ctx)
            payload = _decode(response)
            if check is not None:
                check(response, payload)
            decoded["payload"] = payload
            return response

        response = self.request_decorator(attempt)(prepared, context)
        return response, decoded.get("payload")

    def fail_on_body(self, payload: object, what: str) -> None:
        """Raise when a 2xx body says ``"status": "fail"``.

        Args:
            payload: the decoded body.
            what: what was asked, for the message.

        Raises:
            FatalAPIError: the body reports a failure.
        """
        if isinstance(payload, dict) and payload.get("status") == "fail":
            msg = (
                f"CleverTap refused {what}: {_body_error(payload)[:_ERROR_TEXT_LIMIT]}"
            )
            if payload.get("code") == INCORRECT_USAGE_CODE:
                msg += (
                    " (code 3: CleverTap did not accept the request as sent, e.g. an"
                    " export cursor that expired or was not sent back as received)"
                )
            raise FatalAPIError(msg)

    def walk_cursor(
        self,
        path: str,
        body: Mapping[str, Any],
        params: Mapping[str, Any],
        context: Context | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Run a two-step export: POST for a cursor, then GET each page.

        "Still in progress" pages retry the same cursor through the backoff hooks
        (bounded by `backoff_max_tries`); a cursor seen before stops the walk with
        `CursorLoopError`.

        Args:
            path: ``/1/events.json`` or ``/1/profiles.json``.
            body: the query (event_name, from, to).
            params: query parameters of the opening POST (batch_size, ...).
            context: stream context.

        Yields:
            Raw export records.

        Raises:
            CursorLoopError: a cursor repeated.
        """
        what = f"{path} {dict(body)} of stream {self.name!r}"
        check = functools.partial(_check_export_answer, what)
        _, payload = self.call(
            "POST", path, body=body, params=params, check=check, context=context
        )
        self.fail_on_body(payload, f"the export {path} {dict(body)}")
        cursor = payload.get("cursor")
        seen: set[str] = set()
        pages = 0
        while cursor:
            cursor = str(cursor)
            if cursor in seen:
                msg = (
                    f"CleverTap repeated an export cursor after {pages} pages of "
                    f"{path} {dict(body)}; stopping instead of looping"
                )
                raise CursorLoopError(msg)
            seen.add(cursor)
            _, page = self.call(
                "GET",
                path,
                raw_query=f"cursor={cursor}",
                check=functools.partial(
                    _check_export_answer, f"page {pages + 1} of {what}"
                ),
                context=context,
            )
            pages += 1
            self.fail_on_body(page, f"an export page of {path}")
            yield from page.get("records") or []
            cursor = page.get("next_cursor")

    @staticmethod
    def _check_poll(response: requests.Response, payload: object) -> None:
        if isinstance(payload, dict) and payload.get("status") == "partial":
            msg = "CleverTap has not finished this query yet (status partial)"
            raise RetriableAPIError(msg, response)

    def post_and_poll(
        self, path: str, body: Mapping[str, Any], context: Context | None = None
    ) -> dict[str, Any]:
        """POST a counts query; while it answers ``partial``, poll its ``req_id``.

        Polling is ``GET <path>?req_id=<id>``, retried through the backoff hooks
        (bounded by `backoff_max_tries`).

        Args:
            path: e.g. ``/1/counts/events.json``.
            body: the query.
            context: stream context.

        Returns:
            The final (non-partial) body.

        Raises:
            FatalAPIError: the query failed or the answer was not JSON.
        """
        _, payload = self.call("POST", path, body=body, context=context)
        if isinstance(payload, dict) and payload.get("status") == "partial":
            req_id = payload.get("req_id")
            _, payload = self.call(
                "GET",
                path,
                params={"req_id": req_id},
                check=self._check_poll,
                context=context,
            )
        if not isinstance(payload, dict):
            msg = f"CleverTap answered {path} without a JSON object"
            raise FatalAPIError(msg)
        self.fail_on_body(payload, f"the query {path} {dict(body)}")
        return payload

    @override
    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        """Streams implement `get_records` with the helpers above."""
        raise NotImplementedError
