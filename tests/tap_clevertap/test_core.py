"""The singer-sdk standard tap tests, against a seeded CleverTap emulator.

`get_tap_test_class` builds the tap while the module is collected (to list the
streams), so the emulator is started and seeded at import, and stopped by a
module fixture when the tests of this file are done.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sandbox.clevertap.testing import running_emulator
from singer_sdk.testing import SuiteConfig, get_tap_test_class
from tap_clevertap.tap import TapCleverTap

if TYPE_CHECKING:
    from collections.abc import Iterator

_STACK = contextlib.ExitStack()
_DIR = Path(_STACK.enter_context(tempfile.TemporaryDirectory(prefix="tap-ct-core-")))
_EMULATOR = _STACK.enter_context(
    running_emulator(db_path=_DIR / "clevertap.db", timezone="Asia/Kolkata")
)
_EMULATOR.seed(
    seed=3,
    profiles=8,
    events_per_day=4,
    campaigns=4,
    messages=3,
    event_names=["Charged", "Product Viewed"],
    **{"from": 20240301, "to": 20240303},
)
CONFIG = {
    **_EMULATOR.plugin_config(),
    "timezone": "Asia/Kolkata",
    "start_date": "2024-03-01T00:00:00+05:30",
    "end_date": "2024-03-04T00:00:00+05:30",
    "campaign_lookahead_days": 0,
}


@pytest.fixture(scope="module", autouse=True)
def _stop_emulator() -> Iterator[None]:
    yield
    _STACK.close()


TestTapCleverTap = get_tap_test_class(
    TapCleverTap,
    config=CONFIG,
    parse_env_config=False,
    # Every stream has seeded records, so none is excused from returning some.
    suite_config=SuiteConfig(max_records_limit=500),
)
