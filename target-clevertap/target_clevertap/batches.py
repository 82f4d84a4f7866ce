"""Upload batches: at most `batch_size` records and at most `max_bytes` of JSON.

CleverTap documents no body limit; 1000 records x 100 properties x 512 bytes can
reach tens of MB, and proxies in between commonly refuse bodies over 1 MiB
(nginx's default `client_max_body_size`). A record larger than the cap alone goes
in a batch of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

T = TypeVar("T")
#: `{"d":[` + `]}` around the records, and a comma between two
_ENVELOPE = 7


def split(
    items: Sequence[T], batch_size: int, max_bytes: int, size: Callable[[T], int]
) -> list[list[T]]:
    """Cut items into batches by count and by encoded size.

    Args:
        items: the items, in order.
        batch_size: records per batch at most.
        max_bytes: request body bytes per batch at most.
        size: an item's encoded size in bytes.

    Returns:
        The batches, in order.
    """
    out: list[list[T]] = []
    current: list[T] = []
    total = _ENVELOPE
    for item in items:
        n = size(item) + 1
        if current and (len(current) >= batch_size or total + n > max_bytes):
            out.append(current)
            current, total = [], _ENVELOPE
        current.append(item)
        total += n
    if current:
        out.append(current)
    return out
