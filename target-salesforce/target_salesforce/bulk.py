"""Pure Bulk API 2.0 helpers: CSV, upload limits, splitting by bytes, result rows.

Limits (Bulk API 2.0 developer guide, "Bulk API 2.0 Limits and Allocations";
`../shared/docs/salesforce-api.md` §2.3): a job's upload may be 150 MB once
Salesforce has base64-encoded it, which the guide turns into "at most 100 MB of
raw CSV"; a field holds at most 32,000 characters and a record 400,000. Nothing
here does I/O.
"""

from __future__ import annotations

import csv
import decimal
import io
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Final

from target_salesforce.results import ItemResult

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from target_salesforce.payloads import Prepared
    from target_salesforce.values import JsonValue

BULK_NULL: Final = "#N/A"

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
    key (insert), like `bulk_results`.
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


def csv_cell(value: JsonValue) -> str:
    """One Bulk 2.0 CSV cell: null is `#N/A` (sets null), numbers in plain notation.

    A Decimal is written with all its digits (`1234567890123456.78`).
    """
    if value is None:
        return BULK_NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(decimal.Decimal(repr(value)), "f")
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return str(value)


def bulk_columns(
    action: str, key_field: str | None, items: Sequence[Prepared]
) -> list[str]:
    """CSV header: the key first, then every other field in first-seen order."""
    if action == "delete":
        return ["Id"]
    columns: dict[str, None] = {}
    if key_field:
        columns[key_field] = None
    for item in items:
        for name in item.payload:
            columns.setdefault(name, None)
    return list(columns)


def parse_csv(text: str) -> list[dict[str, str]]:
    """Parse a Bulk 2.0 result CSV into rows."""
    if not text.strip():
        return []
    return list(csv.DictReader(io.StringIO(text)))


def parse_bulk_error(text: str) -> tuple[str, str, tuple[str, ...]]:
    """Split `sf__Error` into (code, message, fields).

    Salesforce writes `CODE:message:fields --`, e.g.
    `INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--` (recorded in
    `misc_real_errors.md`); the fields part is comma-separated and may be empty.
    """
    code, sep, rest = text.partition(":")
    if not sep:
        return "UNKNOWN_ERROR", text, ()
    rest = rest.strip()
    fields: tuple[str, ...] = ()
    if rest.endswith("--"):
        head, colon, tail = rest[:-2].rstrip().rpartition(":")
        if colon:
            rest = head.strip()
            fields = tuple(f.strip() for f in tail.split(",") if f.strip())
    return code.strip() or "UNKNOWN_ERROR", rest, fields


def bulk_results(
    columns: Sequence[str],
    key_field: str | None,
    items: Sequence[Prepared],
    successful: Sequence[Mapping[str, str]],
    failed: Sequence[Mapping[str, str]],
) -> list[ItemResult | None]:
    """Match Bulk 2.0 result rows back to the items sent (row order is not kept).

    With a key (upsert, update, delete) rows match on the key column, which
    `prepare_batch` made unique; without one (insert) they match on all columns
    as sent. Items with no matching row get None (outcome unknown).
    """
    match_cols = [key_field] if key_field else list(columns)
    sent: dict[tuple[str, ...], deque[int]] = defaultdict(deque)
    for position, item in enumerate(items):
        sent[tuple(row_cells(match_cols, item))].append(position)
    out: list[ItemResult | None] = [None] * len(items)

    def take(row: Mapping[str, str]) -> int | None:
        queue = sent.get(tuple(row.get(c, "") for c in match_cols))
        return queue.popleft() if queue else None

    for row in successful:
        found = take(row)
        if found is not None:
            created = str(row.get("sf__Created", "")).lower() == "true"
            out[found] = ItemResult(
                success=True, record_id=row.get("sf__Id") or None, created=created
            )
    for row in failed:
        found = take(row)
        if found is not None:
            code, message, fields = parse_bulk_error(row.get("sf__Error", ""))
            out[found] = ItemResult(
                success=False,
                record_id=row.get("sf__Id") or None,
                code=code,
                message=message,
                fields=fields,
            )
    return out
