"""P2 (issue 18): is the upload latency hidden behind the target's own work?

A live run of target-clevertap at max_concurrency 15, uploading to the CleverTap
emulator with 100 ms (and 500 ms) added to every upload call, against a dry run of
the same input (the same parsing, validation, mapping and payload building, nothing
sent). The goal is <= 1.25x for both latencies. The live run at max_concurrency 1 is
measured too, for the 15 vs 1 ratio (information only).

The floor (report only): the last records can only be uploaded once they are read
and mapped, so no live run can end before the dry run plus the upload rounds that
must follow the end of input: one (the last window's uploads), two when the last
stream of the input upserts profiles and sends events (its events wait for its own
profiles). The live/floor ratio says how far a run is from what is physically
possible at that latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import common
import generate
import harness
import yaml
from common import Context, Goal, Row, Section
from harness import NotAvailableError, RunFailedError

if TYPE_CHECKING:
    from pathlib import Path

P2_GOAL = 1.25
BATCH_SIZE = 1000


def rounds_after_input(mix: str | None) -> int:
    """Upload rounds that cannot overlap reading: after the last record was read.

    The generated input writes its streams one after the other (`generate.STREAMS`
    order); the last one's last window uploads after the end of input: one round,
    two when that stream's mapping (the import preset, else the default profile)
    makes profiles and events (the events wait for the window's own profiles).

    Args:
        mix: the `--mix` text (None: the default mix).

    Returns:
        1 or 2.
    """
    weights = generate.parse_mix(mix) if mix else generate.DEFAULT_MIX
    last = [s for s in generate.STREAMS if weights.get(s)][-1]
    spec: dict[str, Any] = {}
    if common.IMPORT_PRESET.exists():
        preset = yaml.safe_load(common.IMPORT_PRESET.read_text(encoding="utf-8"))
        spec = (preset.get("streams") or {}).get(last) or {}
    return 2 if spec.get("profile") and spec.get("events") else 1


def _floor_row(dry: Row, latency_ms: int, rounds: int) -> Row:
    """The floor at one latency: the dry run plus the rounds after the input."""
    added = rounds * latency_ms / 1000
    return Row(
        "P2",
        f"floor at {latency_ms} ms: dry run + the upload rounds that cannot "
        "overlap reading",
        dry.n,
        wall=(dry.wall or 0) + added,
        note=(
            f"computed, not run: the dry run's {dry.wall or 0:.2f} s + {rounds} "
            f"round(s) of {latency_ms} ms after the last record was read (the "
            "emulator's own time per call and any upload that waits for profiles "
            "read shortly before the end come on top)"
        ),
    )


def _uploaded(emu: harness.Emulator) -> tuple[int, int, int, float]:
    """Upload calls, records in 200 replies, non-200 calls, arrival span in s."""
    log = emu.control("GET", "/_sandbox/requests")
    calls = [r for r in log if r.get("path") == "/1/upload"]
    records = sum(int(r.get("records") or 0) for r in calls if r.get("status") == 200)
    bad = sum(1 for r in calls if r.get("status") != 200)
    times = [float(r["time"]) for r in calls if r.get("time") is not None]
    span = max(times) - min(times) if times else 0.0
    return len(calls), records, bad, span


def _command(scratch: Path, name: str, cfg: dict[str, Any]) -> list[str]:
    cfg_path = harness.write_json(scratch / f"{name}.json", cfg)
    return [harness.PYTHON, "-m", "target_clevertap", "--config", str(cfg_path)]


@dataclass(frozen=True)
class _Inputs:
    """What every P2 run shares: the target's settings, the input, a scratch folder."""

    settings: frozenset[str]
    data: Path
    scratch: Path

    def live_run(
        self, where: Path, rep: int, log: Path, **extra: Any
    ) -> tuple[list[str], dict[str, Any]]:
        """The command and run options of one live run (`extra`: its settings)."""
        if "batch_size" in self.settings:
            extra["batch_size"] = BATCH_SIZE
        cfg = common.clevertap_config(self.settings, where, rep, **extra)
        return _command(where, f"rep{rep}", cfg), {"stdin_path": self.data, "log": log}


def _dry_run(
    ctx: Context, sec: Section, settings: frozenset[str], data: Path, scratch: Path
) -> Row | None:
    label = "target-clevertap dry_run (same input, nothing sent)"

    def make(rep: int) -> tuple[list[str], dict[str, Any]]:
        where = scratch / "dry"
        extra: dict[str, Any] = {"dry_run": True, "api_url": "http://127.0.0.1:9"}
        if "batch_size" in settings:
            extra["batch_size"] = BATCH_SIZE
        cfg = common.clevertap_config(settings, where, rep, **extra)
        cfg["dry_run_path"] = str(where / f"rep{rep}" / "payloads.jsonl")
        cmd = _command(where, f"rep{rep}", cfg)
        return cmd, {"stdin_path": data, "log": scratch / f"dry-{rep}.log"}

    try:
        row = common.median_run(ctx, label, "P2", ctx.p2_n, make)
    except RunFailedError as exc:
        sec.failed(label, str(exc))
        return None
    last = scratch / "dry" / f"rep{row.reps - 1}" / "payloads.jsonl"
    row.note = f"{harness.count_lines(last)} payload records"
    sec.rows.append(row)
    return row


def _live_runs(
    ctx: Context, sec: Section, inputs: _Inputs, latency_ms: int
) -> dict[int, Row]:
    results: dict[int, Row] = {}
    scratch = inputs.scratch
    with harness.emulator("clevertap", scratch, ready_path="/_sandbox/health") as emu:
        fault = {"kind": "latency", "ms": latency_ms, "path": "/1/upload"}
        for conc in ctx.p2_concurrency:
            label = f"target-clevertap live, {latency_ms} ms per upload, "
            label += f"max_concurrency={conc}"

            def make(rep: int, conc: int = conc) -> tuple[list[str], dict[str, Any]]:
                emu.control("POST", "/_sandbox/reset")
                emu.control("POST", "/_sandbox/faults", fault)
                return inputs.live_run(
                    scratch / f"l{latency_ms}-c{conc}",
                    rep,
                    scratch / f"l{latency_ms}-c{conc}-{rep}.log",
                    api_url=emu.base_url,
                    max_concurrency=conc,
                )

            cpu_before = emu.cpu_seconds()
            try:
                row = common.median_run(ctx, label, "P2", ctx.p2_n, make)
            except RunFailedError as exc:
                sec.failed(label, str(exc))
                continue
            calls, records, bad, span = _uploaded(emu)
            emu_ms = (emu.cpu_seconds() - cpu_before) / max(row.reps, 1)
            emu_ms = emu_ms * 1000 / max(calls, 1)
            floor = calls * latency_ms / 1000 / conc
            row.note = (
                f"last run: {calls} upload calls ({bad} not HTTP 200) carrying "
                f"{records} records, arriving over {span:.1f} s; the added latency "
                f"alone needs >= {floor:.1f} s at this concurrency; the emulator "
                f"spent {emu_ms:.0f} ms CPU per upload call"
            )
            results[conc] = row
            sec.rows.append(row)
    return results


def _noop_server_run(
    ctx: Context, sec: Section, inputs: _Inputs, latency_ms: int
) -> Row | None:
    """The live run at the top concurrency against a do-nothing upload server.

    Information only: the server (bench/baselines/noop_upload_server.py) spends
    almost no CPU, so unlike the emulator it does not take the client's cores,
    as a real CleverTap would not.
    """
    conc = max(ctx.p2_concurrency)
    label = (
        f"target-clevertap live, {latency_ms} ms per upload, max_concurrency={conc}, "
        "against a do-nothing upload server (information)"
    )
    port = harness.free_port()
    base = f"http://{harness.LOCALHOST}:{port}"
    server = [harness.PYTHON, str(common.BASELINES / "noop_upload_server.py")]
    server += ["--port", str(port), "--latency-ms", str(latency_ms)]
    where = harness.fresh_dir(inputs.scratch / f"noop-l{latency_ms}")
    log = where / "server.log"
    try:
        with harness.serving(
            server, base, log, name="noop_upload_server.py", ready_path="/health"
        ):

            def make(rep: int) -> tuple[list[str], dict[str, Any]]:
                log = where / f"run-{rep}.log"
                return inputs.live_run(
                    where, rep, log, api_url=base, max_concurrency=conc
                )

            row = common.median_run(ctx, label, "P2", ctx.p2_n, make)
    except (NotAvailableError, RunFailedError) as exc:
        sec.failed(label, str(exc))
        return None
    row.note = "the server answers success after the delay and checks nothing"
    sec.rows.append(row)
    return row


def p2_latency(ctx: Context) -> Section:
    """P2: live run at max_concurrency 15 against a dry run of the same input.

    Args:
        ctx: the run context.

    Returns:
        The section.
    """
    sec = Section(
        "P2",
        "upload latency hidden: live (CleverTap emulator with added latency per "
        "upload call) against a dry run of the same input",
    )
    dry: Row | None = None
    live: dict[int, dict[int, Row]] = {}
    floors: dict[int, Row] = {}
    noop: dict[int, Row | None] = {}
    try:
        settings = harness.require_settings(
            "target_clevertap", "api_url", "max_concurrency", "dry_run", "dry_run_path"
        )
        data = ctx.input_file(ctx.p2_n)
        scratch = ctx.scratch("p2")
        dry = _dry_run(ctx, sec, settings, data, scratch)
        inputs = _Inputs(settings, data, scratch)
        for latency_ms in ctx.p2_latency:
            live[latency_ms] = _live_runs(ctx, sec, inputs, latency_ms)
            if dry is not None and dry.wall:
                floor = _floor_row(dry, latency_ms, rounds_after_input(ctx.mix))
                floors[latency_ms] = floor
                sec.rows.append(floor)
            noop[latency_ms] = _noop_server_run(ctx, sec, inputs, latency_ms)
    except NotAvailableError as exc:
        sec.unavailable("target-clevertap uploads", str(exc))
    top = max(ctx.p2_concurrency)
    # per kind of ratio, one goal row per latency: label, limit, the two rows
    kinds = (
        ("live at max_concurrency {top} / dry run, {ms} ms per upload", P2_GOAL),
        (
            (
                "throughput at max_concurrency {top} / at 1, {ms} ms per upload "
                "(information)"
            ),
            None,
        ),
        (
            (
                "live at max_concurrency {top} / floor (dry run + the upload rounds "
                "that cannot overlap reading), {ms} ms per upload (information)"
            ),
            None,
        ),
        (
            (
                "live at max_concurrency {top} against a do-nothing upload server "
                "/ dry run, {ms} ms per upload (information)"
            ),
            None,
        ),
    )
    for kind, (label, limit) in enumerate(kinds):
        for latency_ms in ctx.p2_latency:
            rows = live.get(latency_ms, {})
            pairs = (
                (rows.get(top), dry),
                (rows.get(1), rows.get(top)),
                (rows.get(top), floors.get(latency_ms)),
                (noop.get(latency_ms), dry),
            )
            sec.goals.append(
                Goal(
                    "P2",
                    label.format(top=top, ms=latency_ms),
                    common.ratio(*pairs[kind]),
                    limit,
                )
            )
    return sec
