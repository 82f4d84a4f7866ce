"""What every measurement shares: rows, goals, sections, the run context, helpers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import statistics
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import generate
import harness

if TYPE_CHECKING:
    from collections.abc import Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BASELINES = BENCH / "baselines"
IMPORT_PRESET = ROOT / "transforms" / "salesforce_to_clevertap.yml"
CT_ACCOUNT = "SANDBOX-ACCOUNT"
CT_PASSCODE = "SANDBOX-PASSCODE"  # the emulator's default; not a real secret
BENCH_EVENT = "Bench Viewed"
P2_LATENCY_MS = (100, 500)
P2_CONCURRENCY = (1, 15)


@dataclasses.dataclass
class Row:
    """One line of the results table."""

    pid: str
    what: str
    n: int | None = None
    wall: float | None = None
    cpu: float | None = None
    rss_mib: float | None = None
    reps: int = 0
    note: str = ""

    @property
    def rate(self) -> float | None:
        """Records per second, from the median wall time."""
        if self.n is None or not self.wall:
            return None
        return self.n / self.wall


@dataclasses.dataclass
class Goal:
    """A goal of the issue and how the measured value compares."""

    pid: str
    text: str
    value: float | None
    limit: float | None
    at_most: bool = True
    note: str = ""

    @property
    def holds(self) -> bool | None:
        """True when met, False when missed, None when not measured."""
        if self.value is None or self.limit is None:
            return None
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    @property
    def miss(self) -> str:
        """How far the value is from the goal, in words."""
        if self.value is None:
            return "not measured"
        if self.limit is None:
            return "reported"
        if self.holds:
            return "holds"
        if self.at_most:
            return f"misses by {self.value / self.limit:.2f}x (over the limit)"
        return f"misses by {self.limit / self.value:.2f}x (under the minimum)"


@dataclasses.dataclass
class Section:
    """Rows and goals of one measurement."""

    pid: str
    title: str
    rows: list[Row] = dataclasses.field(default_factory=list)
    goals: list[Goal] = dataclasses.field(default_factory=list)

    def unavailable(self, what: str, reason: str) -> None:
        """Add a row saying why a part could not be measured."""
        self.rows.append(Row(self.pid, what, note=f"not available yet: {reason}"))

    def failed(self, what: str, reason: str) -> None:
        """Add a row saying a part ran and failed."""
        self.rows.append(Row(self.pid, what, note=f"failed: {reason}"))


@dataclasses.dataclass
class Context:
    """Sizes and places for one bench run."""

    n: int
    reps: int
    mem_sizes: tuple[int, ...]
    p2_n: int
    workdir: Path
    timeout: float = 1800.0
    p5_reps: int | None = None
    p2_concurrency: tuple[int, ...] = P2_CONCURRENCY
    p2_latency: tuple[int, ...] = P2_LATENCY_MS
    pipe_n: int = 100_000
    pipe_reps: int = 3
    mix: str | None = None
    log: Callable[[str], None] = print
    _inputs: dict[tuple[int, bool], Path] = dataclasses.field(default_factory=dict)

    def input_file(self, n: int) -> Path:
        """The cached tap-salesforce-shaped input with n records (generated once).

        Args:
            n: number of records.

        Returns:
            The file path.
        """
        tag = re.sub(r"[^A-Za-z0-9]+", "_", self.mix) if self.mix else "mix"
        name = f"input-sf-{n}-{tag}-v{generate.GENERATOR_VERSION}.singer"
        path = self.workdir / name
        if not path.exists():
            self.log(f"  generating {n} records -> {path.name}")
            generate.write(path, n, generate.parse_mix(self.mix) if self.mix else None)
        return path

    def generator_command(self, n: int) -> list[str]:
        """The command that streams the same input to stdout.

        Args:
            n: number of records.

        Returns:
            The command line.
        """
        cmd = [harness.PYTHON, str(BENCH / "generate.py"), "--n", str(n)]
        return [*cmd, "--mix", self.mix] if self.mix else cmd

    def scratch(self, name: str) -> Path:
        """An empty scratch directory under the workdir.

        Args:
            name: its name.

        Returns:
            The path.
        """
        return harness.fresh_dir(self.workdir / "scratch" / name)


def median_run(  # noqa: PLR0913 - label, id, size and factory are all needed
    ctx: Context,
    what: str,
    pid: str,
    n: int,
    make: Callable[[int], tuple[list[str], dict[str, Any]]],
    *,
    reps: int | None = None,
) -> Row:
    """Run a child `reps` times and summarise by the median.

    Args:
        ctx: the run context.
        what: the row label.
        pid: the measurement id.
        n: records processed per run (for the rate).
        make: given the repetition index, returns the command and the keyword
            arguments for `harness.run_child` (a fresh setup per repetition).
        reps: repetitions (default ctx.reps).

    Returns:
        The row with median wall time, CPU time and peak RSS.
    """
    runs: list[harness.ChildRun] = []
    count = reps or ctx.reps
    for rep in range(count):
        cmd, kwargs = make(rep)
        ctx.log(f"  {pid} {what}: run {rep + 1}/{count}")
        runs.append(harness.run_child(cmd, timeout=ctx.timeout, **kwargs))
    return Row(
        pid,
        what,
        n=n,
        wall=statistics.median(r.wall for r in runs),
        cpu=statistics.median(r.cpu for r in runs),
        rss_mib=statistics.median(r.max_rss_kib for r in runs) / 1024,
        reps=len(runs),
    )


def clevertap_config(
    settings: frozenset[str], scratch: Path, rep: int, **extra: Any
) -> dict[str, Any]:
    """A target-clevertap config with fresh state, rejects and dry-run paths.

    Args:
        settings: the target's setting names (from --about).
        scratch: the measurement's scratch directory.
        rep: the repetition index (each gets its own state).
        extra: more settings.

    Returns:
        The config.
    """
    run_dir = harness.fresh_dir(scratch / f"rep{rep}")
    cfg: dict[str, Any] = {"account_id": CT_ACCOUNT, "passcode": CT_PASSCODE}
    optional = {
        "default_phone_country": "US",  # the generated org is mostly US numbers
        "state_dir": str(run_dir / "state"),
        "rejects_path": str(run_dir / "rejects.jsonl"),
    }
    if IMPORT_PRESET.exists():
        optional["mappings_file"] = str(IMPORT_PRESET)
    cfg.update({k: v for k, v in optional.items() if k in settings})
    cfg.update(extra)
    return cfg


def ratio(a: Row | None, b: Row | None) -> float | None:
    """Wall time of `a` over wall time of `b` (None when either is missing).

    Args:
        a: the row measured.
        b: the row compared with.

    Returns:
        The ratio.
    """
    if a is None or b is None or not a.wall or not b.wall:
        return None
    return a.wall / b.wall


def select_event_stream(catalog: dict[str, Any], event: str) -> str:
    """Select only the stream of `event` in a discovered tap-clevertap catalog.

    Args:
        catalog: the catalog, changed in place.
        event: the event name.

    Returns:
        The chosen stream's id.

    Raises:
        NotAvailableError: no stream matches.
    """
    wanted = re.sub(r"[^a-z0-9]", "", event.lower())
    chosen = ""
    for stream in catalog.get("streams", []):
        sid = str(stream.get("tap_stream_id") or stream.get("stream"))
        hit = wanted in re.sub(r"[^a-z0-9]", "", sid.lower())
        chosen = sid if hit else chosen
        for entry in stream.get("metadata", []):
            if entry.get("breadcrumb") == []:
                entry.setdefault("metadata", {})["selected"] = hit
    if not chosen:
        msg = f"no stream for event {event!r} in the discovered catalog"
        raise harness.NotAvailableError(msg)
    return chosen


def tap_clevertap_command(
    scratch: Path,
    api_url: str,
    days: tuple[dt.date, dt.date],
    event: str,
    settings: frozenset[str],
) -> tuple[list[str], str, int]:
    """tap-clevertap's command for one event stream over `days`, in one window.

    One export window over the whole range, so the tap walks the same cursor pages
    as a bare loop would (one POST, then the pages).

    Args:
        scratch: where the config and catalog go.
        api_url: the CleverTap emulator.
        days: first and last day of the seeded events.
        event: the event name whose stream is selected.
        settings: the tap's setting names (optional ones are set only if known).

    Returns:
        The command, the selected stream id, and the window's days.

    Raises:
        RunFailedError: `--discover` failed.
    """
    end = days[1] + dt.timedelta(days=1)
    window = (end - days[0]).days
    cfg: dict[str, Any] = {
        "account_id": CT_ACCOUNT,
        "passcode": CT_PASSCODE,
        "api_url": api_url,
        "start_date": f"{days[0].isoformat()}T00:00:00Z",
        "timezone": "UTC",
        "event_names": [event],
    }
    optional: dict[str, Any] = {
        "end_date": f"{end.isoformat()}T00:00:00Z",
        "batch_size": 5000,
        "window_days": window,
    }
    cfg.update({k: v for k, v in optional.items() if k in settings})
    cfg_path = harness.write_json(scratch / "tap.json", cfg)
    tap = [harness.PYTHON, "-m", "tap_clevertap", "--config", str(cfg_path)]
    done = subprocess.run(
        [*tap, "--discover"],
        capture_output=True,
        text=True,
        env=harness.child_env(),
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        msg = f"tap-clevertap --discover: {done.stderr.strip()[-300:]}"
        raise harness.RunFailedError(msg)
    catalog = json.loads(done.stdout)
    stream = select_event_stream(catalog, event)
    cat_path = harness.write_json(scratch / "catalog.json", catalog)
    return [*tap, "--catalog", str(cat_path)], stream, window
