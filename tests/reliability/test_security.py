"""Security: no secret in any output, private files 0600, TLS verified, localhost.

The fault matrix already greps every output of every run (stdout, stderr, rejects,
summaries, the ledger and identity map) for the run's secrets; these tests add
`--about`, failed logins, the other login flows, file modes, a scan of the code for
disabled TLS verification, and the listening sockets of the emulators and the proxy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
TRACEBACK = "Traceback (most recent call last)"
LOCALHOST = "127.0.0.1"


def _secret_lines(pem: str) -> list[str]:
    """The base64 body lines of a PEM key (any one of them is a leak)."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def _assert_clean(run: Any, secrets: list[str]) -> None:
    for name, text in run.outputs():
        for secret in secrets:
            assert secret not in text, f"secret leaked into {name}"


# ----------------------------------------------------------------- --about


ABOUT_SECRETS = {
    "target_clevertap": {"passcode": "about-PASSCODE-ct-5521"},
    "tap_clevertap": {"passcode": "about-PASSCODE-tap-8812"},
    "target_salesforce": {
        "client_secret": "about-CLIENT-SECRET-sf-3377",
        "refresh_token": "about-REFRESH-TOKEN-sf-9043",
        "private_key": "about-PRIVATE-KEY-sf-1208",
        "password": "about-PASSWORD-sf-6650",
        "security_token": "about-SECTOKEN-sf-4431",
        "access_token": "about-ACCESS-TOKEN-sf-7719",
    },
}


@pytest.mark.parametrize("module", sorted(ABOUT_SECRETS))
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_about_output_never_shows_secrets_and_marks_them_secret(
    module: str, fmt: str, tmp_path: Path, plugin_cli: Any
) -> None:
    secrets = ABOUT_SECRETS[module]
    config = {"account_id": "ABOUT-ACCOUNT", **secrets}
    path = tmp_path / "about.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    args = ["--about", "--config", str(path)]
    if fmt != "text":
        args.append(f"--format={fmt}")
    run = plugin_cli(module, *args)
    assert run.returncode == 0, run.stderr[-2000:]
    _assert_clean(run, list(secrets.values()))
    if fmt == "json":
        properties = json.loads(run.stdout)["settings"]["properties"]
        for name in secrets:
            assert properties[name].get("secret") is True, name


# ------------------------------------------------------------ failed logins


def test_clevertap_target_wrong_passcode_fails_clearly_without_the_passcode(
    ct_rig: Any,
) -> None:
    wrong = "WRONG-passcode-ct-40817"
    config = ct_rig.config(passcode=wrong)
    run = ct_rig.run(config, [ct_rig.schema(), *_ct_records(ct_rig)])
    assert run.returncode != 0
    _assert_clean(run, [wrong, ct_rig.handle.passcode])
    last = run.stderr.strip().splitlines()[-1]
    assert "target-clevertap stopped" in last
    assert ct_rig.handle.account_id in last
    assert TRACEBACK not in run.stderr


def _ct_records(rig: Any) -> list[dict[str, Any]]:
    return _record_messages(rig, rig.make_records(3, set()))


def test_clevertap_tap_wrong_passcode_fails_clearly_without_the_passcode(
    tap_rig: Any,
) -> None:
    wrong = "WRONG-passcode-tap-11923"
    run = tap_rig.sync(tap_rig.config(passcode=wrong), None)
    assert run.returncode != 0
    _assert_clean(run, [wrong, tap_rig.handle.passcode])
    assert tap_rig.handle.account_id in run.stderr
    assert "401" in run.stderr


def test_salesforce_target_wrong_client_secret_fails_without_any_secret(
    sf_rig: Any,
) -> None:
    wrong = "WRONG-client-secret-sf-55120"
    config = sf_rig.config(client_secret=wrong)
    records = sf_rig.make_records(3, set())
    run = sf_rig.run(config, [sf_rig.schema(), *_record_messages(sf_rig, records)])
    assert run.returncode != 0
    _assert_clean(run, [wrong, sf_rig.handle.refresh_token])
    assert "invalid_client" in run.stderr or "authentication" in run.stderr.lower()


def _record_messages(rig: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "RECORD", "stream": rig.stream, "record": r} for r in records]


def test_salesforce_target_jwt_login_and_relogin_never_show_the_private_key(
    sf_rig: Any,
) -> None:
    """JWT bearer login, an expired session mid-run (new login), all outputs clean."""
    handle = sf_rig.handle
    pem = handle.jwt_private_key_pem.decode()
    config = sf_rig.config(
        auth_flow="jwt",
        client_id=handle.client_id,
        username=handle.username,
        private_key=pem,
    )
    del config["client_secret"], config["refresh_token"]
    handle.fault("invalid_session", count=1)
    records = sf_rig.make_records(5, set())
    run = sf_rig.run(config, [sf_rig.schema(), *_record_messages(sf_rig, records)])
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_clean(run, [*_secret_lines(pem), *sf_rig.secrets()])
    assert sf_rig.tally(records).accepted == len(records)


def test_salesforce_target_legacy_password_failure_never_shows_the_password(
    sf_rig: Any,
) -> None:
    handle = sf_rig.handle
    wrong = "WRONG-password-sf-77031"
    config = sf_rig.config(
        auth_flow="password",
        username=handle.username,
        password=wrong,
        security_token=handle.security_token,
    )
    del config["client_secret"], config["refresh_token"]
    records = sf_rig.make_records(2, set())
    run = sf_rig.run(config, [sf_rig.schema(), *_record_messages(sf_rig, records)])
    assert run.returncode != 0
    _assert_clean(run, [wrong, handle.security_token])


# --------------------------------------------------------------- file modes


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_clevertap_target_rejects_ledger_and_identity_map_are_0600(
    ct_rig: Any,
) -> None:
    records = ct_rig.make_records(20, {2, 7})
    with _umask(0o022):
        run = ct_rig.run(
            ct_rig.config(),
            [ct_rig.schema(), *_record_messages(ct_rig, records)],
        )
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(ct_rig.rejects()) == 2
    assert _mode(ct_rig.rejects_path) == 0o600
    state_files = [p for p in ct_rig.state_dir.rglob("*") if p.is_file()]
    assert state_files, "the ledger and identity map live in state_dir"
    for path in state_files:
        assert _mode(path) == 0o600, path


def test_salesforce_target_rejects_and_summary_are_0600(sf_rig: Any) -> None:
    records = sf_rig.make_records(10, {1})
    with _umask(0o022):
        run = sf_rig.run(
            sf_rig.config(), [sf_rig.schema(), *_record_messages(sf_rig, records)]
        )
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(sf_rig.rejects()) == 1
    assert _mode(sf_rig.rejects_path) == 0o600
    assert _mode(sf_rig.summary_path) == 0o600


# ------------------------------------------------------------- TLS verified

_SKIP_DIRS = {".venv", ".venv-meltano", ".venv-tap-salesforce", ".meltano", ".git"}
_SKIP_DIRS |= {".sandbox", "node_modules", ".mypy_cache", ".ruff_cache", "out"}
_INSECURE = re.compile(
    r"verify\s*=\s*(False|0)\b"
    r"|CERT_NONE"
    r"|_create_unverified_context"
    r"|check_hostname\s*=\s*False"
    r"|disable_warnings\("
)


def _python_files() -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [
            d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".venv")
        ]
        out += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    this = Path(__file__).resolve()  # it spells the patterns out
    return [p for p in out if p.resolve() != this]


def test_no_python_file_turns_tls_verification_off() -> None:
    files = _python_files()
    assert len(files) > 50  # the scan really walked the repo
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _INSECURE.search(line)
    ]
    assert offenders == []


# ------------------------------------------------------ listening sockets


def _listening(pid: int) -> list[Any]:
    return [
        c.laddr
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]


def test_emulators_and_proxy_in_tests_listen_on_localhost_only(
    ct_rig: Any, sf_rig: Any
) -> None:
    """The fixtures' CleverTap and Salesforce emulators and the proxy (this process)."""
    del ct_rig, sf_rig  # both started: two emulators and the CONNECT proxy
    addresses = _listening(os.getpid())
    assert len(addresses) >= 3, addresses
    assert {a.ip for a in addresses} == {LOCALHOST}, addresses


@pytest.mark.parametrize(
    "args",
    [
        ["sandbox", "clevertap"],
        ["sandbox", "salesforce", "--no-seed"],
        ["sandbox.proxy", "--route", "api.clevertap.com=127.0.0.1:9"],
    ],
    ids=["clevertap", "salesforce", "proxy"],
)
def test_sandbox_commands_listen_on_localhost_only(
    args: list[str], tmp_path: Path
) -> None:
    from sandbox.server import free_port  # noqa: PLC0415 - test-only import

    port = free_port()
    cmd = [sys.executable, "-m", *args, "--port", str(port)]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        addresses: list[Any] = []
        deadline = time.monotonic() + 30
        while not addresses and time.monotonic() < deadline:
            assert proc.poll() is None, "the command exited"
            addresses = _listening(proc.pid)
            time.sleep(0.1)
        assert addresses, "nothing listening"
        assert {a.ip for a in addresses} == {LOCALHOST}, addresses
        assert port in {a.port for a in addresses}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
