"""The insert journal as one batch of an `action: insert` sink sees it.

`BatchJournal` takes the records an earlier run already stored out of the batch
(settled as accepted with the stored Id, not sent), and writes the rows this
batch stores into the journal before the batch settles: per Collections call
right after its response, per Bulk 2.0 job together with dropping the job's
entry when its results are read (`target_salesforce.journal`).
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from target_salesforce.journal import (
    JournalRow,
    Scope,
    item_digest,
    result_row_digest,
)
from target_salesforce.results import ItemResult

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from target_salesforce.journal import AlreadyInserted, InsertJournal
    from target_salesforce.payloads import Prepared
    from target_salesforce.sinks import SalesforceSink


class BatchJournal:
    """One insert batch's use of the journal (reading thread and Bulk worker)."""

    def __init__(
        self,
        journal: InsertJournal,
        earlier: AlreadyInserted,
        scope: Scope,
        seqs: Sequence[int],
    ) -> None:
        """`seqs`: the input line of each record of the batch (by record index)."""
        self.journal = journal
        self.earlier = earlier
        self.scope = scope
        self.seqs = seqs

    @classmethod
    def start(
        cls, sink: SalesforceSink, seqs: Sequence[int], items: Sequence[Prepared]
    ) -> tuple[BatchJournal | None, dict[int, ItemResult]]:
        """The batch's journal (None if the sink has none), and known results.

        The known results are those of the items an earlier run stored, by
        position (`ItemResult.already_inserted`); they are not sent.
        """
        opened = sink.run.insert_journal() if sink.mapping.action == "insert" else None
        if opened is None:
            return None, {}
        scope = Scope(sink.stream_name, str(sink.mapping.sobject))
        sink.run.journal_streams.add(scope.stream)
        journal = cls(opened, sink.run.already_inserted, scope, seqs)
        return journal, journal.take_already_inserted(items)

    def _seq(self, item: Prepared) -> int:
        return max(self.seqs[i] for i in item.inputs)

    def take_already_inserted(self, items: Sequence[Prepared]) -> dict[int, ItemResult]:
        """Items an earlier run stored: their results (by position), not to send.

        Each takes one row of the earlier runs out; the row then belongs to this
        run (under this record's input line) until a STATE covers it.
        """
        known: dict[int, ItemResult] = {}
        adopted: list[tuple[int, int]] = []
        if not self.earlier:  # nothing left of earlier runs: no digest needed
            return known
        for position, item in enumerate(items):
            found = self.earlier.take(self.scope, item_digest(item))
            if found is None:
                continue
            rowid, sf_id = found
            adopted.append((rowid, self._seq(item)))
            known[position] = ItemResult(
                success=True, record_id=sf_id, already_inserted=True
            )
        if adopted:
            self.journal.adopt(adopted)
        return known

    def _rows(
        self, items: Sequence[Prepared], results: Sequence[ItemResult | None]
    ) -> list[JournalRow]:
        return [
            JournalRow(item_digest(item), result.record_id, self._seq(item))
            for item, result in zip(items, results, strict=True)
            if result is not None and result.success
        ]

    def stored(self, items: Sequence[Prepared], results: Sequence[ItemResult]) -> None:
        """A Collections call answered: remember the rows it stored."""
        rows = self._rows(items, results)
        if rows:
            self.journal.add_rows(self.scope, rows)

    def job_created(self, job_id: str, columns: Sequence[str]) -> None:
        """A Bulk job exists; its upload is not complete: record it."""
        self.journal.add_job(job_id, self.scope, columns)

    def job_abandoned(self, job_id: str) -> None:
        """A job aborted while Open (its upload failed) stored nothing: drop it."""
        self.journal.finish_job(job_id, self.scope, [])

    def job_finished(
        self,
        job_id: str,
        columns: Sequence[str],
        items: Sequence[Prepared],
        matched: Sequence[ItemResult | None],
        successful: Sequence[Mapping[str, str]],
    ) -> None:
        """A Bulk job's results were read: its stored rows in, its entry out.

        `matched` are the result rows matched back to the items (on every
        column, `bulk.bulk_results`): each success is one journal row under its
        record's input line. A successful row no item matched (not expected)
        is kept too, digest over the job's columns, under the batch's last line.
        """
        rows = self._rows(items, matched)
        if len(rows) < len(successful):
            have = collections.Counter(r.digest for r in rows)
            last = max(self.seqs, default=0)
            for row in successful:
                digest = result_row_digest(columns, row)
                if have[digest]:
                    have[digest] -= 1
                else:
                    rows.append(JournalRow(digest, row.get("sf__Id") or None, last))
        self.journal.finish_job(job_id, self.scope, rows)


def merge_results(
    count: int,
    known: Mapping[int, ItemResult],
    sent: Sequence[ItemResult | None],
) -> list[ItemResult | None]:
    """All `count` results in item order: `known` ones, then `sent` in the gaps.

    Raises:
        ValueError: when `sent` does not hold one result per item not known.
    """
    if len(sent) != count - len(known):
        msg = f"{len(sent)} results for {count - len(known)} items sent"
        raise ValueError(msg)
    rest = iter(sent)
    return [known[p] if p in known else next(rest) for p in range(count)]
