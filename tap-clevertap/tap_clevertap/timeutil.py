"""Time handling for CleverTap exports: account-local timestamps and day windows.

CleverTap reports event times as 14-digit ``yyyyMMddHHmmss`` numbers in the
account's (project's) time zone and filters exports by whole local days
(``YYYYMMDD``). Everything here is pure: no I/O, no clock reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from collections.abc import Iterator

UTC = dt.UTC
_TS_DIGITS = 14


def load_zone(name: str) -> ZoneInfo:
    """Return the IANA time zone `name`.

    Args:
        name: an IANA zone name such as ``Asia/Kolkata`` or ``UTC``.

    Returns:
        The zone.

    Raises:
        ValueError: the name is not a known IANA zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"unknown IANA time zone {name!r} (for example 'UTC', 'Asia/Kolkata')"
        raise ValueError(msg) from exc


def parse_account_ts(value: object, zone: ZoneInfo) -> dt.datetime:
    """Convert an export ``ts`` (local ``yyyyMMddHHmmss``) to an aware UTC datetime.

    Wall times that occur twice (the hour repeated when clocks go back) resolve to
    the first occurrence; wall times skipped when clocks go forward resolve as
    ``zoneinfo`` does (with the offset in force before the change).

    Args:
        value: the 14-digit number, as int or str.
        zone: the account time zone.

    Returns:
        The instant in UTC.

    Raises:
        ValueError: the value is not a 14-digit local timestamp.
    """
    text = str(value).strip()
    if len(text) != _TS_DIGITS or not text.isdigit():
        msg = f"expected a 14-digit yyyyMMddHHmmss timestamp, got {value!r}"
        raise ValueError(msg)
    local = dt.datetime(
        int(text[0:4]),
        int(text[4:6]),
        int(text[6:8]),
        int(text[8:10]),
        int(text[10:12]),
        int(text[12:14]),
        tzinfo=zone,
    )
    return local.astimezone(UTC)


def iso_utc(moment: dt.datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC, to the second.

    Args:
        moment: an aware datetime.

    Returns:
        For example ``2024-01-15T09:00:12+00:00``.
    """
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def yyyymmdd(day: dt.date) -> int:
    """Return the CleverTap integer form of a date, e.g. 20240115."""
    return day.year * 10000 + day.month * 100 + day.day


def local_midnight(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """Return the UTC instant at which local `day` starts in `zone`."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(UTC)


def local_date(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    """Return the local calendar date of an aware instant in `zone`."""
    return moment.astimezone(zone).date()


@dataclasses.dataclass(frozen=True)
class Window:
    """A run of whole local days, and what to ask CleverTap for to cover it.

    The request (``request_from``..``request_to``, inclusive local days) is the
    window's own days, padded by ``pad_days`` at the outer edges of the sync range.
    Records are trimmed only at those edges (``keep_from`` on the first window,
    ``keep_until`` on the last; ``None`` means unbounded): inside the range every
    record belongs to the window whose request returned it, so each CleverTap day
    is read by exactly one window and nothing falls between two windows even if
    CleverTap's day boundaries differ from the configured time zone.
    """

    first_day: dt.date
    last_day: dt.date
    request_from: dt.date
    request_to: dt.date
    keep_from: dt.datetime | None
    keep_until: dt.datetime | None

    def contains(self, moment: dt.datetime) -> bool:
        """Whether a record at this instant is kept (inside the sync range)."""
        if self.keep_from is not None and moment < self.keep_from:
            return False
        return self.keep_until is None or moment < self.keep_until


def day_windows(  # noqa: PLR0913 - each bound is a separate, named input
    *,
    start: dt.datetime,
    end: dt.datetime,
    zone: ZoneInfo,
    days_per_window: int,
    today: dt.date,
    pad_days: int = 1,
) -> Iterator[Window]:
    """Split ``[start, end)`` into windows of whole local days.

    Args:
        start: first instant to keep (aware).
        end: instant to stop before (aware).
        zone: the account time zone; days are its calendar days.
        days_per_window: local days per window (>= 1).
        today: the account-local date today; padding never asks beyond it.
        pad_days: days added before the first and after the last window's request.

    Yields:
        Windows in ascending order; their requests cover the range's days once.

    Raises:
        ValueError: `days_per_window` is below 1.
    """
    if days_per_window < 1:
        msg = "days_per_window must be at least 1"
        raise ValueError(msg)
    if end <= start:
        return
    first = local_date(start, zone)
    # `end` is exclusive: an end at local midnight does not open a new day.
    last = local_date(end - dt.timedelta(microseconds=1), zone)
    day = first
    one = dt.timedelta(days=1)
    pad = dt.timedelta(days=pad_days)
    while day <= last:
        window_last = min(day + dt.timedelta(days=days_per_window - 1), last)
        is_first, is_last = day == first, window_last == last
        request_to = window_last
        if is_last:
            request_to = max(min(window_last + pad, today), window_last)
        yield Window(
            first_day=day,
            last_day=window_last,
            request_from=day - pad if is_first else day,
            request_to=request_to,
            keep_from=start if is_first else None,
            keep_until=end if is_last else None,
        )
        day = window_last + one


def month_windows(
    first: dt.date, last: dt.date, days: int = 31
) -> Iterator[tuple[dt.date, dt.date]]:
    """Split inclusive dates ``first..last`` into chunks of at most `days` days.

    Args:
        first: first day.
        last: last day (inclusive).
        days: chunk length.

    Yields:
        ``(from, to)`` inclusive pairs in ascending order.
    """
    day = first
    while day <= last:
        chunk_end = min(day + dt.timedelta(days=days - 1), last)
        yield day, chunk_end
        day = chunk_end + dt.timedelta(days=1)
