"""sObject Collections writes of a sink, and the resend of records worth resending.

A mixin of `SalesforceSink` (kept apart so the sink class stays small, like
`bulk_sink.BulkWrites`): Collections calls of `collection_size` records, each
call's results kept as it ends so that a send stopped part-way still settles
what Salesforce answered (`SendIncompleteError`), and `_with_lock_retry`, which
both APIs use to resend UNABLE_TO_LOCK_ROW records.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from target_salesforce import bulk
from target_salesforce.errors import (
    CallFailed,
    ConfigurationError,
    SendIncompleteError,
    TargetSalesforceError,
)
from target_salesforce.journal_sink import merge_results
from target_salesforce.payloads import chunked, collections_request
from target_salesforce.results import collections_results, error_result
from target_salesforce.values import CODE_LOCK_ROW

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Mapping

    from target_salesforce.journal_sink import BatchJournal
    from target_salesforce.mapping import StreamMapping
    from target_salesforce.payloads import Prepared
    from target_salesforce.rejects import StreamSummary
    from target_salesforce.results import ItemResult
    from target_salesforce.run_context import RunContext

# answers worth resending for the same records (in a new call or job)
RETRY_CODES = frozenset({CODE_LOCK_ROW, bulk.CODE_BULK_JOB_FAILED})
# Lets REST creates and updates save records that an active duplicate rule
# would block (developer.salesforce.com api_rest headers_duplicaterules.htm).
# Bulk API 2.0 takes no such header: duplicate rules always apply there.
DUPLICATE_RULE_HEADER = "Sforce-Duplicate-Rule-Header"


class _ResendItems(Exception):  # noqa: N818 - internal retry signal
    """Some items of a send failed with a code worth resending them for."""


class CollectionsWrites:
    """Send prepared items through sObject Collections (mixed into SalesforceSink)."""

    mapping: StreamMapping
    run: RunContext
    summary: StreamSummary
    stream_name: str
    collection_size: int
    allow_duplicate_save: bool
    max_retries: int

    if TYPE_CHECKING:  # the SDK sink's logger

        @property
        def logger(self) -> logging.Logger:
            """The sink's logger."""

    def _send_around(
        self,
        items: list[Prepared],
        known: Mapping[int, ItemResult],
        send: Callable[[list[Prepared]], list[ItemResult]],
    ) -> list[ItemResult]:
        """Send the items whose result is not `known`; every result, in item order.

        `known` are the items the insert journal says an earlier run stored;
        locked items are resent (`_with_lock_retry`).

        Raises:
            SendIncompleteError: the send stopped part-way: with the results of
                every item known so far, in item order.
        """
        sending = [item for p, item in enumerate(items) if p not in known]
        try:
            sent = self._with_lock_retry(sending, send)
        except SendIncompleteError as exc:
            merged = merge_results(len(items), known, exc.results)
            raise exc.with_results(merged) from None
        return [r for r in merge_results(len(items), known, sent) if r is not None]

    def _with_lock_retry(
        self,
        items: list[Prepared],
        send: Callable[[list[Prepared]], list[ItemResult]],
    ) -> list[ItemResult]:
        """Send, then resend only the items that failed with a retryable code.

        UNABLE_TO_LOCK_ROW, and rows a Failed Bulk insert job left unprocessed
        (BULK_JOB_FAILED), are resent (the client's retry policy); what still
        fails after `max_retries` is rejected with that code.

        Raises:
            SendIncompleteError: the send stopped part-way (in any round): with
                the results of every item known so far.
        """
        results: list[ItemResult | None] = [None] * len(items)
        pending = list(range(len(items)))

        def attempt() -> None:
            nonlocal pending
            try:
                outcome = send([items[i] for i in pending])
            except SendIncompleteError as exc:
                for position, result in zip(pending, exc.results, strict=True):
                    results[position] = result
                raise exc.with_results(results) from None
            except Exception as exc:  # earlier rounds' results are known
                raise SendIncompleteError(str(exc), results, exc) from exc
            retry = []
            for position, result in zip(pending, outcome, strict=True):
                results[position] = result
                if not result.success and result.code in RETRY_CODES:
                    retry.append(position)
            if retry:
                pending = retry
                raise _ResendItems

        def waiting(details: Mapping[str, Any]) -> None:
            codes = sorted({str(r.code) for i in pending if (r := results[i])})
            self.logger.warning(
                "%d records hit %s; retrying them (attempt %d of %d)",
                len(pending),
                "/".join(codes),
                details["tries"],
                self.max_retries,
            )

        with contextlib.suppress(_ResendItems):
            self.run.client.retrying(_ResendItems, on_backoff=waiting)(attempt)()
        return [r for r in results if r is not None]

    def _send_collections(
        self, items: list[Prepared], journal: BatchJournal | None
    ) -> list[ItemResult]:
        """Send the items in Collections calls of `collection_size` items.

        With the insert journal, each call's stored rows are journaled as soon
        as its answer arrives.

        Raises:
            SendIncompleteError: a call failed as a whole: with the results of
                the calls before it (what stopped the send is raised once they
                are settled).
        """
        out: list[ItemResult] = []
        try:
            self._collections_calls(items, out, journal)
        except Exception as exc:
            known: list[ItemResult | None] = [*out]
            known += [None] * (len(items) - len(out))
            raise SendIncompleteError(str(exc), known, exc) from exc
        return out

    def _collections_calls(
        self,
        items: list[Prepared],
        out: list[ItemResult],
        journal: BatchJournal | None,
    ) -> None:
        """The Collections calls, each call's results added to `out` as it ends."""
        mapping = self.mapping
        for chunk in chunked(items, self.collection_size):
            method, path, kwargs = collections_request(
                mapping.action, str(mapping.sobject), mapping.external_id_field, chunk
            )
            if self.allow_duplicate_save and mapping.action != "delete":
                headers = {DUPLICATE_RULE_HEADER: "allowSave=true"}
                kwargs = {**kwargs, "headers": headers}
            self.summary.api_calls["collections"] += 1
            try:
                response = self.run.client.collections(
                    method, path, kwargs, idempotent=mapping.action != "insert"
                )
            except CallFailed as exc:
                if exc.code == CODE_LOCK_ROW:
                    out.extend([error_result(exc.code, exc.message)] * len(chunk))
                    continue
                # Collections report record problems per record inside an HTTP
                # 200; a whole call refused is about the settings (a field or
                # object, the key, the body), so no record of it is rejected.
                msg = (
                    f"stream {self.stream_name}: Salesforce refused a whole "
                    f"{method} {path} call with HTTP {exc.status} {exc.code}: "
                    f"{exc.message}; this is a settings problem, not a record "
                    "problem. Nothing of this call was written and no STATE "
                    "covers it: fix the mapping and rerun."
                )
                raise ConfigurationError(msg) from None
            try:
                results = collections_results(
                    response, len(chunk), creates=mapping.action == "insert"
                )
            except ValueError as exc:
                raise TargetSalesforceError(str(exc)) from None
            if journal is not None:  # its rows are stored: remember them now
                journal.stored(chunk, results)
            out.extend(results)
