"""`python -m sandbox up|down|status` with fake emulators and the real proxy."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from sandbox.control import (
    DEFAULT_PORTS,
    Sandbox,
    SandboxError,
    ports_from_env,
    run_command,
)
from sandbox.server import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

FAKE = str(Path(__file__).with_name("fake_service.py"))


class Env:
    """A scratch repository root with free ports and fake emulator commands."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = {name: free_port() for name in DEFAULT_PORTS}
        self.state = root / ".sandbox"

    def fake(self, name: str, *flags: str) -> list[str]:
        tls = self.state / "tls"
        return [
            sys.executable,
            FAKE,
            name,
            str(self.ports[name]),
            str(tls / "server-chain.pem"),
            str(tls / "server-key.pem"),
            *flags,
        ]

    def commands(self, **flags: tuple[str, ...]) -> dict[str, list[str]]:
        return {
            name: self.fake(name, *flags.get(name, ()))
            for name in ("clevertap", "salesforce")
        }

    def pid(self, name: str) -> int:
        return int((self.state / f"{name}.pid").read_text())

    def sandbox(
        self,
        out: io.StringIO,
        commands: dict[str, list[str]] | None = None,
        *,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> Sandbox:
        return Sandbox(
            self.root,
            self.ports,
            commands=commands or self.commands(),
            out=out,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
        )


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.chdir(tmp_path)
    scratch = Env(tmp_path)
    for name, variable in (
        ("clevertap", "SANDBOX_CLEVERTAP_PORT"),
        ("salesforce", "SANDBOX_SALESFORCE_PORT"),
        ("proxy", "SANDBOX_PROXY_PORT"),
    ):
        monkeypatch.setenv(variable, str(scratch.ports[name]))
    monkeypatch.setenv("SANDBOX_START_TIMEOUT", "20")
    yield scratch
    for pid_file in scratch.state.glob("*.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def test_up_starts_services_and_writes_env_file_and_bundle(env: Env) -> None:
    out = io.StringIO()
    assert run_command("up", commands=env.commands(), out=out) == 0, out.getvalue()

    for name in DEFAULT_PORTS:
        assert _alive(env.pid(name))
        assert (env.state / f"{name}.log").exists()
    lines = (env.state / "env").read_text().splitlines()
    bundle = env.state / "tls" / "bundle.pem"
    assert lines == [
        f"HTTPS_PROXY=http://127.0.0.1:{env.ports['proxy']}",
        "NO_PROXY=127.0.0.1,localhost",
        f"REQUESTS_CA_BUNDLE={bundle}",
    ]
    ca = (env.state / "tls" / "ca.pem").read_text()
    assert bundle.read_text().endswith(ca)
    assert run_command("down", out=out) == 0


def test_clients_with_env_file_reach_fake_emulators_on_real_hostnames(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    assert run_command("up", commands=env.commands(), out=out) == 0, out.getvalue()
    for line in (env.state / "env").read_text().splitlines():
        key, _, value = line.partition("=")
        monkeypatch.setenv(key, value)

    clevertap = requests.get("https://eu1.api.clevertap.com/1/upload", timeout=10)
    salesforce = requests.get("https://acme.my.salesforce.com/x", timeout=10)

    assert clevertap.json() == {"service": "clevertap", "path": "/1/upload"}
    assert salesforce.json() == {"service": "salesforce", "path": "/x"}
    with pytest.raises(requests.exceptions.ProxyError):
        requests.get("https://pypi.org/simple/", timeout=10)
    assert run_command("down", out=out) == 0


def test_status_reports_running_services_with_pid_and_port(env: Env) -> None:
    assert run_command("up", commands=env.commands(), out=io.StringIO()) == 0
    out = io.StringIO()

    code = run_command("status", out=out)

    assert code == 0
    lines = out.getvalue().splitlines()
    for line, name in zip(lines, ("clevertap", "salesforce", "proxy"), strict=True):
        assert line.split()[:2] == [name, "running"]
        assert f"pid {env.pid(name)}" in line
        assert f"port {env.ports[name]}" in line
    run_command("down", out=io.StringIO())


def test_down_stops_every_service_and_removes_pid_files(env: Env) -> None:
    assert run_command("up", commands=env.commands(), out=io.StringIO()) == 0
    pids = [env.pid(name) for name in DEFAULT_PORTS]
    out = io.StringIO()

    assert run_command("down", out=out) == 0

    assert not any(_alive(pid) for pid in pids)
    assert not list(env.state.glob("*.pid"))
    assert not (env.state / "env").exists()
    status = io.StringIO()
    assert run_command("status", out=status) == 3
    assert [line.split()[1] for line in status.getvalue().splitlines()] == [
        "stopped"
    ] * 3


def test_down_kills_a_service_that_ignores_sigterm(env: Env) -> None:
    commands = env.commands(clevertap=("--ignore-sigterm",))
    sandbox = env.sandbox(io.StringIO(), commands=commands, stop_timeout=0.5)
    assert sandbox.up() == 0
    pid = env.pid("clevertap")
    out = io.StringIO()

    assert env.sandbox(out, stop_timeout=0.5).down() == 0

    assert not _alive(pid)
    assert "SIGKILL" in out.getvalue()


def test_up_reports_crashed_service_with_its_log_and_stops_the_others(
    env: Env,
) -> None:
    out = io.StringIO()

    code = run_command("up", commands=env.commands(salesforce=("--fail",)), out=out)

    assert code == 1
    text = out.getvalue()
    assert "salesforce exited with code 1" in text
    assert ".sandbox/salesforce.log" in text
    assert "database is locked" in text
    assert not list(env.state.glob("*.pid"))
    assert not (env.state / "env").exists()


def test_up_gives_up_on_a_silent_service_after_the_timeout(env: Env) -> None:
    out = io.StringIO()
    sandbox = env.sandbox(
        out, commands=env.commands(clevertap=("--silent",)), start_timeout=1.0
    )

    assert sandbox.up() == 1

    assert "clevertap did not answer" in out.getvalue()
    assert ".sandbox/clevertap.log" in out.getvalue()
    assert not list(env.state.glob("*.pid"))


def test_second_up_keeps_running_services(env: Env) -> None:
    assert run_command("up", commands=env.commands(), out=io.StringIO()) == 0
    before = {name: env.pid(name) for name in DEFAULT_PORTS}
    out = io.StringIO()

    assert run_command("up", commands=env.commands(), out=out) == 0

    assert {name: env.pid(name) for name in DEFAULT_PORTS} == before
    assert out.getvalue().count("already running") == 3
    run_command("down", out=io.StringIO())


def test_up_refuses_a_port_held_by_another_process(env: Env) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", env.ports["clevertap"]))
        holder.listen()
        out = io.StringIO()

        code = run_command("up", commands=env.commands(), out=out)

    assert code == 1
    assert "SANDBOX_CLEVERTAP_PORT" in out.getvalue()


def test_down_removes_a_stale_pid_file(env: Env) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    env.state.mkdir()
    (env.state / "proxy.pid").write_text(f"{dead.pid}\n")
    out = io.StringIO()

    assert run_command("down", out=out) == 0

    assert "proxy: not running (stale pid file removed)" in out.getvalue()
    assert not (env.state / "proxy.pid").exists()


def test_ports_come_from_env_vars_with_defaults() -> None:
    assert ports_from_env({}) == {"clevertap": 8901, "salesforce": 8902, "proxy": 8903}
    assert ports_from_env({"SANDBOX_PROXY_PORT": "9999"})["proxy"] == 9999
    with pytest.raises(SandboxError, match="SANDBOX_SALESFORCE_PORT"):
        ports_from_env({"SANDBOX_SALESFORCE_PORT": "http"})


def test_status_command_line_in_an_empty_directory_says_stopped(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "status"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 3
    assert "clevertap  stopped  port" in result.stdout


def test_real_emulators_answer_on_real_hostnames_after_up_then_stop(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cli(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sandbox", command],
            cwd=env.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    up = cli("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        for line in (env.state / "env").read_text().splitlines():
            key, _, value = line.partition("=")
            monkeypatch.setenv(key, value)
        events = requests.get(
            "https://in1.api.clevertap.com/1/events.json",
            headers={
                "X-CleverTap-Account-Id": "SANDBOX-ACCOUNT",
                "X-CleverTap-Passcode": "wrong",
            },
            timeout=30,
        )
        token = requests.post(
            "https://login.salesforce.com/services/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": "not-valid"},
            timeout=30,
        )
    finally:
        down = cli("down")

    assert events.status_code == 401
    assert "Account ID is not valid" in events.text
    assert token.status_code == 400
    assert token.json()["error"]
    assert down.returncode == 0, down.stdout + down.stderr
    assert not list(env.state.glob("*.pid"))
