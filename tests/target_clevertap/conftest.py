"""Fixtures for the target-clevertap tests: fast retries and an in-process runner."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import backoff
import pytest
from target_clevertap.client import CleverTapClient
from target_clevertap.target import TargetCleverTap

if TYPE_CHECKING:
    from collections.abc import Callable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "target_clevertap"
MAPPINGS = FIXTURES / "salesforce_mappings.yml"


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries wait ~0 s in tests (the real waits are exponential with jitter)."""
    monkeypatch.setattr(
        CleverTapClient, "wait_generator", staticmethod(lambda: backoff.constant(0))
    )
    monkeypatch.setattr(CleverTapClient, "jitter", staticmethod(lambda value: value))


@dataclass
class Run:
    """The outcome of one in-process target run."""

    states: list[dict[str, Any]]
    target: TargetCleverTap

    def stats(self, stream: str) -> dict[str, Any]:
        return self.target.loader.stream_stats(stream).as_dict()


@pytest.fixture
def ct_config(clevertap_emulator: Any, tmp_path: Path) -> dict[str, Any]:
    """Config pointing at the emulator, with the test mappings and private paths."""
    return {
        **clevertap_emulator.plugin_config(),
        "mappings_file": str(MAPPINGS),
        "state_dir": str(tmp_path / "state"),
        "rejects_path": str(tmp_path / "rejects.jsonl"),
        "dry_run_path": str(tmp_path / "dry-run.jsonl"),
        "default_phone_country": "US",
        "request_timeout": 5,
        # the emulator shows events at once (unless a lag fault says otherwise)
        "reconcile_lag_seconds": 0,
    }


def _run(config: dict[str, Any], fixture: str) -> Run:
    target = TargetCleverTap(config=config, parse_env_config=False)
    out = io.StringIO()
    try:
        with redirect_stdout(out), (FIXTURES / fixture).open(encoding="utf-8") as fh:
            target.listen(fh)
    finally:
        print(out.getvalue(), end="")  # noqa: T201 - lets a caller see STATE of a failed run
    states = [json.loads(line) for line in out.getvalue().splitlines() if line]
    return Run(states, target)


@pytest.fixture
def run_target() -> Callable[[dict[str, Any], str], Run]:
    """Run the target in-process on a fixture file; returns STATE lines and stats."""
    return _run


@pytest.fixture
def read_rejects(tmp_path: Path) -> Callable[[], list[dict[str, Any]]]:
    """The rejects file lines of this test."""

    def read() -> list[dict[str, Any]]:
        path = tmp_path / "rejects.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    return read
