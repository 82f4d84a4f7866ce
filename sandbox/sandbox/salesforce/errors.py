"""Errors shaped the way Salesforce shapes them."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered as a REST error list: `[{"message","errorCode","fields"}]`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Keep the HTTP status, error code, message, fields and extra keys."""
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.extra = extra or {}

    def body(self) -> list[dict[str, Any]]:
        """The JSON error list."""
        item: dict[str, Any] = {**self.extra, "message": self.message}
        item["errorCode"] = self.code
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


class JsonTypeError(Exception):
    """A JSON value of the wrong type: the whole request fails (400)."""

    def __init__(self, kind: str, value: object, raw: bytes) -> None:
        """Keep the Salesforce type name, the value and the request body."""
        super().__init__(f"cannot deserialize {kind}")
        self.kind = kind
        self.value = value
        self.raw = raw

    def api_error(self) -> ApiError:
        """400 JSON_PARSER_ERROR worded as Salesforce words it."""
        kind = "VALUE_STRING" if isinstance(self.value, str) else "VALUE_NUMBER_INT"
        if isinstance(self.value, bool):
            kind = "VALUE_TRUE" if self.value else "VALUE_FALSE"
        elif isinstance(self.value, float):
            kind = "VALUE_NUMBER_FLOAT"
        shown = str(self.value)
        text = self.raw.decode("utf-8", "replace")
        column = max(text.find(shown), 0) + 1
        return ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {self.kind} from {kind} value "
            f"{shown} or request may be missing a required field at "
            f"[line:1, column:{column}]",
        )


class MultipleChoices(Exception):  # noqa: N818 - named after HTTP 300
    """An external Id value matched several records (HTTP 300)."""

    def __init__(self, urls: list[str]) -> None:
        """Keep the matching record URLs."""
        super().__init__("more than one record matches")
        self.urls = urls


def record_error(
    code: str, message: str, fields: list[str] | None = None
) -> dict[str, Any]:
    """One item of a per-record `errors` list."""
    return {"statusCode": code, "message": message, "fields": fields or []}


def invalid_session() -> ApiError:
    """401 INVALID_SESSION_ID."""
    return ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")


# REQUEST_LIMIT_EXCEEDED messages as real orgs answer them (misc_real_errors.md):
# the daily allocation, and the two transient concurrency limits.
LIMIT_MESSAGES = {
    "daily": "TotalRequests Limit exceeded.",
    "concurrent": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
    "long_txn": "ConcurrentPerOrgLongTxn Limit exceeded",
}


def request_limit(which: str = "daily") -> ApiError:
    """403 REQUEST_LIMIT_EXCEEDED: `daily`, `concurrent` or `long_txn`."""
    return ApiError(403, "REQUEST_LIMIT_EXCEEDED", LIMIT_MESSAGES[which])


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    """404 NOT_FOUND."""
    return ApiError(404, "NOT_FOUND", message)


def bad_type(name: str) -> ApiError:
    """404 NOT_FOUND for an unknown sObject type."""
    del name
    return ApiError(404, "NOT_FOUND", "The requested resource does not exist")


def malformed_query(message: str) -> ApiError:
    """400 MALFORMED_QUERY."""
    return ApiError(400, "MALFORMED_QUERY", message)


def invalid_field(field: str, sobject: str) -> ApiError:
    """400 INVALID_FIELD for an unknown column."""
    return ApiError(
        400, "INVALID_FIELD", f"No such column '{field}' on entity '{sobject}'."
    )
