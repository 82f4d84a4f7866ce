"""Matching the `unprocessed` entries of an /1/upload reply to the records sent.

CleverTap has answered in several shapes over the years (recordings in
tests/fixtures/target_clevertap/real_upload_replies.json):

- `{"status": "fail", "code": 515, "error": "...Skipped record number : 2",
  "record": {...}}`, where `record` is the echoed input, an object (2018) or JSON
  text (2017), rewritten by CleverTap: identity as a string, Phone as a number;
- `{"<record JSON>": "<message ending in Skipped record number : N>"}` (Oct 2017),
  with no code.

An entry is matched by its record number first, then by the echoed record
(compared loosely, allowing for those rewrites). What cannot be matched is left
to the caller to settle per record; it never stops the run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

_RECORD_NUMBER = re.compile(r"record number\s*:\s*(\d+)", re.IGNORECASE)
_SKIPPED = re.compile(r"\s*Skipped\s*(record number\s*:\s*\d+)?\s*$", re.IGNORECASE)

#: codes of the messages CleverTap sent without a code (Oct 2017 shape); the
#: texts are the recorded ones
_CODES_BY_TEXT = (
    ("gender needs to be", "514"),
    ("email is not valid", "515"),
    ("phone number is not valid", "516"),
    ("employed needs to be", "517"),
    ("education needs to be", "518"),
    ("married needs to be", "519"),
    ("age is invalid", "520"),
    ("is necessary under", "523"),
    ("unix epoch", "525"),
)
UNMATCHED_CODE = "unmatched_reply"


@dataclass(frozen=True)
class Rejection:
    """One `unprocessed` entry, mapped to its position in the request."""

    position: int
    code: str
    message: str


@dataclass
class Unmatched:
    """An entry no record could be found for (its code and message)."""

    code: str
    message: str


@dataclass
class Matched:
    """Every entry of a reply: matched to a position, or not."""

    rejections: list[Rejection] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)


def _parse_echo(value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _split_entry(entry: object) -> tuple[str, object, object] | None:
    """(message, code, echoed record) of an entry, whatever its shape."""
    if not isinstance(entry, dict):
        return None
    if "error" in entry or "record" in entry or "code" in entry:
        return str(entry.get("error") or ""), entry.get("code"), entry.get("record")
    if len(entry) == 1:  # {"<record JSON>": "<message>"}
        ((key, value),) = entry.items()
        return str(value), None, key
    return None


def loose(value: object) -> object:
    """A record as compared with CleverTap's echo of it.

    Every scalar becomes text, a leading `+` is dropped (Phone comes back as a
    number) and integral floats lose their `.0`.

    Args:
        value: a record or part of one.

    Returns:
        The comparable form.
    """
    if isinstance(value, dict):
        return {str(k): loose(v) for k, v in value.items()}
    if isinstance(value, list):
        return [loose(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None:
        return None
    return str(value).strip().lstrip("+")


def _code(raw: object, message: str) -> str:
    if isinstance(raw, int | str) and not isinstance(raw, bool) and str(raw).strip():
        return str(raw).strip()
    lowered = message.lower()
    for text, code in _CODES_BY_TEXT:
        if text in lowered:
            return code
    return "unknown"


def clean_message(message: str) -> str:
    """The message without its trailing "Skipped record number : N".

    Args:
        message: CleverTap's error text.

    Returns:
        The reason, at most 300 characters.
    """
    text = _SKIPPED.sub("", _RECORD_NUMBER.sub("", message)).strip(" .:")
    text = re.sub(r"Skipped\s*$", "", text).strip(" .:")
    return text[:300]


def match_unprocessed(
    entries: Sequence[object], records: Sequence[dict[str, Any]]
) -> Matched:
    """Map `unprocessed` entries to positions in `records`.

    Args:
        entries: the reply's `unprocessed` list.
        records: the records sent, in order.

    Returns:
        The rejections by position, and the entries that matched no record.
    """
    out = Matched()
    taken: set[int] = set()
    comparable: list[object] | None = None
    for entry in entries:
        parts = _split_entry(entry)
        if parts is None:
            out.unmatched.append(Unmatched("unknown", str(entry)[:300]))
            continue
        message, raw_code, echo = parts
        code, reason = _code(raw_code, message), clean_message(message)
        number = _RECORD_NUMBER.search(message)
        pos = int(number.group(1)) - 1 if number else -1
        if not 0 <= pos < len(records):
            pos = -1
            echoed = _parse_echo(echo)
            if isinstance(echoed, dict):
                if comparable is None:
                    comparable = [loose(r) for r in records]
                wanted = loose(echoed)
                pos = next(
                    (
                        i
                        for i, rec in enumerate(comparable)
                        if i not in taken and rec == wanted
                    ),
                    -1,
                )
        if pos < 0:
            out.unmatched.append(Unmatched(code, reason))
            continue
        taken.add(pos)
        out.rejections.append(Rejection(pos, code, reason))
    return out
