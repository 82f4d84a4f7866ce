"""Pure Bulk API 2.0 helpers: upload limits, splitting by bytes, row matching.

Limits (Bulk API 2.0 developer guide, "Bulk API 2.0 Limits and Allocations";
`../shared/docs/salesforce-api.md` §2.3): a job's upload may be 150 MB once
Salesforce has base64-encoded it, which the guide turns into "at most 100 MB of
raw CSV"; a field holds at most 32,000 characters and a record 400,000. Nothing
here does I/O.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Final

from target_salesforce.payloads import csv_cell

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from target_salesforce.payloads import Prepared

# Raw CSV bytes per job: 100 MB, so the 150 MB base64 limit is never reached.
MAX_UPLOAD_BYTES: Final = 100_000_000
MAX_FIELD_CHARS: Final = 32_000
MAX_RECORD_CHARS: Final = 400_000

CODE_FIELD_TOO_LONG: Final = "BULK_FIELD_TOO_LONG"
CODE_RECORD_TOO_LONG: Final = "BULK_RECORD_TOO_LONG"
# rows a Failed job left unprocessed (retried in a new job, then rejected)
CODE_BULK_JOB_FAILED: Final = "BULK_JOB_FAILED"


def row_cells(columns: Sequence[str], item: Prepared) -> list[str]:
    """The CSV cells of one item: absent fields are empty (left unchanged)."""
    return [csv_cell(item.payload[c]) if c in item.payload else "" for c in columns]


def limit_problem(
    columns: Sequence[str], item: Prepared
) -> tuple[str, str, list[str]] | None:
    """Why an item cannot go into a Bulk upload: (code, message, fields), or None."""
    cells = row_cells(columns, item)
    for name, cell in zip(columns, cells, strict=True):
        if len(cell) > MAX_FIELD_CHARS:
            message = (
                f"field {name!r}: {len(cell)} characters; Bulk API 2.0 takes at "
                f"most {MAX_FIELD_CHARS:,} per field"
            )
            return CODE_FIELD_TOO_LONG, message, [name]
    total = sum(len(cell) for cell in cells)
    if total > MAX_RECORD_CHARS:
        longest = max(zip(cells, columns, strict=True), key=lambda p: len(p[0]))[1]
        message = (
            f"record of {total:,} characters (longest field {longest!r}); Bulk "
            f"API 2.0 takes at most {MAX_RECORD_CHARS:,} per record"
        )
        return CODE_RECORD_TOO_LONG, message, [longest]
    return None


def _line(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerow(cells)
    return buffer.getvalue()


def split_uploads(
    columns: Sequence[str], items: Sequence[Prepared], max_bytes: int
) -> Iterator[tuple[list[int], str]]:
    """Cut the items into CSV uploads of at most `max_bytes` UTF-8 bytes each.

    Yields (positions in `items`, CSV text with CRLF line endings). Every upload
    repeats the header; a row too big for any upload on its own travels alone.
    """
    header = _line(columns)
    header_bytes = len(header.encode("utf-8"))
    positions: list[int] = []
    lines: list[str] = []
    size = header_bytes
    for position, item in enumerate(items):
        line = _line(row_cells(columns, item))
        length = len(line.encode("utf-8"))
        if positions and size + length > max_bytes:
            yield positions, header + "".join(lines)
            positions, lines, size = [], [], header_bytes
        positions.append(position)
        lines.append(line)
        size += length
    if positions:
        yield positions, header + "".join(lines)


def match_rows(
    columns: Sequence[str],
    key_field: str | None,
    items: Sequence[Prepared],
    rows: Sequence[Mapping[str, str]],
) -> set[int]:
    """Positions of the items that result rows (e.g. unprocessed ones) stand for.

    Rows match on the key column, or on every column as sent when there is no
    key (insert), like `payloads.bulk_results`.
    """
    match_cols = [key_field] if key_field else list(columns)
    sent: dict[tuple[str, ...], deque[int]] = defaultdict(deque)
    for position, item in enumerate(items):
        cells = row_cells(match_cols, item)
        sent[tuple(cells)].append(position)
    found: set[int] = set()
    for row in rows:
        queue = sent.get(tuple(row.get(c, "") for c in match_cols))
        if queue:
            found.add(queue.popleft())
    return found
