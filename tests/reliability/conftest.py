"""Reliability rigs: run each plugin's CLI against an emulator, account for records.

Every plugin runs as a subprocess (its own CLI, a real config file, `--input` or
stdin), exactly as Meltano would run it. Every output of every run (stdout, stderr,
rejects, summaries, ledgers) is scanned for the secrets of the run, and the cell's
outcome goes into `docs/reliability.md`, rewritten at the end of the session when
`WRITE_RELIABILITY_REPORT=1` (`make reliability-report`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "reliability"
REPORT = ROOT / "docs" / "reliability.md"
TRACEBACK = "Traceback (most recent call last)"
# `make test` leaves the work tree clean: the report is rewritten only on request
# (`make reliability-report` sets this).
WRITE_REPORT_ENV = "WRITE_RELIABILITY_REPORT"

# Distinctive secrets: any of them in any output of any run fails the test.
CT_PASSCODE = "ctPASS-reliability-9c41e7"
CT_ACCOUNT = "REL-ACCOUNT-1"

_ENV_DROP = (
    "TARGET_SALESFORCE_",
    "TARGET_CLEVERTAP_",
    "TAP_CLEVERTAP_",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a plugin run: no plugin settings, proxies or CA overrides."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_ENV_DROP)}
    env.update(extra)
    return env


# --------------------------------------------------------------------- runs


@dataclasses.dataclass
class CliRun:
    """One finished plugin process."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    files: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every complete JSON line of stdout (a killed run may end mid-line)."""
        lines = self.stdout.split("\n")[:-1]  # the piece after the last newline
        return [json.loads(x) for x in lines if x.strip()]

    @property
    def states(self) -> list[dict[str, Any]]:
        """STATE values on stdout (a target writes bare state objects)."""
        out = []
        for msg in self.messages:
            if msg.get("type") == "STATE":
                out.append(msg["value"])
            elif "type" not in msg:
                out.append(msg)
        return out

    def outputs(self) -> Iterator[tuple[str, str]]:
        """(name, text) of every output of the run."""
        yield "stdout", self.stdout
        yield "stderr", self.stderr
        yield from self.files.items()


def read_outputs(paths: Iterable[Path]) -> dict[str, str]:
    """The text of every existing file (SQLite files as bytes decoded loosely)."""
    out: dict[str, str] = {}
    for path in paths:
        if path.is_dir():
            out.update(read_outputs(p for p in path.rglob("*") if p.is_file()))
        elif path.exists():
            out[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return out


def assert_no_secret(run: CliRun, secrets: Iterable[str]) -> None:
    """No secret value appears in any output of the run."""
    for name, text in run.outputs():
        for secret in secrets:
            if secret and len(secret) >= 6:
                assert secret not in text, f"a secret leaked into {name}"


def run_cli(
    module: str,
    *args: str,
    env: dict[str, str],
    stdin_text: str | None = None,
    timeout: float = 90,
    files: Iterable[Path] = (),
) -> CliRun:
    """Run `python -m <module> <args>` to completion."""
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.run(
        cmd,
        input=stdin_text,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return CliRun(cmd, proc.returncode, proc.stdout, proc.stderr, read_outputs(files))


@dataclasses.dataclass
class KilledRun:
    """A run killed with SIGKILL at a seeded point."""

    run: CliRun
    lines_fed: int
    killed: bool


def run_and_kill(
    module: str,
    *args: str,
    env: dict[str, str],
    lines: list[str],
    kill_when: Callable[[], bool],
    chunk: int,
    timeout: float = 60,
) -> KilledRun:
    """Feed `lines` on stdin a chunk at a time; SIGKILL once `kill_when()` holds."""
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True),  # type: ignore[arg-type]
        threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True),  # type: ignore[arg-type]
    ]
    for thread in readers:
        thread.start()
    fed = 0
    killed = False
    deadline = time.monotonic() + timeout
    with contextlib.suppress(BrokenPipeError, OSError):
        while fed < len(lines) and not kill_when():
            proc.stdin.write("".join(lines[fed : fed + chunk]))
            proc.stdin.flush()
            fed = min(len(lines), fed + chunk)
            pause = time.monotonic() + 0.15
            while time.monotonic() < pause and not kill_when():
                time.sleep(0.01)
    while not kill_when() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        killed = True
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.close()
    proc.wait(timeout=30)
    for thread in readers:
        thread.join(timeout=10)
    run = CliRun(cmd, proc.returncode, "".join(out), "".join(err))
    return KilledRun(run, fed, killed)


# ------------------------------------------------------------- singer input


def singer_lines(messages: Iterable[dict[str, Any]]) -> list[str]:
    """Messages as newline-terminated JSON lines."""
    return [json.dumps(m) + "\n" for m in messages]


def resume_from(
    schema: dict[str, Any],
    records: list[dict[str, Any]],
    states: list[dict[str, Any]],
    every: int,
    stream: str,
) -> list[dict[str, Any]]:
    """What a tap resumed from the last STATE would emit again (bookmark inclusive).

    The input carries `{"bookmarks": {stream: {"n": i}}}` after record i; a rerun
    starts again at record n (taps re-read the bookmark itself).
    """
    start = 0
    if states:
        start = int(states[-1]["bookmarks"][stream]["n"])
    return with_states(schema, records[start:], every, stream, offset=start)


def with_states(
    schema: dict[str, Any],
    records: list[dict[str, Any]],
    every: int,
    stream: str,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """SCHEMA, then the records with a STATE after every `every` of them."""
    out: list[dict[str, Any]] = [schema]
    for i, record in enumerate(records, start=offset):
        out.append({"type": "RECORD", "stream": stream, "record": record})
        if (i + 1) % every == 0:
            bookmark = {"bookmarks": {stream: {"n": i + 1}}}
            out.append({"type": "STATE", "value": bookmark})
    return out


def epoch(text: str) -> int:
    """Epoch seconds of an ISO date-time."""
    return int(dt.datetime.fromisoformat(text).timestamp())


# ------------------------------------------------------------------ the report


@dataclasses.dataclass
class Cell:
    """One row of the fault matrix."""

    plugin: str
    fault: str
    runs: int
    received: int
    accepted: int
    rejected: int
    lost: int
    duplicated: int
    note: str = ""

    def row(self) -> str:
        """The markdown row."""
        return (
            f"| {self.plugin} | {self.fault} | {self.runs} | {self.received} | "
            f"{self.accepted} | {self.rejected} | {self.lost} | {self.duplicated} | "
            f"{self.note} |"
        )


class MatrixReport:
    """Collects cells; `write()` merges them into docs/reliability.md."""

    def __init__(self) -> None:
        """Start empty."""
        self.cells: dict[tuple[str, str], Cell] = {}
        self._lock = threading.Lock()

    def add(self, cell: Cell) -> None:
        """Record a cell (the last result for a plugin and fault wins)."""
        with self._lock:
            self.cells[(cell.plugin, cell.fault)] = cell

    @staticmethod
    def _rows(text: str) -> dict[tuple[str, str], str]:
        rows: dict[tuple[str, str], str] = {}
        for line in text.splitlines():
            parts = [p.strip() for p in line.strip().strip("|").split("|")]
            if len(parts) == 9 and parts[2].isdigit():
                rows[(parts[0], parts[1])] = line
        return rows

    def write(self) -> None:
        """Rewrite the report: this session's cells, earlier rows for the others.

        Read, merge and write happen under an exclusive lock, so pytest-xdist
        workers finishing together keep each other's rows.
        """
        if not self.cells or os.environ.get(WRITE_REPORT_ENV) != "1":
            return
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        with REPORT.open("a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            rows = self._rows(handle.read())
            rows.update({key: cell.row() for key, cell in self.cells.items()})
            order = {"target-clevertap": 0, "target-salesforce": 1, "tap-clevertap": 2}
            ordered = sorted(
                rows.items(), key=lambda kv: (order.get(kv[0][0], 3), kv[0][1])
            )
            body = "\n".join(row for _, row in ordered)
            handle.seek(0)
            handle.truncate()
            handle.write(_REPORT_HEAD + body + "\n" + _REPORT_TAIL)


_REPORT_HEAD = """# Reliability matrix

Generated by `make reliability-report` (the `tests/reliability/` suite, which
`make test` also runs without rewriting this file); do not edit by hand. Each row is
one fault injected into an emulator while the plugin ran as a subprocess from its CLI
with a real config. Where the fault made the run fail, the
fault was cleared and the plugin run again from the last STATE the failed run emitted
(`runs` = 2; a run killed with SIGKILL counts as a failed run).

- **received**: distinct input records (for tap-clevertap: events seeded in the
  emulator in the extracted range).
- **accepted**: records whose data the emulator holds as expected at the end (for
  tap-clevertap: seeded events emitted).
- **rejected**: records not written but written to the rejects file with a code and
  a reason.
- **lost**: received - accepted - rejected (must be 0).
- **duplicated**: extra copies in the emulator: CleverTap events with the same event
  key (identity + name + ts), Salesforce rows with the same external id; for
  tap-clevertap, an event emitted twice within one run.

A `note` starting with `XFAIL` marks a cell that fails because of a known plugin bug
(the test is kept as `xfail(strict=True)` and the bug is reported).

| plugin | fault | runs | received | accepted | rejected | lost | duplicated | note |
|---|---|---|---|---|---|---|---|---|
"""

_REPORT_TAIL = """
Crash and resume rows (`kill -9 after K uploads`) kill the target with SIGKILL once
the emulator's request log shows K upload calls (the input is fed on stdin a few lines
at a time), then run it again on what a tap resumed from the last STATE the killed
run emitted would send (the records from the bookmark on, bookmark included). The
singer-sdk emits a target's STATE only at full drains (end of input, or records older
than 5 minutes), so a target killed mid-input has usually emitted none and the rerun
replays the whole input: the event ledger (CleverTap) and upserts by external id
(Salesforce) are what keep that replay free of duplicates. The tap rows kill
tap-clevertap after K export pages and resume it with `--state` from its last STATE.

Rows of cells that did not run in the latest session are kept from the session
before; a full `make reliability-report` rewrites every row.
"""


@pytest.fixture(scope="session")
def matrix_report() -> Iterator[MatrixReport]:
    """The session's matrix; written to docs/reliability.md at the end."""
    report = MatrixReport()
    yield report
    report.write()


# ----------------------------------------------------------------- rig helpers


def rejects_of(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a rejects file (none when it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]


def summary_from_log(stderr: str, stream: str) -> dict[str, Any] | None:
    """target-clevertap's `Summary for stream X: {...}` log line, parsed."""
    pattern = re.compile(rf"Summary for stream {re.escape(stream)}: (\{{.*\}})")
    found = pattern.findall(stderr)
    return json.loads(found[-1]) if found else None


@dataclasses.dataclass
class Tally:
    """What the emulator holds against what was sent."""

    received: int
    accepted: int
    rejected: int
    duplicated: int
    unsettled: list[str] = dataclasses.field(default_factory=list)

    @property
    def lost(self) -> int:
        """Records neither written as expected nor rejected with a reason."""
        return self.received - self.accepted - self.rejected


def reasoned_reject_keys(rejects: list[dict[str, Any]], stream: str) -> set[str]:
    """Keys of the rejects that name their stream and carry a code and a message."""
    return {
        str(r.get("key"))
        for r in rejects
        if r.get("stream") == stream and r.get("code") and r.get("message")
    }


class TargetRig:
    """Common flow of a target cell: run, maybe rerun from STATE, account, report."""

    plugin = ""
    module = ""
    stream = ""
    every = 10  # a STATE after every 10 records

    def __init__(self, tmp_path: Path, report: MatrixReport) -> None:
        """Private paths under tmp_path."""
        self.tmp_path = tmp_path
        self.report = report
        self.rejects_path = tmp_path / "rejects.jsonl"
        self.runs = 0
        self.tracebacks: list[str] = []

    # overridden per target
    def schema(self) -> dict[str, Any]:
        """The SCHEMA message."""
        raise NotImplementedError

    def make_records(self, n: int, invalid: set[int]) -> list[dict[str, Any]]:
        """N input records; those at `invalid` positions must be rejected."""
        raise NotImplementedError

    def config(self, **extra: Any) -> dict[str, Any]:
        """The plugin config."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The subprocess environment."""
        return clean_env()

    def secrets(self) -> list[str]:
        """Every secret value of this rig."""
        raise NotImplementedError

    def clear_faults(self) -> None:
        """Disarm every fault."""
        raise NotImplementedError

    def tally(self, records: list[dict[str, Any]]) -> Tally:
        """Account for every record against the emulator and the rejects file."""
        raise NotImplementedError

    def output_paths(self) -> list[Path]:
        """Files whose content must hold no secret."""
        return [self.rejects_path]

    def summary(self, run: CliRun) -> dict[str, Any] | None:
        """The run's per-stream summary (received, accepted, rejected, skipped)."""
        raise NotImplementedError

    # shared
    def rejects(self) -> list[dict[str, Any]]:
        """The rejects file's lines so far."""
        return rejects_of(self.rejects_path)

    def write_config(self, config: dict[str, Any]) -> Path:
        """The config as a file, as Meltano passes it."""
        self.runs += 1
        path = self.tmp_path / f"config-{self.runs}.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    def run(
        self,
        config: dict[str, Any],
        messages: list[dict[str, Any]],
        *,
        use_stdin: bool = False,
    ) -> CliRun:
        """Run the target's CLI on the messages; check secrets, note tracebacks."""
        return self.run_text(
            config, "".join(singer_lines(messages)), use_stdin=use_stdin
        )

    def run_text(
        self, config: dict[str, Any], text: str, *, use_stdin: bool = False
    ) -> CliRun:
        """Run the target's CLI on raw input text (`--input` file or stdin)."""
        config_path = self.write_config(config)
        args = ["--config", str(config_path)]
        if use_stdin:
            run = run_cli(
                self.module,
                *args,
                env=self.env(),
                stdin_text=text,
                files=self.output_paths(),
            )
        else:
            input_path = self.tmp_path / f"input-{self.runs}.singer"
            input_path.write_text(text, encoding="utf-8")
            run = run_cli(
                self.module,
                *args,
                "--input",
                str(input_path),
                env=self.env(),
                files=self.output_paths(),
            )
        assert_no_secret(run, self.secrets())
        if TRACEBACK in run.stderr:
            self.tracebacks.append(run.stderr[-3000:])
        return run

    def check_summary(self, run: CliRun) -> None:
        """A finished run accounts for every record it received."""
        summary = self.summary(run)
        assert summary is not None, run.stderr[-2000:]
        skipped = summary.get("skipped", 0)
        skipped_n = sum(skipped.values()) if isinstance(skipped, dict) else skipped
        # not linked (target-salesforce `on_missing_key: not_linked`) is settled
        assert summary["received"] == (
            summary["accepted"]
            + summary["rejected"]
            + skipped_n
            + summary.get("not_linked", 0)
        ), summary

    def check_state_settled(
        self, run: CliRun, records: list[dict[str, Any]], offset: int = 0
    ) -> None:
        """Every record before the last STATE a run emitted is written or rejected."""
        if not run.states:
            return
        upto = int(run.states[-1]["bookmarks"][self.stream]["n"])
        tally = self.tally(records[:upto])
        assert tally.lost == 0, (
            f"STATE covered record {upto} but {tally.lost} records before it were "
            f"neither written nor rejected: {tally.unsettled[:5]} (offset {offset})"
        )

    def cell(
        self,
        fault: str,
        arm: Callable[[], None],
        *,
        n: int = 60,
        invalid: frozenset[int] = frozenset(),
        must_fail: bool = False,
        failure_text: str = "",
        note: str = "",
        expect_rejected: int | None = None,
        **config_extra: Any,
    ) -> Tally:
        """One matrix cell: run with the fault, rerun from STATE if it failed."""
        records = self.make_records(n, set(invalid))
        config = self.config(**config_extra)
        arm()
        first = self.run(
            config, with_states(self.schema(), records, self.every, self.stream)
        )
        runs = 1
        if must_fail:
            assert first.returncode != 0, first.stderr[-2000:]
            assert failure_text in first.stderr, first.stderr[-2000:]
        if first.returncode == 0:
            self.check_summary(first)
        else:
            self.check_state_settled(first, records)
            self.clear_faults()
            resumed = resume_from(
                self.schema(), records, first.states, self.every, self.stream
            )
            second = self.run(config, resumed)
            runs = 2
            assert second.returncode == 0, second.stderr[-3000:]
            self.check_summary(second)
        tally = self.tally(records)
        self.report.add(
            Cell(
                self.plugin,
                fault,
                runs,
                tally.received,
                tally.accepted,
                tally.rejected,
                tally.lost,
                tally.duplicated,
                note,
            )
        )
        wanted = len(invalid) if expect_rejected is None else expect_rejected
        assert tally.rejected == wanted, tally
        assert tally.lost == 0, tally.unsettled[:10]
        assert tally.duplicated == 0, tally
        return tally

    def upload_count(self) -> int:
        """Write calls the emulator has logged so far."""
        raise NotImplementedError

    def crash_cell(
        self, kill_after: int, *, n: int = 300, label: str = "", **config_extra: Any
    ) -> Tally:
        """SIGKILL the target once K uploads are logged; resume from its last STATE."""
        records = self.make_records(n, set())
        config = self.config(**config_extra)
        messages = with_states(self.schema(), records, self.every, self.stream)
        killed = run_and_kill(
            self.module,
            "--config",
            str(self.write_config(config)),
            env=self.env(),
            lines=singer_lines(messages),
            kill_when=lambda: self.upload_count() >= kill_after,
            chunk=self.every + 1,
        )
        killed.run.files = read_outputs(self.output_paths())
        assert_no_secret(killed.run, self.secrets())
        assert killed.killed, "the target finished before the kill point"
        self.check_state_settled(killed.run, records)
        resumed = resume_from(
            self.schema(), records, killed.run.states, self.every, self.stream
        )
        second = self.run(config, resumed)
        assert second.returncode == 0, second.stderr[-3000:]
        self.check_summary(second)
        tally = self.tally(records)
        bookmark = (
            killed.run.states[-1]["bookmarks"][self.stream]["n"]
            if killed.run.states
            else 0
        )
        self.report.add(
            Cell(
                self.plugin,
                f"kill -9 after {kill_after} uploads{label}",
                2,
                tally.received,
                tally.accepted,
                tally.rejected,
                tally.lost,
                tally.duplicated,
                (
                    f"{killed.lines_fed} lines fed; resumed at record {bookmark}"
                    if killed.run.states
                    else f"{killed.lines_fed} lines fed; no STATE yet, full replay"
                ),
            )
        )
        assert tally.rejected == 0, tally
        assert tally.lost == 0, tally.unsettled[:10]
        assert tally.duplicated == 0, tally
        return tally


class SalesforceRig(TargetRig):
    """target-salesforce against the Salesforce emulator (refresh-token login)."""

    plugin = "target-salesforce"
    module = "target_salesforce"
    stream = "nps"

    def __init__(
        self, handle: Any, proxy_url: str, tmp_path: Path, report: MatrixReport
    ) -> None:
        """The emulator handle and the CONNECT proxy for the login host."""
        super().__init__(tmp_path, report)
        self.handle = handle
        self.proxy_url = proxy_url
        self.summary_path = tmp_path / "summary.json"
        self.prefix = f"rel-{tmp_path.name[-12:]}"

    def schema(self) -> dict[str, Any]:
        """Shaped like tap-clevertap output mapped to NPS answers."""
        nullable = {"type": ["string", "null"]}
        return {
            "type": "SCHEMA",
            "stream": self.stream,
            "schema": {
                "type": "object",
                "properties": {
                    "identity": {"type": "string"},
                    "name": nullable,
                    "email": nullable,
                    "score": {"type": ["number", "null"]},
                },
            },
            "key_properties": ["identity"],
        }

    def make_records(self, n: int, invalid: set[int]) -> list[dict[str, Any]]:
        """Scores outside 0..10 break the org's validation rule (rejected)."""
        return [
            {
                "identity": f"{self.prefix}-{i:04d}",
                "name": f"Reliability {i}",
                "email": f"rel{i}@example.com",
                "score": 15 if i in invalid else i % 11,
            }
            for i in range(n)
        ]

    def config(self, *, action: str = "upsert", **extra: Any) -> dict[str, Any]:
        """Refresh-token login through the proxy; short retries and polls."""
        config: dict[str, Any] = {
            "auth_flow": "refresh_token",
            "client_id": self.handle.client_id,
            "client_secret": self.handle.client_secret,
            "refresh_token": self.handle.refresh_token,
            "rejects_path": str(self.rejects_path),
            "summary_path": str(self.summary_path),
            "insert_journal_path": str(self.tmp_path / "insert-journal.sqlite3"),
            "retry_backoff_seconds": 0.01,
            "bulk_poll_interval": 0.01,
            "request_timeout": 10,
            "batch_size_rows": 20,
            "streams": {
                self.stream: {
                    "object": "Contact",
                    "action": action,
                    **(
                        {"external_id_field": "CleverTap_Id__c"}
                        if action == "upsert"
                        else {}
                    ),
                    "fields": {
                        "CleverTap_Id__c": "identity",
                        "LastName": "name",
                        "Email": "email",
                        "NPS_Score__c": "score",
                    },
                }
            },
        }
        config.update(extra)
        return config

    def env(self) -> dict[str, str]:
        """Login host through the proxy; the instance (127.0.0.1) directly."""
        return clean_env(
            HTTPS_PROXY=self.proxy_url,
            NO_PROXY="127.0.0.1,localhost",
            REQUESTS_CA_BUNDLE=self.handle.ca_bundle,
        )

    def secrets(self) -> list[str]:
        """The connected app secret, the refresh token and every issued token."""
        handle = self.handle
        tokens = list(handle.emulator.auth._tokens)
        return [
            handle.client_secret,
            handle.refresh_token,
            handle.password,
            handle.access_token,
            *tokens,
        ]

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self.handle.clear_faults()

    def upload_count(self) -> int:
        """Collections and Bulk calls logged by the emulator."""
        return sum(
            1
            for r in self.handle.requests_log()
            if "composite/sobjects" in str(r.get("path"))
            or str(r.get("path", "")).endswith("/batches")
        )

    def output_paths(self) -> list[Path]:
        """Rejects and summary."""
        return [self.rejects_path, self.summary_path]

    def summary(self, run: CliRun) -> dict[str, Any] | None:
        """From summary_path (written at the end of a run)."""
        return self.summary_of(run, self.stream)

    def summary_of(self, run: CliRun, stream_name: str) -> dict[str, Any] | None:
        """One stream's counts from summary_path."""
        del run
        if not self.summary_path.exists():
            return None
        data = json.loads(self.summary_path.read_text(encoding="utf-8"))
        for stream in data["streams"]:
            if stream["stream"] == stream_name:
                unmapped = str(stream["target"]).startswith("(unmapped")
                return {
                    "received": stream["received"],
                    "accepted": stream["succeeded"],
                    "rejected": stream["rejected"],
                    "not_linked": stream.get("not_linked", 0),
                    "skipped": stream["received"] if unmapped else 0,
                }
        return None

    def tally(self, records: list[dict[str, Any]]) -> Tally:
        """Contacts by CleverTap_Id__c against the input; rejects by key."""
        rows = [
            r
            for r in self.handle.live_records("Contact")
            if str(r.get("CleverTap_Id__c") or "").startswith(self.prefix)
        ]
        counts = Counter(str(r["CleverTap_Id__c"]) for r in rows)
        by_key = {str(r["CleverTap_Id__c"]): r for r in rows}
        rejected_keys = reasoned_reject_keys(rejects_of(self.rejects_path), self.stream)
        accepted = rejected = 0
        unsettled = []
        for record in records:
            key = record["identity"]
            row = by_key.get(key)
            if (
                row is not None
                and row.get("LastName") == record["name"]
                and row.get("NPS_Score__c") is not None
                and float(row["NPS_Score__c"]) == float(record["score"])
            ):
                accepted += 1
            elif key in rejected_keys:
                rejected += 1
            else:
                unsettled.append(key)
        wanted = {r["identity"] for r in records}
        duplicated = sum(c - 1 for k, c in counts.items() if k in wanted)
        return Tally(len(records), accepted, rejected, duplicated, unsettled)


class CleverTapTargetRig(TargetRig):
    """target-clevertap against the CleverTap emulator: a profile and an event each."""

    plugin = "target-clevertap"
    module = "target_clevertap"
    stream = "Contact"
    event_name = "Contact Created"

    def __init__(self, handle: Any, tmp_path: Path, report: MatrixReport) -> None:
        """The emulator handle (distinctive passcode)."""
        super().__init__(tmp_path, report)
        self.handle = handle
        self.state_dir = tmp_path / "state"
        self.with_profile = True

    def schema(self) -> dict[str, Any]:
        """A Contact stream as tap-salesforce writes it (trimmed)."""
        nullable = {"type": ["string", "null"]}
        return {
            "type": "SCHEMA",
            "stream": self.stream,
            "schema": {
                "type": "object",
                "properties": {
                    "Id": {"type": "string"},
                    "FirstName": nullable,
                    "LastName": nullable,
                    "Email": nullable,
                    "CreatedDate": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "key_properties": ["Id"],
        }

    def make_records(self, n: int, invalid: set[int]) -> list[dict[str, Any]]:
        """Invalid positions get an email CleverTap refuses (rejected locally)."""
        return [
            {
                "Id": f"003R{i:08d}",
                "FirstName": f"First{i}",
                "LastName": f"Last{i}",
                "Email": f"not-an-email-{i}" if i in invalid else f"c{i}@example.com",
                "CreatedDate": (
                    dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=i)
                ).strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            }
            for i in range(n)
        ]

    def config(self, *, with_profile: bool = True, **extra: Any) -> dict[str, Any]:
        """Small batches (several uploads and STATEs), short timeouts and retries.

        `with_profile=False` maps each record to its event only.
        """
        self.with_profile = with_profile
        identity = {"template": "SF_Contact_{Id}"}
        stream: dict[str, Any] = {
            "events": [
                {
                    "name": self.event_name,
                    "identity": identity,
                    "time": "CreatedDate",
                    "properties": {"include": ["FirstName"]},
                }
            ]
        }
        if with_profile:
            stream["profile"] = {
                "identity": identity,
                "properties": {"include": ["FirstName", "LastName", "Email"]},
            }
        mapping = {self.stream: stream}
        config: dict[str, Any] = {
            **self.handle.plugin_config(),
            "mappings": mapping,
            "state_dir": str(self.state_dir),
            "rejects_path": str(self.rejects_path),
            "request_timeout": 2,
            "max_retries": 5,
            "batch_size": 10,
            "batch_size_rows": 20,
            "max_concurrency": 4,
            # the emulator shows stored events at once (unless an ingestion_lag
            # fault says otherwise): a short lag allowance keeps cells quick
            "reconcile_lag_seconds": 1,
            "reconcile_checks": 2,
        }
        config.update(extra)
        return config

    def secrets(self) -> list[str]:
        """The passcode."""
        return [self.handle.passcode]

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self.handle.clear_faults()

    def upload_count(self) -> int:
        """`/1/upload` calls logged by the emulator."""
        return sum(1 for r in self.handle.requests_log() if r["path"] == "/1/upload")

    def output_paths(self) -> list[Path]:
        """Rejects and the state directory (identity map, ledger)."""
        return [self.rejects_path, self.state_dir]

    def summary(self, run: CliRun) -> dict[str, Any] | None:
        """From the `Summary for stream` log line."""
        return summary_from_log(run.stderr, self.stream)

    def summary_of(self, run: CliRun, stream: str) -> dict[str, Any] | None:
        """One stream's `Summary for stream` log line."""
        return summary_from_log(run.stderr, stream)

    def tally(self, records: list[dict[str, Any]]) -> Tally:
        """Profiles by identity, events by identity + name + ts and by event key."""
        profiles = {p["identity"]: p for p in self.handle.profiles()}
        events = self.handle.events(evtName=self.event_name)
        by_event = Counter((e["identity"], e["ts"]) for e in events)
        by_key = Counter((e.get("evtData") or {}).get("ct_event_key") for e in events)
        rejected_keys = reasoned_reject_keys(rejects_of(self.rejects_path), self.stream)
        accepted = rejected = 0
        unsettled = []
        wanted = set()
        for record in records:
            identity = f"SF_Contact_{record['Id']}"
            ts = epoch(record["CreatedDate"])
            wanted.add((identity, ts))
            profile = profiles.get(identity)
            data = (profile or {}).get("profileData") or {}
            profile_ok = not self.with_profile or data.get("Email") == record["Email"]
            if profile_ok and by_event[(identity, ts)]:
                accepted += 1
            elif record["Id"] in rejected_keys:
                rejected += 1
            else:
                unsettled.append(record["Id"])
        duplicated = max(
            sum(c - 1 for k, c in by_event.items() if k in wanted),
            sum(c - 1 for k, c in by_key.items() if k),
        )
        return Tally(len(records), accepted, rejected, duplicated, unsettled)


@pytest.fixture
def sf_rig(
    make_salesforce_emulator: Callable[..., Any],
    tmp_path: Path,
    matrix_report: MatrixReport,
) -> Iterator[SalesforceRig]:
    """target-salesforce, the seeded Salesforce emulator and the login proxy."""
    from sandbox.proxy import running_proxy  # noqa: PLC0415 - test-only import

    handle = make_salesforce_emulator()
    address = ("127.0.0.1", handle.port)
    routes = {
        "login.salesforce.com": address,
        "test.salesforce.com": address,
        "*.my.salesforce.com": address,
    }
    with running_proxy(routes) as proxy:
        yield SalesforceRig(handle, proxy.url, tmp_path, matrix_report)


@pytest.fixture
def ct_rig(
    make_clevertap_emulator: Callable[..., Any],
    tmp_path: Path,
    matrix_report: MatrixReport,
) -> CleverTapTargetRig:
    """target-clevertap and a CleverTap emulator with a distinctive passcode."""
    handle = make_clevertap_emulator(account_id=CT_ACCOUNT, passcode=CT_PASSCODE)
    return CleverTapTargetRig(handle, tmp_path, matrix_report)


TAP_EVENTS = ("Charged", "NPS Submitted")
TAP_SEED: dict[str, Any] = {
    "seed": 5,
    "profiles": 12,
    "events_per_day": 30,
    "days": 3,
    "from": 20240110,
    "to": 20240112,
    "event_names": list(TAP_EVENTS),
    "notifications": False,
    "campaigns": 0,
    "messages": 0,
}


class TapRig:
    """tap-clevertap extracting the seeded events of a CleverTap emulator."""

    plugin = "tap-clevertap"
    module = "tap_clevertap"

    def __init__(
        self,
        handle: Any,
        tmp_path: Path,
        report: MatrixReport,
        catalog_cache: dict[str, str],
    ) -> None:
        """Seed the emulator; discover once per session (same seed, same catalog)."""
        self.handle = handle
        self.tmp_path = tmp_path
        self.report = report
        self.runs = 0
        self.tracebacks: list[str] = []
        self.event_names: list[str] = list(TAP_EVENTS)
        handle.seed(**TAP_SEED)
        self.catalog_path = tmp_path / "catalog.json"
        if "catalog" not in catalog_cache:
            catalog_cache["catalog"] = self._discover()
        self.catalog_path.write_text(catalog_cache["catalog"], encoding="utf-8")

    def config(self, **extra: Any) -> dict[str, Any]:
        """Three whole days; pages of 23 so every window walks several cursors."""
        config: dict[str, Any] = {
            **self.handle.plugin_config(),
            "start_date": "2024-01-10T00:00:00Z",
            "end_date": "2024-01-13T00:00:00Z",
            "event_names": list(TAP_EVENTS),
            "timezone": "UTC",
            "lookback_days": 0,
            "window_days": 1,
            "batch_size": 23,
            "request_timeout": 3,
            # same number of attempts as by default, shorter waits between them
            "backoff_base_seconds": 0.05,
            "backoff_max_seconds": 0.5,
        }
        config.update(extra)
        self.event_names = list(config["event_names"])
        return config

    def write_config(self, config: dict[str, Any]) -> Path:
        """The config file of the next run."""
        self.runs += 1
        path = self.tmp_path / f"tap-config-{self.runs}.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    def _discover(self) -> str:
        run = run_cli(
            self.module,
            "--config",
            str(self.write_config(self.config())),
            "--discover",
            env=clean_env(),
        )
        assert run.returncode == 0, run.stderr[-3000:]
        catalog = json.loads(run.stdout)
        for stream in catalog["streams"]:
            selected = stream["tap_stream_id"].startswith("events_")
            for entry in stream["metadata"]:
                if entry["breadcrumb"] == []:
                    entry["metadata"]["selected"] = selected
        return json.dumps(catalog)

    def args(self, config: dict[str, Any], state: dict[str, Any] | None) -> list[str]:
        """CLI arguments of a sync run."""
        args = ["--config", str(self.write_config(config))]
        args += ["--catalog", str(self.catalog_path)]
        if state is not None:
            state_path = self.tmp_path / f"state-{self.runs}.json"
            state_path.write_text(json.dumps(state), encoding="utf-8")
            args += ["--state", str(state_path)]
        return args

    def sync(self, config: dict[str, Any], state: dict[str, Any] | None) -> CliRun:
        """One sync run of the tap's CLI."""
        return self.cli(*self.args(config, state))

    def cli(self, *args: str) -> CliRun:
        """The tap's CLI with these arguments; no secret may show."""
        run = run_cli(self.module, *args, env=clean_env())
        self.check(run)
        return run

    def check(self, run: CliRun) -> None:
        """No secret in any output; remember tracebacks."""
        assert_no_secret(run, [self.handle.passcode])
        if TRACEBACK in run.stderr:
            self.tracebacks.append(run.stderr[-3000:])

    def expected(self) -> Counter[tuple[str, str, int]]:
        """The seeded events: (event name, identity, epoch ts)."""
        out: Counter[tuple[str, str, int]] = Counter()
        for name in self.event_names:
            for event in self.handle.events(evtName=name):
                out[(name, str(event["identity"]), int(event["ts"]))] += 1
        return out

    @staticmethod
    def emitted(run: CliRun, *, upto_last_state: bool) -> Counter[Any]:
        """Emitted event records (up to the last STATE message, if asked)."""
        messages = run.messages
        if upto_last_state:
            last = max(
                (i for i, m in enumerate(messages) if m.get("type") == "STATE"),
                default=-1,
            )
            messages = messages[: last + 1]
        out: Counter[tuple[str, str, int]] = Counter()
        for msg in messages:
            if msg.get("type") == "RECORD" and msg["stream"].startswith("events_"):
                rec = msg["record"]
                out[(rec["event_name"], str(rec["identity"]), epoch(rec["ts"]))] += 1
        return out

    def account(
        self, fault: str, first: CliRun, second: CliRun | None, note: str = ""
    ) -> Tally:
        """Compare emitted with seeded; report the cell; assert the guarantees."""
        expected = self.expected()
        runs = [first] if second is None else [first, second]
        durable = self.emitted(first, upto_last_state=second is not None)
        if second is not None:
            durable += self.emitted(second, upto_last_state=False)
        accepted = sum(min(n, durable[k]) for k, n in expected.items())
        duplicated = 0
        extras: list[Any] = []
        for run in runs:
            got = self.emitted(run, upto_last_state=False)
            duplicated += sum(max(0, n - expected[k]) for k, n in got.items())
            extras += [k for k in got if k not in expected]
        received = sum(expected.values())
        tally = Tally(received, accepted, 0, duplicated)
        self.report.add(
            Cell(
                self.plugin,
                fault,
                len(runs),
                received,
                accepted,
                0,
                tally.lost,
                duplicated,
                note,
            )
        )
        assert received > 0
        assert not extras, extras[:5]
        assert tally.lost == 0, tally
        assert duplicated == 0, tally
        if second is None:
            assert self.emitted(first, upto_last_state=False) == expected
        return tally

    def page_count(self) -> int:
        """Export pages fetched so far (GET /1/events.json?cursor=...)."""
        return sum(
            1
            for r in self.handle.requests_log()
            if r["path"] == "/1/events.json" and r["method"] == "GET"
        )

    def crash_cell(self, kill_after: int) -> Tally:
        """SIGKILL the tap after K export pages, then resume from its last STATE.

        Each export call is slowed by 150 ms so the kill lands mid-run.
        """
        config = self.config()
        self.handle.fault("latency", ms=150, path="/1/events.json")
        killed = run_and_kill(
            self.module,
            *self.args(config, None),
            env=clean_env(),
            lines=[],
            kill_when=lambda: self.page_count() >= kill_after,
            chunk=1,
        )
        self.check(killed.run)
        assert killed.killed, "the tap finished before the kill point"
        self.handle.clear_faults()
        states = killed.run.states
        second = self.sync(config, states[-1] if states else None)
        assert second.returncode == 0, second.stderr[-3000:]
        return self.account(
            f"kill -9 after {kill_after} export pages",
            killed.run,
            second,
            note=f"resumed from {'STATE' if states else 'scratch'}",
        )

    def cell(
        self,
        fault: str,
        arm: Callable[[], None],
        *,
        must_fail: bool = False,
        **config_extra: Any,
    ) -> Tally:
        """Sync with the fault; if the run failed, clear it and resume from STATE."""
        config = self.config(**config_extra)
        arm()
        first = self.sync(config, None)
        second = None
        if must_fail:
            assert first.returncode != 0, first.stderr[-2000:]
        if first.returncode != 0:
            self.handle.clear_faults()
            states = first.states
            second = self.sync(config, states[-1] if states else None)
            assert second.returncode == 0, second.stderr[-3000:]
        return self.account(fault, first, second)


@pytest.fixture(scope="session")
def tap_catalog_cache() -> dict[str, str]:
    """The discovered catalog, shared by every tap test of the session."""
    return {}


@pytest.fixture
def tap_rig(
    make_clevertap_emulator: Callable[..., Any],
    tmp_path: Path,
    matrix_report: MatrixReport,
    tap_catalog_cache: dict[str, str],
) -> TapRig:
    """tap-clevertap and a seeded CleverTap emulator with a distinctive passcode."""
    handle = make_clevertap_emulator(account_id=CT_ACCOUNT, passcode=CT_PASSCODE)
    return TapRig(handle, tmp_path, matrix_report, tap_catalog_cache)


@pytest.fixture
def plugin_cli() -> Callable[..., CliRun]:
    """Run `python -m <module> <args>` in a clean environment."""

    def run(module: str, *args: str) -> CliRun:
        return run_cli(module, *args, env=clean_env())

    return run
