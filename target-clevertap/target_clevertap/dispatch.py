"""The upload dispatcher: one window's profiles, deletes and events, in order.

Profiles go first (the events that follow may need them), then profile deletes,
then events, oldest first, through the ledger (`event_uploads.EventUploads`).
Batches hold `batch_size` records and `max_request_bytes` at most; the run's
thread pool keeps up to `max_concurrency` of them in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from target_clevertap import batches
from target_clevertap.client import JSON_ENCODER
from target_clevertap.event_uploads import EventUploads
from target_clevertap.pipeline import RECORDS_IN_FLIGHT_CALLS, UploadPipeline
from target_clevertap.replies import Rejection

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Future

    from target_clevertap.client import UploadResult
    from target_clevertap.counters import RunCounters
    from target_clevertap.deletes import Deletes
    from target_clevertap.loader import Entry
    from target_clevertap.payloads import UploadItem
    from target_clevertap.rejects import Rejects
    from target_clevertap.run_context import RunContext

Pairs = list[tuple[int, "UploadItem"]]


class Chunk(list[tuple[int, "UploadItem"]]):
    """One upload call's (position, item) pairs, with its request body once encoded.

    `chunks` encodes each batch to check `max_request_bytes`; the client sends
    that body instead of encoding the same records again.
    """

    body: bytes | None = None


class UploadDispatcher:
    """Sends a window's uploads in batches and settles each batch's answer."""

    def __init__(
        self,
        ctx: RunContext,
        counters: RunCounters,
        rejects: Rejects,
        deletes: Deletes,
    ) -> None:
        """Set up.

        Args:
            ctx: the run context (client, pool, store, settings).
            counters: sent counters.
            rejects: the rejects and dry-run files.
            deletes: sends profile deletes.
        """
        self.ctx = ctx
        self.counters = counters
        self.rejects = rejects
        self.deletes = deletes
        self.events = EventUploads(self)
        self.pipeline = UploadPipeline(
            self,
            max_records=RECORDS_IN_FLIGHT_CALLS * ctx.batch_size * ctx.max_concurrency,
        )

    def send(
        self,
        entries: Sequence[Entry],
        items: Sequence[tuple[int, UploadItem]],
        deletes: list[tuple[int, str]],
    ) -> None:
        """Send one window (or, in a dry run, write or check it) and settle it.

        Returns once every batch is answered and accounted for.

        Args:
            entries: the window's records.
            items: (position, upload item) pairs, profiles before events.
            deletes: (position, identity) profile deletes.
        """
        profiles, events = _split(items)
        ctx = self.ctx
        if ctx.dry_run:
            self.rejects.write_dry_run(
                [it for _, it in profiles] + [it for _, it in events]
            )
            self.counters.count_all_sent(entries, items)
        elif ctx.dry_run_remote:
            self.upload_upserts(entries, profiles)
            self.events.check_remotely(entries, events)
            if deletes:
                self.counters.warn_once(
                    "dry_run_remote:deletes",
                    "dry_run_remote: %d profile deletes were not sent",
                    len(deletes),
                )
        else:
            self.upload_upserts(entries, profiles)
            self.deletes.send(entries, deletes)
            self.events.upload(entries, events)

    def submit(
        self,
        entries: Sequence[Entry],
        items: Sequence[tuple[int, UploadItem]],
        deletes: list[tuple[int, str]],
        complete: Callable[[], None],
    ) -> Future[None]:
        """Queue one window for upload (a live run); `complete` settles it.

        The window uploads while the next one is built (`pipeline.UploadPipeline`:
        profiles, deletes, then events, in order across windows).

        Args:
            entries: the window's records.
            items: (position, upload item) pairs.
            deletes: (position, identity) profile deletes.
            complete: called once every upload of the window settled.

        Returns:
            The window's handle.
        """
        profiles, events = _split(items)
        return self.pipeline.submit(entries, profiles, deletes, events, complete)

    def chunks(self, pairs: Sequence[tuple[int, UploadItem]]) -> list[Pairs]:
        """Upload batches: `batch_size` records, `max_request_bytes` at most."""
        size, max_bytes = self.ctx.batch_size, self.ctx.max_request_bytes
        out: list[Pairs] = []
        for i in range(0, len(pairs), size):
            chunk = Chunk(pairs[i : i + size])
            body = JSON_ENCODER.encode({"d": [it.payload for _, it in chunk]})
            if len(body) <= max_bytes:
                chunk.body = body
                out.append(chunk)
                continue
            out.extend(
                batches.split(
                    chunk,
                    size,
                    max_bytes,
                    lambda pair: len(JSON_ENCODER.encode(pair[1].payload)),
                )
            )
        return out

    def _send_profiles(self, chunk: Sequence[tuple[int, UploadItem]]) -> UploadResult:
        return self.ctx.client.upload(
            [it.payload for _, it in chunk],
            idempotent=True,
            dry_run=self.ctx.dry_run_remote,
            body=getattr(chunk, "body", None),
        )

    def upload_upserts(
        self, entries: Sequence[Entry], profiles: Sequence[tuple[int, UploadItem]]
    ) -> None:
        """Upload what may be resent (profiles; events in a remote dry run)."""
        count_sent = self.counters.count_sent
        chunks = self.chunks(profiles)
        # each answered batch settles while later ones are still in flight
        results = self.ctx.pool.map(self._send_profiles, chunks)
        unclear: Pairs = []
        for chunk, result in zip(chunks, results, strict=True):
            rejected = self.rejects.apply_rejections(entries, chunk, result)
            if result.unmatched:  # who failed is unknown: resend them one by one
                self.ctx.logger.warning(
                    "%d unprocessed entries of a profile upload named no record; "
                    "sending the %d unnamed profiles again one by one",
                    len(result.unmatched),
                    len(chunk) - len(rejected),
                )
                unclear.extend(p for n, p in enumerate(chunk) if n not in rejected)
                self.counters.count_all_sent(entries, [chunk[n] for n in rejected])
                continue
            self.counters.count_all_sent(entries, chunk)
        if not unclear:
            return
        singles = [[pair] for pair in unclear]
        for single, result in zip(
            singles, self.ctx.pool.map(self._send_profiles, singles), strict=True
        ):
            idx, item = single[0]
            if result.unmatched and not result.rejections:
                miss = result.unmatched[0]
                result.rejections.append(Rejection(0, miss.code, miss.message))
            self.rejects.apply_rejections(entries, single, result)
            count_sent(entries, idx, item)


def _split(items: Sequence[tuple[int, UploadItem]]) -> tuple[Pairs, Pairs]:
    """A window's profiles, and its events oldest first."""
    profiles = [(i, it) for i, it in items if it.kind == "profile"]
    events = sorted(
        ((i, it) for i, it in items if it.kind == "event"),
        key=lambda pair: pair[1].ts or 0,
    )
    return profiles, events
