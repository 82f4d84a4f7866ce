"""Event age buckets: what CleverTap does with old events.

Events more than about 2 hours old do not trigger live campaigns (docs:
events-object), and data older than 365 days does not show in the dashboard
(docs: importing-historical-data). The run summary counts events by bucket.
"""

from __future__ import annotations

LIVE = "under_2h"
RECENT = "under_365d"
OLD = "over_365d"
LIVE_WINDOW_S = 2 * 3600
DASHBOARD_WINDOW_S = 365 * 86_400
_DAY_S = 86_400


def bucket(ts: int, now: int) -> str:
    """The age bucket of an event.

    Args:
        ts: the event's epoch seconds.
        now: the current epoch seconds.

    Returns:
        LIVE, RECENT or OLD.
    """
    age = now - ts
    if age < LIVE_WINDOW_S:
        return LIVE
    if age < DASHBOARD_WINDOW_S:
        return RECENT
    return OLD


def too_old(ts: int, now: int, max_days: float | None) -> bool:
    """Whether an event is older than `max_days` (None: no limit).

    Args:
        ts: the event's epoch seconds.
        now: the current epoch seconds.
        max_days: the `skip_events_older_than_days` setting.

    Returns:
        True to skip it.
    """
    return max_days is not None and now - ts > max_days * _DAY_S
