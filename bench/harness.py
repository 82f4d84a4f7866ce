"""Process plumbing for the bench: child runs with per-process peak RSS, emulators.

Every measured program runs as its own child process. Its wall time is taken around
the child, and its CPU time and peak RSS come from `os.wait4` on that child alone
(`ru_maxrss` is in KiB on Linux), so other processes (the emulator, the input
generator) never count against it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

import psutil
import requests

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from pathlib import Path

PYTHON = sys.executable
LOCALHOST = "127.0.0.1"
# seconds an emulator gets to answer (one holding a large org loads it first)
START_TIMEOUT = 120.0


class NotAvailableError(Exception):
    """A measurement cannot run yet: its plugin or emulator feature is missing."""


class RunFailedError(Exception):
    """A measured child process failed."""


@dataclasses.dataclass(frozen=True)
class ChildRun:
    """The cost of one child process."""

    wall: float
    cpu: float
    max_rss_kib: int
    returncode: int


def child_env() -> dict[str, str]:
    """The environment for plugins under test.

    Settings never leak in from the shell (`TARGET_*`/`TAP_*`), no proxy is used for
    127.0.0.1, and no CA bundle override applies (the emulators serve plain HTTP).

    Returns:
        A copy of os.environ with those variables removed.
    """
    drop_prefix = ("TARGET_", "TAP_")
    drop = {"HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY"}
    drop |= {"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(drop_prefix) and k not in drop
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])[-400:]


def run_child(  # noqa: PLR0913 - a process launcher takes several independent options
    cmd: Sequence[str],
    *,
    log: Path,
    stdin_path: Path | None = None,
    feeder: Sequence[str] | None = None,
    stdout_path: Path | None = None,
    timeout: float = 1800.0,
    env: Mapping[str, str] | None = None,
) -> ChildRun:
    """Run one measured child and return its wall time, CPU time and peak RSS.

    Args:
        cmd: the command line.
        log: file that receives the child's stderr.
        stdin_path: a file to feed on stdin.
        feeder: instead of a file, a command whose stdout is piped into the child
            (not measured; used to stream generated input without a file).
        stdout_path: where the child's stdout goes (default: discarded).
        timeout: seconds before the child is killed.
        env: variables added to `child_env()` for the child (not the feeder).

    Returns:
        The measurements.

    Raises:
        RunFailedError: on a non-zero exit or a timeout; the message carries the
            last lines of stderr.
    """
    child = {**child_env(), **(env or {})}
    feeder_proc: subprocess.Popen[bytes] | None = None
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(log.open("wb"))
        out: IO[bytes] | int = subprocess.DEVNULL
        if stdout_path is not None:
            out = stack.enter_context(stdout_path.open("wb"))
        stdin: IO[bytes] | int = subprocess.DEVNULL
        if stdin_path is not None:
            stdin = stack.enter_context(stdin_path.open("rb"))
        elif feeder is not None:
            feeder_proc = subprocess.Popen(
                feeder, stdout=subprocess.PIPE, stderr=err, env=child_env()
            )
            assert feeder_proc.stdout is not None  # noqa: S101 - set by stdout=PIPE
            stdin = feeder_proc.stdout
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=out, stderr=err, env=child)
        if feeder_proc is not None and feeder_proc.stdout is not None:
            feeder_proc.stdout.close()  # the child holds the read end now
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        feeder_rc = feeder_proc.wait(timeout=60) if feeder_proc is not None else 0
    run = ChildRun(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss_kib=usage.ru_maxrss,
        returncode=proc.returncode,
    )
    if run.returncode != 0:
        why = _why_failed(run.returncode, wall, wall, timeout)
        so_far = f"CPU {run.cpu:.1f} s, peak RSS {run.max_rss_kib / 1024:.1f} MiB"
        msg = f"{why} ({so_far}): {_tail(log)}"
        raise RunFailedError(msg)
    if feeder_rc != 0:
        msg = f"the input generator failed (exit {feeder_rc})"
        raise RunFailedError(msg)
    return run


@dataclasses.dataclass(frozen=True)
class PipeRun:
    """The cost of `first | second`: the wall time of the whole, each side's own."""

    wall: float
    first: ChildRun
    second: ChildRun


def _reap(proc: subprocess.Popen[bytes], start: float, out: list[ChildRun]) -> None:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.append(
        ChildRun(
            wall=time.perf_counter() - start,
            cpu=usage.ru_utime + usage.ru_stime,
            max_rss_kib=usage.ru_maxrss,
            returncode=proc.returncode,
        )
    )


def run_pipeline(  # noqa: PLR0913 - two commands, each with its log and environment
    first: Sequence[str],
    second: Sequence[str],
    *,
    logs: tuple[Path, Path],
    envs: tuple[Mapping[str, str] | None, Mapping[str, str] | None] = (None, None),
    stdout_path: Path | None = None,
    timeout: float = 1800.0,
) -> PipeRun:
    """Run `first | second` and measure each side with `os.wait4` on its own pid.

    Args:
        first: the producing command (a tap); its stdin is empty.
        second: the consuming command (a target).
        logs: the files that receive each side's stderr.
        envs: variables added to `child_env()` for each side.
        stdout_path: where the second side's stdout goes (default: discarded).
        timeout: seconds before both are killed.

    Returns:
        The wall time from the start until both ended, and each side's cost.

    Raises:
        RunFailedError: when either side exits non-zero (the message names it and
            carries the last lines of its stderr).
    """
    with contextlib.ExitStack() as stack:
        err_a = stack.enter_context(logs[0].open("wb"))
        err_b = stack.enter_context(logs[1].open("wb"))
        out: IO[bytes] | int = subprocess.DEVNULL
        if stdout_path is not None:
            out = stack.enter_context(stdout_path.open("wb"))
        start = time.perf_counter()
        proc_a = subprocess.Popen(
            first,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err_a,
            env={**child_env(), **(envs[0] or {})},
        )
        assert proc_a.stdout is not None  # noqa: S101 - set by stdout=PIPE
        proc_b = subprocess.Popen(
            second,
            stdin=proc_a.stdout,
            stdout=out,
            stderr=err_b,
            env={**child_env(), **(envs[1] or {})},
        )
        proc_a.stdout.close()  # the second side holds the read end now
        runs: tuple[list[ChildRun], list[ChildRun]] = ([], [])
        threads = [
            threading.Thread(target=_reap, args=(proc, start, into))
            for proc, into in ((proc_a, runs[0]), (proc_b, runs[1]))
        ]
        for thread in threads:
            thread.start()

        def kill() -> None:
            for proc in (proc_a, proc_b):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            for thread in threads:
                thread.join()
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    result = PipeRun(wall=wall, first=runs[0][0], second=runs[1][0])
    for name, run, log in (
        ("the first side (the tap)", result.first, logs[0]),
        ("the second side (the target)", result.second, logs[1]),
    ):
        if run.returncode != 0:
            why = _why_failed(run.returncode, run.wall, wall, timeout)
            msg = f"{name}: {why}: {_tail(log)}"
            raise RunFailedError(msg)
    return result


def _why_failed(returncode: int, ran: float, wall: float, timeout: float) -> str:
    """Why a child failed: the timeout (`wall` reached it) or its exit after `ran` s."""
    if wall >= timeout:
        return f"stopped after the {timeout:.0f} s timeout"
    return f"exit {returncode} after {ran:.1f} s"


@contextlib.contextmanager
def proxy(routes: Mapping[str, str], workdir: Path) -> Iterator[str]:
    """Run the sandbox CONNECT proxy (`python -m sandbox.proxy`) as a subprocess.

    Args:
        routes: hostname pattern -> `127.0.0.1:port` of an emulator.
        workdir: where its log goes.

    Yields:
        Its URL, the value for HTTPS_PROXY.

    Raises:
        NotAvailableError: when it does not start.
    """
    port = free_port()
    cmd = [PYTHON, "-m", "sandbox.proxy", "--port", str(port)]
    for pattern, target in routes.items():
        cmd += ["--route", f"{pattern}={target}"]
    log = workdir / f"proxy-{port}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=err, env=child_env())
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                msg = f"the CONNECT proxy exited: {_tail(log, 1)}"
                raise NotAvailableError(msg)
            with contextlib.suppress(OSError):
                socket.create_connection((LOCALHOST, port), timeout=1).close()
                break
            if time.monotonic() > deadline:
                msg = "the CONNECT proxy did not listen within 30 s"
                raise NotAvailableError(msg)
            time.sleep(0.1)
        yield f"http://{LOCALHOST}:{port}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def module_available(module: str) -> bool:
    """Whether a module can be imported by the bench's Python.

    Args:
        module: the dotted module name.

    Returns:
        True when it is installed.
    """
    import importlib.util  # noqa: PLC0415 - only needed here

    return importlib.util.find_spec(module) is not None


@functools.cache
def plugin_settings(module: str) -> frozenset[str]:
    """The setting names a plugin's `--about --format=json` lists.

    Args:
        module: the plugin's module, run with `python -m`.

    Returns:
        The names of its settings.

    Raises:
        NotAvailableError: when the plugin is not installed or `--about` fails.
    """
    if not module_available(module):
        msg = f"{module} is not installed"
        raise NotAvailableError(msg)
    proc = subprocess.run(
        [PYTHON, "-m", module, "--about", "--format=json"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        msg = f"{module} --about failed: {proc.stderr.strip()[-200:]}"
        raise NotAvailableError(msg)
    about = json.loads(proc.stdout)
    return frozenset(about.get("settings", {}).get("properties", {}))


def require_settings(module: str, *names: str) -> frozenset[str]:
    """Check that a plugin declares the settings a measurement needs.

    Args:
        module: the plugin's module.
        names: the settings that must exist.

    Returns:
        All the plugin's setting names.

    Raises:
        NotAvailableError: naming the missing settings.
    """
    settings = plugin_settings(module)
    missing = [n for n in names if n not in settings]
    if missing:
        msg = f"{module} has no setting {', '.join(missing)}"
        raise NotAvailableError(msg)
    return settings


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now.

    Returns:
        The port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Emulator:
    """An emulator served by `python -m sandbox ...` in its own process."""

    base_url: str
    process: subprocess.Popen[bytes]
    session: requests.Session
    ca_file: Path | None = None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the emulator process has used so far.

        Returns:
            Seconds.
        """
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def control(self, method: str, path: str, body: object = None) -> Any:  # noqa: ANN401 - decoded JSON of any shape
        """Call the `/_sandbox/` control API.

        Args:
            method: HTTP method.
            path: the path under the base URL.
            body: JSON body, if any.

        Returns:
            The decoded JSON reply.

        Raises:
            NotAvailableError: when the emulator does not offer that control.
        """
        if body is None and method == "POST":
            body = {}
        resp = self.session.request(
            method, self.base_url + path, json=body, timeout=120
        )
        if resp.status_code in {404, 405, 422} or (
            resp.status_code == 400 and path.startswith("/_sandbox/faults")
        ):
            msg = f"emulator has no {method} {path} ({resp.status_code})"
            raise NotAvailableError(msg)
        resp.raise_for_status()
        return resp.json() if resp.content else None


@contextlib.contextmanager
def emulator(  # noqa: PLR0913 - each option is needed by one measurement
    kind: str,
    workdir: Path,
    *extra: str,
    ready_path: str = "/",
    tls: bool = False,
    instance_url: str | None = None,
    db: Path | None = None,
) -> Iterator[Emulator]:
    """Start `python -m sandbox <kind>` as a subprocess and stop it afterwards.

    Args:
        kind: clevertap or salesforce.
        workdir: where its database and log go.
        extra: more command-line arguments.
        ready_path: a path that answers (any HTTP status) once the server is up.
        tls: serve HTTPS with the sandbox test CA (`Emulator.ca_file` trusts it).
        instance_url: what the Salesforce emulator hands out as instance_url
            (default: its own base URL).
        db: the SQLite file to serve (default: a new one); removed afterwards.

    Yields:
        The running emulator.

    Raises:
        NotAvailableError: when the emulator cannot start.
    """
    if not module_available(f"sandbox.{kind}"):
        msg = f"sandbox.{kind} is not installed"
        raise NotAvailableError(msg)
    port = free_port()
    base = f"{'https' if tls else 'http'}://{LOCALHOST}:{port}"
    ca_file = None
    if tls:
        from sandbox.tls import ensure_tls_files  # noqa: PLC0415 - only for TLS runs

        # the emulator reads ./.sandbox/tls relative to its cwd (the workdir)
        ca_file = ensure_tls_files(workdir / ".sandbox" / "tls").ca_cert
        extra = (*extra, "--tls")
    db = db or workdir / f"{kind}-{port}.db"
    cmd = [PYTHON, "-m", "sandbox", kind, "--port", str(port), "--db", str(db)]
    env = child_env()
    # the Salesforce emulator hands this out as instance_url from its token endpoint
    env["SANDBOX_SALESFORCE_INSTANCE_URL"] = instance_url or base
    try:
        with serving(
            [*cmd, *extra],
            base,
            workdir / f"{kind}-{port}.log",
            name=f"`python -m sandbox {kind}`",
            ready_path=ready_path,
            env=env,
            ca_file=ca_file,
        ) as served:
            yield served
    finally:
        for path in (
            db,
            db.with_name(db.name + "-wal"),
            db.with_name(db.name + "-shm"),
        ):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def serving(  # noqa: PLR0913 - what a server process needs
    cmd: list[str],
    base: str,
    log: Path,
    *,
    name: str,
    ready_path: str = "/",
    env: dict[str, str] | None = None,
    ca_file: Path | None = None,
) -> Iterator[Emulator]:
    """Start a server process (cwd: the log's folder); stop it afterwards.

    Args:
        cmd: the command line.
        base: the base URL it serves.
        log: where its output goes.
        name: how errors name it.
        ready_path: a path that answers (any HTTP status) once the server is up.
        env: its environment (default: `child_env()`).
        ca_file: the CA that signs its certificate (HTTPS).

    Yields:
        The running server.

    Raises:
        NotAvailableError: when it cannot start.
    """
    with log.open("wb") as err:
        # cwd: the emulators keep key material under ./.sandbox; keep it there
        proc = subprocess.Popen(
            cmd, stdout=err, stderr=err, env=env or child_env(), cwd=log.parent
        )
    session = requests.Session()
    session.trust_env = False
    if ca_file is not None:
        session.verify = str(ca_file)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                msg = f"{name} exited: {_tail(log, 1)}"
                raise NotAvailableError(msg)
            with contextlib.suppress(requests.ConnectionError):
                session.get(base + ready_path, timeout=5)
                break
            if time.monotonic() > deadline:
                msg = f"{name} did not answer within {START_TIMEOUT:.0f} s"
                raise NotAvailableError(msg)
            time.sleep(0.1)
        yield Emulator(base_url=base, process=proc, session=session, ca_file=ca_file)
    finally:
        session.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def fresh_dir(path: Path) -> Path:
    """Empty a scratch directory (create it if needed).

    Args:
        path: the directory.

    Returns:
        The same path.
    """
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_json(path: Path, data: object) -> Path:
    """Write a config or catalog file readable only by the owner.

    Args:
        path: the file.
        data: the JSON-serialisable content.

    Returns:
        The same path.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return path


def count_lines(path: Path, needle: bytes | None = None) -> int:
    """Count lines of a file, or the lines containing `needle`.

    Args:
        path: the file (a missing file counts 0).
        needle: optional substring.

    Returns:
        The count.
    """
    if not path.exists():
        return 0
    total = 0
    with path.open("rb") as handle:
        for line in handle:
            if needle is None or needle in line:
                total += 1
    return total
