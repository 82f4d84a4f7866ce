"""Event uploads settled through the ledger: no event is sent twice.

Events are marked pending before they are sent and accepted or rejected after; a
batch whose fate is unknown (a lost reply, HTTP 500/502/504, `unprocessed` entries
naming no record) is looked up in Get Events (`reconcile.Reconciler`) before
anything is sent again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from target_clevertap import ledger
from target_clevertap.client import AmbiguousSendError, CleverTapError, UploadResult
from target_clevertap.reconcile import Sent
from target_clevertap.replies import UNMATCHED_CODE, Rejection, Unmatched

if TYPE_CHECKING:
    from collections.abc import Sequence

    from target_clevertap.dispatch import UploadDispatcher
    from target_clevertap.loader import Entry
    from target_clevertap.payloads import UploadItem
    from target_clevertap.reconcile import Outcome

#: send rounds of events whose reply was lost, before they are left in doubt
RECONCILE_ROUNDS = 3


class EventUploads:
    """The event side of the upload dispatcher."""

    def __init__(self, dispatch: UploadDispatcher) -> None:
        """Work for `dispatch` (its run context, counters and rejects).

        Args:
            dispatch: the upload dispatcher.
        """
        self.dispatch = dispatch
        self.ctx = dispatch.ctx
        self.counters = dispatch.counters
        self.rejects = dispatch.rejects

    def _send(
        self, chunk: Sequence[tuple[int, UploadItem]]
    ) -> UploadResult | AmbiguousSendError:
        try:
            return self.ctx.client.upload(
                [it.payload for _, it in chunk],
                idempotent=False,
                body=getattr(chunk, "body", None),
            )
        except AmbiguousSendError as exc:
            return exc

    def new_events(
        self, entries: Sequence[Entry], events: Sequence[tuple[int, UploadItem]]
    ) -> list[tuple[int, UploadItem]]:
        """Events not yet accepted (ledger), each key once."""
        keys = [it.event_key or "" for _, it in events]
        statuses = self.ctx.store.event_statuses(keys)
        todo: list[tuple[int, UploadItem]] = []
        seen: set[str] = set()
        for idx, item in events:
            key = item.event_key or ""
            if statuses.get(key) == ledger.ACCEPTED or key in seen:
                self.counters.bump(entries[idx].stream, "duplicates_suppressed")
                continue
            seen.add(key)
            todo.append((idx, item))
        return todo

    def check_remotely(
        self, entries: Sequence[Entry], events: Sequence[tuple[int, UploadItem]]
    ) -> None:
        """dry_run_remote: CleverTap validates (dryRun=1); a resend stores nothing."""
        self.dispatch.upload_upserts(entries, self.new_events(entries, events))

    def upload(
        self, entries: Sequence[Entry], events: Sequence[tuple[int, UploadItem]]
    ) -> None:
        """Send new events; settle the ones of unknown fate before any resend.

        Args:
            entries: the window's records.
            events: (record index, event item), oldest first.

        Raises:
            CleverTapError: when events stay in doubt (no STATE past them).
        """
        todo = self.new_events(entries, events) if events else []
        for _round in range(RECONCILE_ROUNDS + 1):
            if not todo:
                return
            lost, unclear, sent_at = self._send_round(entries, todo)
            todo = (
                self._reconcile_window(entries, lost, unclear, sent_at)
                if lost or unclear
                else []
            )
        if todo:
            self.ctx.store.mark([it.event_key or "" for _, it in todo], ledger.IN_DOUBT)
            self.counters.add_in_doubt(len(todo))
            msg = (
                f"{len(todo)} events are in doubt after {RECONCILE_ROUNDS} checks "
                "(sent, but CleverTap's reply was lost); no STATE was emitted; rerun "
                "to check and settle them"
            )
            raise CleverTapError(msg)

    def _settle_result(
        self,
        entries: Sequence[Entry],
        chunk: Sequence[tuple[int, UploadItem]],
        result: UploadResult,
        unclear: list[tuple[tuple[int, UploadItem], Unmatched]],
    ) -> None:
        """Ledger statuses of one answered event batch.

        With unmatched `unprocessed` entries, the events not named in a
        rejection are of unknown fate: they go to `unclear` (reconciled).
        """
        rejected = self.rejects.apply_rejections(entries, chunk, result)
        self.ctx.store.mark(
            [it.event_key or "" for p, (_, it) in enumerate(chunk) if p in rejected],
            ledger.REJECTED,
        )
        rest = [pair for p, pair in enumerate(chunk) if p not in rejected]
        if result.unmatched:
            codes = {u.code for u in result.unmatched}
            miss = (
                result.unmatched[0]
                if len(codes) == 1
                else Unmatched(UNMATCHED_CODE, "CleverTap refused it (reply unclear)")
            )
            self.ctx.logger.warning(
                "%d unprocessed entries of an event upload named no record; "
                "checking which of %d events landed",
                len(result.unmatched),
                len(rest),
            )
            unclear.extend((pair, miss) for pair in rest)
            self.counters.count_all_sent(
                entries, [pair for p, pair in enumerate(chunk) if p in rejected]
            )
            return
        self.ctx.store.mark([it.event_key or "" for _, it in rest], ledger.ACCEPTED)
        self.counters.count_all_sent(entries, chunk)

    def _send_round(
        self, entries: Sequence[Entry], todo: list[tuple[int, UploadItem]]
    ) -> tuple[
        list[tuple[int, UploadItem]],
        list[tuple[tuple[int, UploadItem], Unmatched]],
        float,
    ]:
        """Send events; return those whose reply was lost, the unclear ones, when."""
        self.ctx.store.mark_pending(
            (it.event_key or "", it.event_name or "", it.ts or 0, entries[idx].stream)
            for idx, it in todo
        )
        chunks = self.dispatch.chunks(todo)
        lost: list[tuple[int, UploadItem]] = []
        unclear: list[tuple[tuple[int, UploadItem], Unmatched]] = []
        # each answered batch settles while later ones are still in flight
        outcomes = self.ctx.pool.map(self._send, chunks)
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            if isinstance(outcome, AmbiguousSendError):
                self.ctx.logger.warning(
                    "Upload of %d events got no usable reply (%s); checking what "
                    "landed before sending anything again",
                    len(chunk),
                    outcome,
                )
                lost.extend(chunk)
                continue
            self._settle_result(entries, chunk, outcome, unclear)
        sent_at = time.time()  # every batch answered (the reconcile lag runs from here)
        return lost, unclear, sent_at

    def _reconcile_window(
        self,
        entries: Sequence[Entry],
        lost: list[tuple[int, UploadItem]],
        unclear: list[tuple[tuple[int, UploadItem], Unmatched]],
        sent_at: float,
    ) -> list[tuple[int, UploadItem]]:
        """Check events of unknown fate; return the lost ones that did not land.

        Unclear events (named by no `unprocessed` entry) that did not land were
        refused by CleverTap: they are rejected, not sent again.

        Raises:
            CleverTapError: when some stay in doubt (no STATE past them).
        """
        pairs = lost + [pair for pair, _ in unclear]
        self.ctx.store.mark([it.event_key or "" for _, it in pairs], ledger.IN_DOUBT)
        try:
            outcome = self.ctx.reconciler.check(
                [
                    Sent(it.event_key or "", it.event_name or "", it.ts or 0, sent_at)
                    for _, it in pairs
                ]
            )
        except CleverTapError as exc:
            self.counters.add_in_doubt(len(pairs))
            msg = (
                f"{len(pairs)} events are in doubt (reply lost) and checking them "
                f"failed: {exc}. No STATE was emitted; the next run checks them first"
            )
            raise CleverTapError(msg) from exc
        done = [(i, it) for i, it in pairs if it.event_key in outcome.found]
        self.ctx.store.mark([it.event_key or "" for _, it in done], ledger.ACCEPTED)
        self.counters.count_all_sent(entries, done)
        for (idx, item), miss in unclear:
            if item.event_key in outcome.missing:
                self.ctx.store.mark([item.event_key or ""], ledger.REJECTED)
                self.rejects.apply_rejections(
                    entries,
                    [(idx, item)],
                    UploadResult(0, [Rejection(0, miss.code, miss.message)]),
                )
                self.counters.count_sent(entries, idx, item)
        self._stop_if_in_doubt(
            outcome,
            "events are",
            "No STATE was emitted; rerun later to check and settle them",
        )
        missing = [(i, it) for i, it in lost if it.event_key in outcome.missing]
        self.ctx.logger.info(
            "Reconciled %d events of unknown fate: %d had landed, %d will be sent "
            "again",
            len(pairs),
            len(done),
            len(missing),
        )
        return missing

    def _stop_if_in_doubt(self, outcome: Outcome, events: str, after: str) -> None:
        """Stop the run when a reconciliation left events unknown (in doubt).

        Raises:
            CleverTapError: some events are unknown; no STATE covers them.
        """
        if not outcome.unknown:
            return
        self.counters.add_in_doubt(len(outcome.unknown))
        msg = (
            f"{len(outcome.unknown)} {events} in doubt ({outcome.why_unknown}). {after}"
        )
        raise CleverTapError(msg)

    def settle_previous_run(self) -> None:
        """Settle events a previous run left pending or in doubt.

        Raises:
            CleverTapError: when they cannot be checked (nothing is sent then).
        """
        rows = self.ctx.store.unsettled()
        if not rows:
            return
        self.ctx.logger.info(
            "%d events from an earlier run are unsettled; checking CleverTap", len(rows)
        )
        times = self.ctx.store.sent_times([k for k, _, _, _ in rows])
        try:
            outcome = self.ctx.reconciler.check(
                [Sent(k, n, ts, times.get(k, 0.0)) for k, n, ts, _ in rows]
            )
        except CleverTapError as exc:
            msg = (
                f"{len(rows)} events from an earlier run are in doubt and could not "
                f"be checked: {exc}. Nothing was sent; rerun later"
            )
            raise CleverTapError(msg) from exc
        self.ctx.store.mark(sorted(outcome.found), ledger.ACCEPTED)
        self.ctx.store.forget(sorted(outcome.missing))
        self._stop_if_in_doubt(
            outcome,
            "events from an earlier run are still",
            "Nothing was sent; rerun later",
        )
        self.ctx.logger.info(
            "Earlier run: %d events had landed, %d had not (they will be sent again "
            "when their records are replayed)",
            len(outcome.found),
            len(outcome.missing),
        )
