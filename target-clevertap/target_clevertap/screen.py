"""Screening built uploads before they are sent: event age and account caps.

Per input record (its items share an index): events older than
`skip_events_older_than_days` are dropped (counted, never silently), then the
record's new custom profile keys and event names are admitted against the
account-wide caps; a record with one refused is refused as a whole.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from target_clevertap import ages, caps

if TYPE_CHECKING:
    from collections.abc import Sequence

    from target_clevertap.payloads import UploadItem


@dataclass
class Screened:
    """What goes on, what was refused, what was too old, and the age buckets."""

    kept: list[tuple[int, UploadItem]] = field(default_factory=list)
    refused: dict[int, caps.Refusal] = field(default_factory=dict)
    too_old: Counter[int] = field(default_factory=Counter)
    buckets: list[tuple[int, str]] = field(default_factory=list)


def _admit(item: UploadItem, account_caps: caps.AccountCaps) -> caps.Refusal | None:
    if item.kind == "profile":
        data = item.payload.get("profileData")
        return account_caps.admit_profile(data.keys() if isinstance(data, dict) else ())
    return account_caps.admit_event(item.event_name or str(item.payload.get("evtName")))


def _young(
    idx: int, group: list[UploadItem], out: Screened, now: int, max_age_days: float
) -> list[UploadItem]:
    """The record's items within the age limit (the others are counted)."""
    fresh: list[UploadItem] = []
    for item in group:
        ts = now if item.ts is None else item.ts
        if item.kind == "event" and ages.too_old(ts, now, max_age_days):
            out.too_old[idx] += 1
        else:
            fresh.append(item)
    return fresh


def screen(
    items: Sequence[tuple[int, UploadItem]],
    account_caps: caps.AccountCaps,
    *,
    now: int,
    max_age_days: float | None,
) -> Screened:
    """Screen one window's items.

    Args:
        items: (record index, item) pairs.
        account_caps: the caps tracker.
        now: the current epoch seconds.
        max_age_days: skip events older than this (None: keep all).

    Returns:
        The outcome.
    """
    out = Screened()
    groups: dict[int, list[UploadItem]] = {}
    for idx, item in items:
        group = groups.get(idx)
        if group is None:
            groups[idx] = [item]
        else:
            group.append(item)
    kept, buckets, bucket = out.kept, out.buckets, ages.bucket
    for idx, group in groups.items():
        fresh = (
            group
            if max_age_days is None
            else _young(idx, group, out, now, max_age_days)
        )
        refusal = None
        for item in fresh:
            refusal = _admit(item, account_caps)
            if refusal is not None:
                break
        if refusal is not None:
            out.refused[idx] = refusal
            continue
        for item in fresh:
            kept.append((idx, item))
            if item.kind == "event":
                buckets.append((idx, bucket(now if item.ts is None else item.ts, now)))
    return out
