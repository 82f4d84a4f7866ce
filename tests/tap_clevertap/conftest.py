"""Fixtures shared by the tap-clevertap tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import backoff
import pytest
from tap_clevertap.client import CleverTapStream

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


@pytest.fixture
def run_tap_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m tap_clevertap --config <config> *args` with a clean environment.

    Plugin variables and proxy settings of the shell are left out, so a test sees only
    the config it passes.
    """

    def run(config: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("TAP_CLEVERTAP_") and "PROXY" not in key.upper()
        }
        return subprocess.run(
            [sys.executable, "-m", "tap_clevertap", "--config", str(path), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )

    return run


@pytest.fixture
def no_waits_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries at once (waits are not under test); no proxy or CA bundle of the shell.

    A test that needs a proxy or a CA bundle sets its own.
    """
    for name in (*PROXY_VARS, "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(
        CleverTapStream,
        "backoff_wait_generator",
        lambda _self: backoff.constant(interval=0),
    )
    monkeypatch.setattr(CleverTapStream, "backoff_jitter", lambda _self, value: value)
