"""The rejects file and the dry-run file (both mode 0600, appended line by line)."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any, TextIO

from target_clevertap.client import JSON_ENCODER, CleverTapError
from target_clevertap.payloads import number, scalar_text

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from target_clevertap.client import UploadResult
    from target_clevertap.counters import RunCounters
    from target_clevertap.loader import Entry
    from target_clevertap.payloads import UploadItem
    from target_clevertap.run_context import RunContext


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return number(value) if value.is_finite() else str(value)
    return scalar_text(value)


class Rejects:
    """Writes rejected records (with the reason) and dry-run payloads."""

    def __init__(self, ctx: RunContext, counters: RunCounters) -> None:
        """Set up; the files are opened on first use.

        Args:
            ctx: the run context (paths, `on_reject`).
            counters: where rejects are counted.
        """
        self.ctx = ctx
        self.counters = counters
        self._lock = threading.Lock()
        self._rejects: IO[str] | None = None
        self._dry: TextIO | None = None

    def reject(  # noqa: PLR0913 - keyword-only reject fields
        self,
        stream: str,
        key: str | None,
        *,
        code: str,
        message: str,
        field_name: str | None,
        record: Mapping[str, Any] | None,
        count_record: bool = True,
    ) -> None:
        """Write a reject line (mode 0600 file) and count it.

        Args:
            stream: the stream.
            key: the record key.
            code: the reason code.
            message: the reason.
            field_name: the field at fault.
            record: the input record.
            count_record: count the input record as rejected (once per record).

        Raises:
            CleverTapError: when on_reject is `fail`.
        """
        stats = self.counters.stream_stats(stream)
        line = json.dumps(
            {
                "stream": stream,
                "key": key,
                "code": code,
                "message": message,
                "field": field_name,
                "record": record,
            },
            default=_json_default,
            ensure_ascii=False,
        )
        with self._lock:
            if self._rejects is None:
                self._rejects = self.ctx.open_private("rejects_path")
            self._rejects.write(line + "\n")
            self._rejects.flush()
            stats.rejected_by_code[code] += 1
            if count_record:
                stats.rejected += 1
        self.counters.warn_once(
            f"reject:{stream}:{code}",
            "Stream %s: record %s rejected (%s: %s); further %s rejects are only "
            "written to the rejects file",
            stream,
            key,
            code,
            message,
            code,
        )
        if self.ctx.on_reject == "fail":
            msg = f"stream {stream}: record {key} rejected ({code}: {message})"
            raise CleverTapError(msg)

    def reject_entry(
        self, entry: Entry, code: str, message: str, field_name: str | None = None
    ) -> None:
        """Reject a record that may have been rejected already (counted once).

        Args:
            entry: the record.
            code: the reason code.
            message: the reason.
            field_name: the field at fault.
        """
        first = not entry.accounted
        entry.accounted = True
        self.reject(
            entry.stream,
            entry.key,
            code=code,
            message=message,
            field_name=field_name,
            record=entry.record,
            count_record=first,
        )

    def apply_rejections(
        self,
        entries: Sequence[Entry],
        chunk: Sequence[tuple[int, UploadItem]],
        result: UploadResult,
    ) -> set[int]:
        """Write the rejects of one answered batch; their positions in it."""
        rejected_positions: set[int] = set()
        for rej in result.rejections:
            idx, _item = chunk[rej.position]
            rejected_positions.add(rej.position)
            self.reject_entry(entries[idx], rej.code, rej.message)
        return rejected_positions

    def write_dry_run(self, items: Sequence[UploadItem]) -> None:
        """Append the payloads a dry run would have sent.

        Args:
            items: the upload items.
        """
        with self._lock:
            if self._dry is None:
                self._dry = self.ctx.open_private("dry_run_path")
            lines = JSON_ENCODER.encode_lines([item.payload for item in items])
            self._dry.buffer.write(lines)  # UTF-8 already: no text round trip
            self._dry.flush()

    def close(self) -> None:
        """Close the files."""
        for handle in (self._rejects, self._dry):
            if handle is not None:
                handle.close()
