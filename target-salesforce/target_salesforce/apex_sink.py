"""Apex REST calls of a sink: lock retries and isolating a failing record.

A mixin of `SalesforceSink` (kept apart so the sink class stays small); the
payloads are rendered in `target_salesforce.payloads`, the answers read in
`target_salesforce.results`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from target_salesforce.errors import CallFailed
from target_salesforce.results import apex_results, error_result
from target_salesforce.values import CODE_LOCK_ROW

if TYPE_CHECKING:
    import logging

    from target_salesforce.mapping import ApexSpec
    from target_salesforce.payloads import Prepared
    from target_salesforce.rejects import StreamSummary
    from target_salesforce.results import ItemResult
    from target_salesforce.run_context import RunContext
    from target_salesforce.values import JsonValue


class ApexWrites:
    """Send rendered Apex calls (mixed into SalesforceSink)."""

    logger: logging.Logger
    run: RunContext
    summary: StreamSummary

    def _apex_one_by_one(
        self, apex: ApexSpec, path: str, call_items: list[Prepared]
    ) -> list[ItemResult]:
        """Resend each record of a list call that failed with APEX_ERROR alone.

        An unhandled Apex exception rolls the whole transaction back, so none of
        the call's records was written: resending them one per call finds the bad
        record(s) and loads the others.
        """
        self.logger.warning(
            "apex %s: APEX_ERROR for a call of %d records; resending them one by "
            "one to find the failing record (apex.isolate_errors)",
            path,
            len(call_items),
        )
        out: list[ItemResult] = []
        for item in call_items:
            body: Any = [item.payload]
            if apex.list_key:
                body = {apex.list_key: body}
            out.extend(self._apex_call(apex.method, path, body, 1))
        return out

    def _apex_call(
        self, method: str, path: str, body: JsonValue, count: int
    ) -> list[ItemResult]:
        """One Apex call; resent on UNABLE_TO_LOCK_ROW (the client's retry policy).

        APEX_ERROR is never retried: the same call fails the same way.
        """

        def attempt() -> JsonValue:
            self.summary.api_calls["apex"] += 1
            return self.run.client.apex(method, path, body)

        def not_a_lock(exc: Exception) -> bool:
            return not (isinstance(exc, CallFailed) and exc.code == CODE_LOCK_ROW)

        try:
            response = self.run.client.retrying(CallFailed, giveup=not_a_lock)(
                attempt
            )()
        except CallFailed as exc:
            return [error_result(exc.code, exc.message, exc.fields)] * count
        return apex_results(response, count)
