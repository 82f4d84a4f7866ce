"""`python -m sandbox up|down|status|demo`: the background sandbox and the demo.

`up` starts the CleverTap emulator, the Salesforce emulator and the CONNECT proxy
as detached processes, each with a pid file and a log under `.sandbox/` (relative
to the current directory, normally the repository root), waits until each one
answers, and writes `.sandbox/env` with the three variables a client needs
(HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE). `down` stops them, `status` reports.
Ports come from SANDBOX_CLEVERTAP_PORT, SANDBOX_SALESFORCE_PORT and
SANDBOX_PROXY_PORT (defaults 8901, 8902, 8903). Everything binds 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import requests

from sandbox.tls import TLSFiles, ensure_tls_files

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

LOCALHOST = "127.0.0.1"
STATE_DIR = ".sandbox"
NO_PROXY = "127.0.0.1,localhost"
DEFAULT_PORTS = {"clevertap": 8901, "salesforce": 8902, "proxy": 8903}
PORT_ENV = {
    "clevertap": "SANDBOX_CLEVERTAP_PORT",
    "salesforce": "SANDBOX_SALESFORCE_PORT",
    "proxy": "SANDBOX_PROXY_PORT",
}
SERVICE_NAMES = ("clevertap", "salesforce", "proxy")
START_TIMEOUT_ENV = "SANDBOX_START_TIMEOUT"
# Exit code of `status` when something is not running (as LSB init scripts do).
EXIT_NOT_RUNNING = 3
MAX_PORT = 65535
# Variables kept away from the emulators and the proxy: they never need a proxy.
PROXY_ENV = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)
_POLL = 0.1
_LOG_TAIL_LINES = 20


class SandboxError(Exception):
    """A sandbox service could not be started or stopped."""


@dataclasses.dataclass(frozen=True)
class Service:
    """One background process of the sandbox."""

    name: str
    port: int
    argv: tuple[str, ...]
    kind: Literal["emulator", "proxy"]


def ports_from_env(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """The service ports: SANDBOX_*_PORT variables, else the defaults.

    Args:
        env: the environment to read (default: `os.environ`).

    Returns:
        Service name -> port.

    Raises:
        SandboxError: a port variable is not a valid port number.
    """
    source = os.environ if env is None else env
    ports = {}
    for name, default in DEFAULT_PORTS.items():
        text = source.get(PORT_ENV[name], "").strip()
        if not text:
            ports[name] = default
            continue
        if not text.isdigit() or not 0 < int(text) <= MAX_PORT:
            msg = f"{PORT_ENV[name]}={text!r} is not a TCP port number"
            raise SandboxError(msg)
        ports[name] = int(text)
    return ports


def proxy_routes(ports: Mapping[str, int]) -> dict[str, tuple[str, int]]:
    """Hostname patterns of the real APIs -> the emulator that answers for them."""
    clevertap = (LOCALHOST, ports["clevertap"])
    salesforce = (LOCALHOST, ports["salesforce"])
    return {
        "login.salesforce.com": salesforce,
        "test.salesforce.com": salesforce,
        "*.my.salesforce.com": salesforce,
        "api.clevertap.com": clevertap,
        "*.api.clevertap.com": clevertap,
    }


class Sandbox:
    """The background sandbox rooted at `<root>/.sandbox`."""

    def __init__(  # noqa: PLR0913 - every knob is needed by tests or the CLI
        self,
        root: Path,
        ports: Mapping[str, int],
        *,
        commands: Mapping[str, Sequence[str]] | None = None,
        start_timeout: float = 90.0,
        stop_timeout: float = 10.0,
        out: IO[str] | None = None,
    ) -> None:
        """Describe the sandbox; nothing starts until `up()`.

        Args:
            root: the directory holding `.sandbox/` (normally the repository root).
            ports: service name -> port.
            commands: replacement argv per service name (tests use fake services).
            start_timeout: seconds each service gets to answer after starting.
            stop_timeout: seconds between SIGTERM and SIGKILL.
            out: where to write progress (default: stdout).
        """
        self.root = root.resolve()
        self.state_dir = self.root / STATE_DIR
        self.ports = dict(ports)
        self._commands = dict(commands or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._out = out if out is not None else sys.stdout

    # -- layout -------------------------------------------------------------

    @property
    def tls_dir(self) -> Path:
        """Where the test CA, server certificate and CA bundle live."""
        return self.state_dir / "tls"

    @property
    def env_file(self) -> Path:
        """The file with the client variables, written by `up`."""
        return self.state_dir / "env"

    def pid_file(self, name: str) -> Path:
        """The pid file of a service."""
        return self.state_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        """The log file of a service."""
        return self.state_dir / f"{name}.log"

    def _port_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.port"

    def services(self) -> list[Service]:
        """The services in start order: both emulators, then the proxy."""
        py = sys.executable
        ct, sf, px = (self.ports[name] for name in SERVICE_NAMES)
        default = {
            "clevertap": [
                *(py, "-m", "sandbox", "clevertap", "--tls", "--port", str(ct)),
                *("--db", str(self.state_dir / "clevertap.db"), "--seed"),
            ],
            "salesforce": [
                *(py, "-m", "sandbox", "salesforce", "--tls", "--port", str(sf)),
                *("--db", str(self.state_dir / "salesforce.db")),
            ],
            "proxy": [py, "-m", "sandbox.proxy", "--port", str(px)]
            + [
                f"--route={pattern}={host}:{port}"
                for pattern, (host, port) in proxy_routes(self.ports).items()
            ],
        }
        return [
            Service(
                name=name,
                port=self.ports[name],
                argv=tuple(self._commands.get(name, default[name])),
                kind="proxy" if name == "proxy" else "emulator",
            )
            for name in SERVICE_NAMES
        ]

    def client_env(self) -> dict[str, str]:
        """The variables that send a client through the sandbox."""
        return {
            "HTTPS_PROXY": f"http://{LOCALHOST}:{self.ports['proxy']}",
            "NO_PROXY": NO_PROXY,
            "REQUESTS_CA_BUNDLE": str(self.tls_dir / "bundle.pem"),
        }

    # -- commands -----------------------------------------------------------

    def up(self) -> int:
        """Start every service that is not running and wait until each answers.

        Returns:
            0 when all services answer, 1 otherwise (what this call started is
            stopped again).
        """
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tls = ensure_tls_files(self.tls_dir)
        started: list[Service] = []
        try:
            for service in self.services():
                if self._running_pid(service.name) is not None:
                    self._say(f"{service.name}: already running")
                    self._wait_ready(service, tls, None)
                    continue
                process = self._start(service)
                started.append(service)
                self._wait_ready(service, tls, process)
                log = self._show(self.log_file(service.name))
                self._say(
                    f"{service.name}: running on {LOCALHOST}:{service.port} "
                    f"(pid {process.pid}, log {log})"
                )
        except SandboxError as exc:
            self._say(f"error: {exc}")
            for service in reversed(started):
                self._stop(service.name)
            return 1
        self._write_env_file()
        self._say(
            f"sandbox is up; client settings in {self._show(self.env_file)} "
            f"(load with: set -a; . {self._show(self.env_file)}; set +a)"
        )
        return 0

    def down(self) -> int:
        """Stop every service (SIGTERM, then SIGKILL after the stop timeout).

        Returns:
            0 when every service is stopped, 1 if one could not be stopped.
        """
        code = 0
        for service in reversed(self.services()):
            try:
                self._stop(service.name)
            except SandboxError as exc:
                self._say(f"error: {exc}")
                code = 1
        if code == 0:
            self.env_file.unlink(missing_ok=True)
        return code

    def status(self) -> int:
        """Report each service: running or stopped, pid, port, log.

        Returns:
            0 when every service runs, 3 otherwise.
        """
        all_running = True
        for service in self.services():
            pid = self._running_pid(service.name)
            port = self._recorded_port(service.name) or service.port
            if pid is None:
                all_running = False
                self._say(f"{service.name:<10} stopped  port {port}")
            else:
                log = self._show(self.log_file(service.name))
                self._say(
                    f"{service.name:<10} running  pid {pid}  port {port}  log {log}"
                )
        return 0 if all_running else EXIT_NOT_RUNNING

    # -- process management -------------------------------------------------

    def _start(self, service: Service) -> subprocess.Popen[bytes]:
        if _port_answers(service.port):
            msg = (
                f"{service.name}: port {service.port} on {LOCALHOST} is already in "
                f"use by another process; set {PORT_ENV[service.name]} to a free port"
            )
            raise SandboxError(msg)
        env = {k: v for k, v in os.environ.items() if k not in PROXY_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        log_path = self.log_file(service.name)
        with log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start\n".encode())
            log.flush()
            process = subprocess.Popen(  # noqa: S603 - argv is built here, no shell
                service.argv,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file(service.name).write_text(f"{process.pid}\n")
        self._port_file(service.name).write_text(f"{service.port}\n")
        return process

    def _wait_ready(
        self,
        service: Service,
        tls: TLSFiles,
        process: subprocess.Popen[bytes] | None,
    ) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            if process is not None and process.poll() is not None:
                msg = (
                    f"{service.name} exited with code {process.returncode} while "
                    f"starting; see {self._show(self.log_file(service.name))}"
                    f"{self._log_tail(service.name)}"
                )
                raise SandboxError(msg)
            if _answers(service, tls):
                return
            if time.monotonic() > deadline:
                msg = (
                    f"{service.name} did not answer on {LOCALHOST}:{service.port} "
                    f"within {self.start_timeout:g} s; see "
                    f"{self._show(self.log_file(service.name))}"
                    f"{self._log_tail(service.name)}"
                )
                raise SandboxError(msg)
            time.sleep(_POLL)

    def _stop(self, name: str) -> None:
        pid_file = self.pid_file(name)
        pid = self._running_pid(name)
        if pid is None:
            if pid_file.exists():
                self._say(f"{name}: not running (stale pid file removed)")
            else:
                self._say(f"{name}: not running")
            pid_file.unlink(missing_ok=True)
            self._port_file(name).unlink(missing_ok=True)
            return
        _signal(pid, signal.SIGTERM)
        if not _wait_gone(pid, self.stop_timeout):
            self._say(f"{name}: no exit {self.stop_timeout:g} s after SIGTERM; SIGKILL")
            _signal(pid, signal.SIGKILL)
            if not _wait_gone(pid, 5.0):
                msg = f"{name} (pid {pid}) survived SIGKILL"
                raise SandboxError(msg)
        pid_file.unlink(missing_ok=True)
        self._port_file(name).unlink(missing_ok=True)
        self._say(f"{name}: stopped (pid {pid})")

    def _running_pid(self, name: str) -> int | None:
        try:
            text = self.pid_file(name).read_text().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            return None
        pid = int(text)
        return pid if _alive(pid) and _looks_like_ours(pid) else None

    def _recorded_port(self, name: str) -> int | None:
        try:
            text = self._port_file(name).read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    # -- output -------------------------------------------------------------

    def _write_env_file(self) -> None:
        lines = "".join(f"{k}={v}\n" for k, v in self.client_env().items())
        self.env_file.write_text(lines)

    def _log_tail(self, name: str) -> str:
        try:
            lines = self.log_file(name).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        tail = lines[-_LOG_TAIL_LINES:]
        return "\n  | " + "\n  | ".join(tail) if tail else ""

    def _show(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    def _say(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()


def _answers(service: Service, tls: TLSFiles) -> bool:
    """Whether the service answers HTTPS (through the proxy, for the proxy)."""
    session = requests.Session()
    session.trust_env = False
    try:
        if service.kind == "proxy":
            proxy = f"http://{LOCALHOST}:{service.port}"
            session.proxies = {"https": proxy}
            session.get("https://api.clevertap.com/", verify=str(tls.bundle), timeout=2)
            session.get(
                "https://login.salesforce.com/", verify=str(tls.bundle), timeout=2
            )
        else:
            session.get(
                f"https://{LOCALHOST}:{service.port}/",
                verify=str(tls.ca_cert),
                timeout=2,
            )
    except requests.RequestException:
        return False
    finally:
        session.close()
    return True


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=1):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (reaping it first if it is our own child)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: the usual case after `up` has exited
    else:
        if reaped == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _looks_like_ours(pid: int) -> bool:
    """Guard against a recycled pid: on Linux, check the command line."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        text = cmdline.read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return b"python" in text.lower() or b"sandbox" in text


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        try:
            same_group = os.getpgid(pid) == pid
        except ProcessLookupError:
            return
        if same_group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL)
    return True


def _start_timeout() -> float:
    text = os.environ.get(START_TIMEOUT_ENV, "").strip()
    try:
        return float(text) if text else 90.0
    except ValueError:
        return 90.0


def run_command(
    command: str,
    *,
    root: Path | None = None,
    commands: Mapping[str, Sequence[str]] | None = None,
    out: IO[str] | None = None,
) -> int:
    """Run a control command.

    Args:
        command: one of up, down, status, demo.
        root: the directory holding `.sandbox/` (default: the current directory).
        commands: replacement argv per service name (tests).
        out: where to write progress (default: stdout).

    Returns:
        The exit code.
    """
    stream = out if out is not None else sys.stdout
    try:
        sandbox = Sandbox(
            root or Path.cwd(),
            ports_from_env(),
            commands=commands,
            start_timeout=_start_timeout(),
            out=stream,
        )
    except SandboxError as exc:
        stream.write(f"error: {exc}\n")
        return 2
    if command == "up":
        return sandbox.up()
    if command == "down":
        return sandbox.down()
    if command == "status":
        return sandbox.status()
    if command == "demo":
        from sandbox.demo import run_demo  # noqa: PLC0415 - avoids an import cycle

        return run_demo(root, stream)
    stream.write(f"`python -m sandbox {command}` is not built yet\n")
    return 2
