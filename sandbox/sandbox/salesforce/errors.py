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
    ) -> None:
        """Keep the HTTP status, error code, message and fields."""
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        """The JSON error list."""
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


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


def request_limit() -> ApiError:
    """403 REQUEST_LIMIT_EXCEEDED."""
    return ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")


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
