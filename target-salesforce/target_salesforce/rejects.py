"""The rejects file (JSON lines, mode 0600), the dry-run file and run summaries.

Each reject line holds the input record, whole (however long its values), so
that it can be fixed and replayed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import stat
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from target_salesforce.values import encode_json

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class PrivateJsonLines:
    """Append-only JSON-lines file created with mode 0600, opened on first write."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Remember the path; nothing is created until something is written."""
        self.path = Path(path)
        self._lock = threading.Lock()
        self.count = 0

    def write(self, entry: Mapping[str, Any]) -> None:
        """Append one JSON object as a line."""
        # one line, `", "` and `": "` as json.dumps writes; Decimals keep all digits
        line = msgspec.json.format(encode_json(dict(entry)), indent=0) + b"\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):  # never chmod /dev/null
                    os.fchmod(fd, 0o600)
                os.write(fd, line)
            finally:
                os.close(fd)
            self.count += 1


def not_linked_path(rejects_path: str) -> str:
    """Where not-linked records go: beside the rejects file, `<stem>.not-linked`.

    `output/target-salesforce-rejects.jsonl` ->
    `output/target-salesforce-rejects.not-linked.jsonl`.
    """
    path = Path(rejects_path)
    suffix = path.suffix or ".jsonl"
    return str(path.with_name(f"{path.stem}.not-linked{suffix}"))


def reject_entry(  # noqa: PLR0913 - one argument per documented rejects column
    *,
    stream: str,
    sobject: str | None,
    action: str,
    key: str | None,
    code: str,
    message: str,
    fields: Sequence[str],
    record: Mapping[str, Any],
    matches: Sequence[str] = (),
) -> dict[str, Any]:
    """One line of the rejects file. Holds record data only, never settings.

    `matches` are the Ids of the existing records a duplicate rule matched
    (DUPLICATES_DETECTED); the line has a `matches` key only when there are some.
    """
    entry = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "stream": stream,
        "object": sobject,
        "action": action,
        "key": key,
        "code": code,
        "message": message,
        "fields": list(fields),
        "record": dict(record),
    }
    if matches:
        entry["matches"] = list(matches)
    return entry


@dataclasses.dataclass
class StreamSummary:
    """Counts for one stream over the whole run."""

    stream: str
    target: str
    received: int = 0
    succeeded: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0
    #: records without a key under `on_missing_key: not_linked` (settled, not
    #: rejects; listed in the not-linked file)
    not_linked: int = 0
    dry_run: int = 0
    #: records an earlier run stored (insert journal): counted as succeeded,
    #: not sent again
    already_inserted: int = 0
    api_calls: Counter[str] = dataclasses.field(default_factory=Counter)
    codes: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def reject_ratio(self) -> float:
        """Rejected share of the records settled so far."""
        settled = self.succeeded + self.rejected + self.not_linked
        return self.rejected / settled if settled else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view for logs and the summary file."""
        return {
            "stream": self.stream,
            "target": self.target,
            "received": self.received,
            "succeeded": self.succeeded,
            "created": self.created,
            "updated": self.updated,
            "rejected": self.rejected,
            "not_linked": self.not_linked,
            "dry_run": self.dry_run,
            "already_inserted": self.already_inserted,
            "rejected_by_code": dict(sorted(self.codes.items())),
            "api_calls": dict(sorted(self.api_calls.items())),
        }
