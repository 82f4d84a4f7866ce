"""Pure result parsing: Collections and Apex answers to per-item outcomes.

Nothing here does I/O. Bulk 2.0 result files are matched in `bulk`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from target_salesforce.values import CODE_APEX_RESULTS_MISMATCH

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from target_salesforce.values import JsonValue


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """The outcome of one request item."""

    success: bool
    record_id: str | None = None
    created: bool | None = None
    code: str | None = None
    message: str | None = None
    fields: tuple[str, ...] = ()
    matches: tuple[str, ...] = ()
    #: stored by an earlier run (insert journal), not sent again
    already_inserted: bool = False


def duplicate_matches(error: Mapping[str, Any]) -> tuple[str, ...]:
    """The Ids of the existing records a duplicate rule matched, in order.

    A DUPLICATES_DETECTED error carries `duplicateResult.matchResults[]
    .matchRecords[].record.Id` (Collections item errors; the SOAP API's
    DuplicateResult/MatchResult/MatchRecord). The single-record REST reply
    spells the key `duplicateResut`, as real orgs answer; both are read.
    """
    result = error.get("duplicateResult") or error.get("duplicateResut")
    if not isinstance(result, dict):
        return ()
    ids: list[str] = []
    for match in result.get("matchResults") or []:
        for found in (match or {}).get("matchRecords") or []:
            record = (found or {}).get("record") or {}
            record_id = record.get("Id") if isinstance(record, dict) else None
            if record_id and str(record_id) not in ids:
                ids.append(str(record_id))
    return tuple(ids)


def collections_results(
    payload: JsonValue, count: int, *, creates: bool = False
) -> list[ItemResult]:
    """Map a Collections response array (request order) to item results.

    `creates`: the call was an insert, whose reply (a SaveResult per record)
    has no `created` flag: each success created its record.

    Raises:
        ValueError: when the response does not have one entry per item.
    """
    if (
        not isinstance(payload, list)
        or len(payload) != count
        or not all(isinstance(entry, dict) for entry in payload)
    ):
        msg = f"expected {count} Collections results, got {payload!r:.200}"
        raise ValueError(msg)
    out = []
    for entry in payload:
        if entry.get("success"):
            out.append(
                ItemResult(
                    success=True,
                    record_id=entry.get("id"),
                    created=True if creates else entry.get("created"),
                )
            )
            continue
        errors = entry.get("errors") or [{}]
        first = errors[0]
        fields = tuple(f for e in errors for f in e.get("fields") or [])
        message = "; ".join(str(e.get("message", "")) for e in errors)
        matches = tuple(i for e in errors for i in duplicate_matches(e))
        if matches:
            message += f" (matched records: {', '.join(matches)})"
        out.append(
            ItemResult(
                success=False,
                record_id=entry.get("id"),
                code=str(first.get("statusCode") or "UNKNOWN_ERROR"),
                message=message,
                fields=fields,
                matches=matches,
            )
        )
    return out


def apex_results(response: JsonValue, count: int) -> list[ItemResult]:
    """Per-record results of a successful (2xx) Apex call.

    When the handler answers with one result object per record (a list of the
    same length, or a single object for a one-record call) carrying `success`,
    each record gets its own outcome: `success` other than true rejects the
    record with the result's `errorCode` (CleverTapNpsService answers a refused
    save as `{"success": false, "errorCode": <DML status code>, ...}`). Results
    that report failures but cannot be matched to the records (another count, or
    one failed object for a list call) reject every record of the call with
    APEX_RESULTS_MISMATCH: which records were written is unknown, so none counts
    as accepted. Any other 2xx body means all succeeded.
    """
    if isinstance(response, dict) and "success" in response:
        response = [response]
    if not (
        isinstance(response, list)
        and response
        and all(isinstance(e, dict) and "success" in e for e in response)
    ):
        return [ItemResult(success=True)] * count
    out = [_apex_result(entry) for entry in response]
    if len(out) == count:
        return out
    failed = [r for r in out if not r.success]
    if not failed:
        return [ItemResult(success=True)] * count
    message = (
        f"the Apex class answered {len(out)} results for {count} records, "
        f"{len(failed)} failed ({failed[0].code}: {failed[0].message}); which "
        "records were written is unknown: replay them"
    )
    return [error_result(CODE_APEX_RESULTS_MISMATCH, message)] * count


def _apex_result(entry: Mapping[str, Any]) -> ItemResult:
    """One Apex result object: `success`, else `errorCode`/`message` (or `errors`)."""
    if entry.get("success") is True:
        return ItemResult(success=True, record_id=entry.get("id"))
    errors = entry.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else {}
    if not isinstance(first, dict):
        first = {"message": str(first)}
    # UNKNOWN_ERROR as for Collections: never APEX_ERROR, which means the whole
    # call was rolled back (HTTP 500) and would trigger `isolate_errors`.
    code = entry.get("errorCode") or first.get("statusCode") or "UNKNOWN_ERROR"
    message = entry.get("message") or first.get("message") or ""
    return ItemResult(
        success=False,
        record_id=entry.get("id"),
        code=str(code),
        message=str(message),
    )


def error_result(code: str, message: str, fields: Sequence[str] = ()) -> ItemResult:
    """A failure result for every item of a call that failed as a whole."""
    return ItemResult(success=False, code=code, message=message, fields=tuple(fields))
