"""The account time zone resolves on machines without a system tz database."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import TYPE_CHECKING

import pytest
from tap_clevertap.timeutil import load_zone

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def no_system_tz_database() -> Iterator[None]:
    """Search no system folder for zone files (as on a slim container)."""
    saved = zoneinfo.TZPATH
    zoneinfo.reset_tzpath(to=[])
    try:
        yield
    finally:
        zoneinfo.reset_tzpath(to=saved)


@pytest.mark.usefixtures("no_system_tz_database")
def test_account_zone_loads_from_the_tzdata_package_without_system_zone_files() -> None:
    assert zoneinfo.TZPATH == ()
    zoneinfo.ZoneInfo.clear_cache()
    zone = load_zone("Asia/Kolkata")
    offset = dt.datetime(2024, 1, 1, tzinfo=zone).utcoffset()
    assert offset == dt.timedelta(hours=5, minutes=30)
