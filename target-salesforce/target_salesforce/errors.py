"""What the target's Salesforce calls can fail with, and how answers are classified.

Pure: the exceptions of the target and the functions that turn a Salesforce error
body into one of them. `client.SalesforceClient` raises them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from simple_salesforce.exceptions import SalesforceError, SalesforceRefusedRequest

    from target_salesforce.results import ItemResult
    from target_salesforce.values import JsonValue

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


class TargetSalesforceError(RuntimeError):
    """A fatal condition: the run stops, no STATE is written after it."""


class OutcomeUnknownError(TargetSalesforceError):
    """A call ended with no usable answer: whether it took effect is unknown.

    A 5xx, a connection error, a reply that cannot be read, or retries used up.
    """


class SendIncompleteError(TargetSalesforceError):
    """A send stopped part-way: settle the results known so far, then stop.

    `results` lines up with the items of the send; None marks an item whose
    outcome is not known (not sent, not loaded, or no result row). `error` is
    what stopped the send, raised again once the known results are settled
    (None: this error's own message stops the run).
    """

    def __init__(
        self,
        message: str,
        results: list[ItemResult | None],
        error: BaseException | None = None,
    ) -> None:
        """Keep the per-item results known so far and what stopped the send."""
        super().__init__(message)
        self.results = results
        self.error = error

    def with_results(self, results: list[ItemResult | None]) -> SendIncompleteError:
        """The same stop, with the results of a larger send (earlier rounds)."""
        return SendIncompleteError(str(self), results, self.error)

    def fatal(self) -> BaseException:
        """What to raise once the known results are settled."""
        return (
            self.error if self.error is not None else TargetSalesforceError(str(self))
        )


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


class ConcurrentLimitError(Exception):
    """REQUEST_LIMIT_EXCEEDED for a transient concurrency limit; retried."""

    def __init__(self, what: str, message: str) -> None:
        """Keep what was called and Salesforce's message."""
        super().__init__(f"{what}: {message}")
        self.what = what
        self.message = message


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
        return ConcurrentLimitError(what, message)
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
