"""Shared fixtures: the emulators, started on 127.0.0.1 for the tests that need them."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from sandbox.tls import TLSFiles


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A test CA and a server certificate for the real hostnames and 127.0.0.1."""
    from sandbox.tls import ensure_tls_files  # noqa: PLC0415

    return ensure_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def make_clevertap_emulator(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A factory: `make_clevertap_emulator(timezone="Asia/Kolkata")` starts one more.

    Each emulator gets its own SQLite file under tmp_path and is stopped at teardown.
    """
    from sandbox.clevertap.testing import running_emulator  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        count = 0

        def make(**kwargs: Any) -> Any:
            nonlocal count
            count += 1
            kwargs.setdefault("db_path", tmp_path / f"clevertap-{count}.db")
            return stack.enter_context(running_emulator(**kwargs))

        yield make


@pytest.fixture
def clevertap_emulator(make_clevertap_emulator: Callable[..., Any]) -> Any:
    """A CleverTap emulator with default account, passcode and UTC time zone."""
    return make_clevertap_emulator()


@pytest.fixture
def make_salesforce_emulator(
    tmp_path: Path, tls_files: TLSFiles
) -> Iterator[Callable[..., Any]]:
    """A factory for Salesforce emulators (HTTPS on 127.0.0.1 with the test CA)."""
    from sandbox.salesforce.testing import running_emulator  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        count = 0

        def make(**kwargs: Any) -> Any:
            nonlocal count
            count += 1
            kwargs.setdefault("db_path", tmp_path / f"salesforce-{count}.db")
            kwargs.setdefault("tls_files", tls_files)
            return stack.enter_context(running_emulator(**kwargs))

        yield make


@pytest.fixture
def salesforce_emulator(make_salesforce_emulator: Callable[..., Any]) -> Any:
    """A Salesforce emulator seeded with the sample org."""
    return make_salesforce_emulator()


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server on 127.0.0.1 for one test module.

    Needs Debian's server binaries (`make postgres-server` installs them).
    """
    from sandbox.postgres import running_postgres  # noqa: PLC0415

    with running_postgres() as server:
        yield server


def run_preflight(
    module: str, config_path: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """`python -m <module> --config <config_path> --preflight`, its output as text."""
    return subprocess.run(
        [sys.executable, "-m", module, "--config", str(config_path), "--preflight"],
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=120,
        check=False,
    )


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """SIGTERM and SIGINT handled as before the test (a target installs its own)."""
    saved = {
        signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
