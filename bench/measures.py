"""The measurements P1..P7 of issues 8 and 18, and the order they run in.

Each `p*` function fills a `Section` with rows and goals; a missing plugin setting or
emulator feature gives a "not available yet: <reason>" row (read from `--about` or
probed), picked up once the piece exists. P1 and P3-P5 live here, P2 in `latency.py`,
P6 and P7 (whole pipelines) in `pipelines.py`; the shared pieces in `common.py`.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import common
import generate
import harness
import latency
import pipelines
from common import (
    BASELINES,
    BENCH_EVENT,
    CT_ACCOUNT,
    CT_PASSCODE,
    IMPORT_PRESET,
    Context,
    Goal,
    Row,
    Section,
)
from harness import NotAvailableError, RunFailedError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path


# --------------------------------------------------------------------------- P1


def p1_cpu(ctx: Context) -> Section:
    """P1: target-clevertap dry run against two do-nothing SDK targets.

    Args:
        ctx: the run context.

    Returns:
        The section.
    """
    sec = Section("P1", "CPU path: parse, validate, map, build payloads (dry run)")
    data = ctx.input_file(ctx.n)
    scratch = ctx.scratch("p1")
    size_mb = data.stat().st_size / 1e6
    rows: dict[str, Row | None] = {"default": None, "floor": None, "ours": None}

    def baseline(script: str, cfg: dict[str, Any]) -> Callable[[int], Any]:
        cfg_path = harness.write_json(scratch / f"{script}.json", cfg)

        def make(rep: int) -> tuple[list[str], dict[str, Any]]:
            cmd = [harness.PYTHON, str(BASELINES / script), "--config", str(cfg_path)]
            return cmd, {"stdin_path": data, "log": scratch / f"{script}-{rep}.log"}

        return make

    for key, label, script, cfg in (
        ("default", "do-nothing SDK target (default reader, validation on)",
         "noop_default.py", {}),
        ("floor", "do-nothing SDK target (msgspec reader, validate_records false)",
         "noop_msgspec.py", {"validate_records": False}),
    ):  # fmt: skip
        try:
            make = baseline(script, cfg)
            rows[key] = common.median_run(ctx, label, "P1", ctx.n, make)
            rows[key].note = f"input {size_mb:.1f} MB"  # type: ignore[union-attr]
            sec.rows.append(rows[key])  # type: ignore[arg-type]
        except RunFailedError as exc:
            sec.failed(label, str(exc))

    label = "target-clevertap dry_run"
    try:
        settings = harness.require_settings(
            "target_clevertap", "dry_run", "dry_run_path"
        )
        out_name = "payloads.jsonl"

        def make(rep: int) -> tuple[list[str], dict[str, Any]]:
            cfg = common.clevertap_config(settings, scratch / "ours", rep)
            cfg["dry_run"] = True
            cfg["dry_run_path"] = str(scratch / "ours" / f"rep{rep}" / out_name)
            if "api_url" in settings:
                cfg["api_url"] = "http://127.0.0.1:9"  # never called in a dry run
            cfg_path = harness.write_json(scratch / "ours" / f"rep{rep}.json", cfg)
            cmd = [harness.PYTHON, "-m", "target_clevertap", "--config", str(cfg_path)]
            return cmd, {"stdin_path": data, "log": scratch / f"ours-{rep}.log"}

        ours = common.median_run(ctx, label, "P1", ctx.n, make)
        last = scratch / "ours" / f"rep{ours.reps - 1}"
        payloads = harness.count_lines(last / out_name)
        rejects = harness.count_lines(last / "rejects.jsonl")
        preset = "preset mappings" if IMPORT_PRESET.exists() else "default mappings"
        ours.note = f"{payloads} payload records, {rejects} rejects, {preset}"
        if payloads == 0:
            ours.note += "; WARNING: the dry run wrote no payloads"
        rows["ours"] = ours
        sec.rows.append(ours)
    except NotAvailableError as exc:
        sec.unavailable(label, str(exc))
    except RunFailedError as exc:
        sec.failed(label, str(exc))

    sec.goals.append(
        Goal("P1", "target-clevertap / do-nothing default target",
             common.ratio(rows["ours"], rows["default"]), 0.5)
    )  # fmt: skip
    floor = common.ratio(rows["ours"], rows["floor"])
    sec.goals.append(
        Goal("P1", "target-clevertap / msgspec no-validation floor", floor, 2.0)
    )
    sec.goals.append(Goal("P1", "same, stretch goal", floor, 1.5))
    return sec


# --------------------------------------------------------------------------- P3


def p3_memory(ctx: Context) -> Section:
    """P3: peak RSS of the dry run at two sizes, input streamed by the generator.

    Args:
        ctx: the run context.

    Returns:
        The section.
    """
    sec = Section("P3", "memory: peak RSS, input streamed by the generator")
    rows: list[Row] = []
    try:
        settings = harness.require_settings(
            "target_clevertap", "dry_run", "dry_run_path"
        )
        scratch = ctx.scratch("p3")
        for size in ctx.mem_sizes:
            label = f"target-clevertap dry_run, {size} records"

            def make(rep: int, size: int = size) -> tuple[list[str], dict[str, Any]]:
                where = scratch / f"n{size}"
                cfg = common.clevertap_config(settings, where, rep, dry_run=True)
                # the payloads go to a file that is removed after the run
                cfg["dry_run_path"] = str(where / f"rep{rep}" / "payloads.jsonl")
                if "api_url" in settings:
                    cfg["api_url"] = "http://127.0.0.1:9"
                cfg_path = harness.write_json(where / f"rep{rep}.json", cfg)
                feeder = ctx.generator_command(size)
                cmd = [
                    harness.PYTHON,
                    "-m",
                    "target_clevertap",
                    "--config",
                    str(cfg_path),
                ]
                log = scratch / f"n{size}-{rep}.log"
                return cmd, {"feeder": feeder, "log": log}

            if len(rows) < len(sec.rows):
                sec.rows.append(
                    Row("P3", label, note="not run: a smaller size did not finish")
                )
                continue
            try:
                row = common.median_run(ctx, label, "P3", size, make, reps=1)
            except RunFailedError as exc:
                sec.failed(label, str(exc))
                continue
            payloads = scratch / f"n{size}" / "rep0" / "payloads.jsonl"
            row.note = f"{harness.count_lines(payloads)} payload records"
            payloads.unlink(missing_ok=True)
            rows.append(row)
            sec.rows.append(row)
    except NotAvailableError as exc:
        sec.unavailable("target-clevertap dry_run", str(exc))
    value = None
    if len(rows) == len(ctx.mem_sizes) >= 2 and rows[0].rss_mib:
        value = (rows[-1].rss_mib or 0) / rows[0].rss_mib
    big, small = ctx.mem_sizes[-1], ctx.mem_sizes[0]
    sec.goals.append(Goal("P3", f"peak RSS at {big} / at {small} records", value, 1.25))
    return sec


# --------------------------------------------------------------------------- P4


P4_DAYS = (dt.date(2024, 1, 1), dt.date(2024, 1, 7))


def _seed_events(emu: harness.Emulator, n: int) -> None:
    """Upload n events of BENCH_EVENT across P4_DAYS through the public upload API."""
    start = int(dt.datetime.combine(P4_DAYS[0], dt.time(), dt.UTC).timestamp())
    span = (P4_DAYS[1] - P4_DAYS[0]).days * 86400
    headers = {
        "X-CleverTap-Account-Id": CT_ACCOUNT,
        "X-CleverTap-Passcode": CT_PASSCODE,
    }
    products = ("GC1000", "GC5000", "SLA Gold", "Install", "Support Plan")

    def batch(lo: int) -> None:
        records = [
            {
                "type": "event",
                "identity": f"bench-user-{i % 5000:05d}",
                "evtName": BENCH_EVENT,
                "ts": start + (i * span) // n,
                "evtData": {
                    "product": products[i % len(products)],
                    "category": "Hardware" if i % 3 else "Services",
                    "price": round(10 + (i % 997) * 1.5, 2),
                    "quantity": 1 + i % 4,
                },
            }
            for i in range(lo, min(lo + 1000, n))
        ]
        resp = emu.session.post(
            emu.base_url + "/1/upload",
            json={"d": records},
            headers=headers,
            timeout=120,
        )
        resp.raise_for_status()
        body = resp.json()
        if body.get("processed") != len(records):
            msg = f"seeding the emulator failed: {json.dumps(body)[:300]}"
            raise RunFailedError(msg)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(batch, range(0, n, 1000)))


def p4_tap(ctx: Context) -> Section:
    """P4: tap-clevertap export against a bare requests loop over the same pages.

    Args:
        ctx: the run context.

    Returns:
        The section.
    """
    sec = Section("P4", "tap path: event export from the emulator")
    n = ctx.n
    rows: dict[str, Row] = {}
    settings: frozenset[str] = frozenset()
    try:
        settings = harness.require_settings(
            "tap_clevertap", "api_url", "event_names", "start_date", "timezone"
        )
    except NotAvailableError as exc:
        sec.unavailable("tap-clevertap", str(exc))
    scratch = ctx.scratch("p4")
    try:
        with harness.emulator(
            "clevertap", scratch, ready_path="/_sandbox/health"
        ) as emu:
            emu.control("POST", "/_sandbox/reset")
            ctx.log(f"  P4 seeding {n} events through /1/upload")
            _seed_events(emu, n)
            day = "%Y%m%d"
            base_cfg = harness.write_json(
                scratch / "export.json",
                {
                    "api_url": emu.base_url,
                    "account_id": CT_ACCOUNT,
                    "passcode": CT_PASSCODE,
                    "event_name": BENCH_EVENT,
                    "from": int(P4_DAYS[0].strftime(day)),
                    "to": int(P4_DAYS[1].strftime(day)),
                    "batch_size": 5000,
                },
            )
            label = "bare requests loop over the cursor pages, JSON lines"
            out = scratch / "export.jsonl"

            def make_base(rep: int) -> tuple[list[str], dict[str, Any]]:
                cmd = [harness.PYTHON, str(BASELINES / "export_requests.py")]
                return [*cmd, "--config", str(base_cfg), "--out", str(out)], {
                    "log": scratch / f"export-{rep}.log"
                }

            try:
                rows["base"] = common.median_run(ctx, label, "P4", n, make_base)
                rows["base"].note = f"{harness.count_lines(out)} lines written"
                sec.rows.append(rows["base"])
            except RunFailedError as exc:
                sec.failed(label, str(exc))
            if settings:
                rows.update(_p4_tap_runs(ctx, sec, emu, scratch, settings))
    except NotAvailableError as exc:
        sec.unavailable("CleverTap emulator", str(exc))
    tap, base = rows.get("tap"), rows.get("base")
    sec.goals.append(
        Goal("P4", "tap-clevertap / bare requests loop, wall time",
             common.ratio(tap, base), 2.0)
    )  # fmt: skip
    cpu = None
    if tap and base and tap.cpu and base.cpu:
        cpu = tap.cpu / base.cpu
    sec.goals.append(
        Goal("P4", "tap-clevertap / bare requests loop, CPU time of the process "
             "(report only; the emulator's export work is in both wall times)",
             cpu, None)
    )  # fmt: skip
    return sec


def _p4_tap_runs(
    ctx: Context,
    sec: Section,
    emu: harness.Emulator,
    scratch: Path,
    settings: frozenset[str],
) -> dict[str, Row]:
    label = "tap-clevertap, one event stream selected"
    try:
        tap, stream, days = common.tap_clevertap_command(
            scratch, emu.base_url, P4_DAYS, BENCH_EVENT, settings
        )
    except RunFailedError as exc:
        sec.failed(label, str(exc))
        return {}
    except (ValueError, NotAvailableError) as exc:
        sec.unavailable(label, str(exc))
        return {}
    out = scratch / "tap.singer"

    def make(rep: int) -> tuple[list[str], dict[str, Any]]:
        return tap, {
            "stdout_path": out,
            "log": scratch / f"tap-{rep}.log",
        }

    try:
        row = common.median_run(ctx, label, "P4", ctx.n, make)
    except RunFailedError as exc:
        sec.failed(label, str(exc))
        return {}
    records = harness.count_lines(out, b'"type":"RECORD"') or harness.count_lines(
        out, b'"type": "RECORD"'
    )
    row.note = f"stream {stream}: {records} RECORD messages; window_days {days}"
    sec.rows.append(row)
    return {"tap": row}


# --------------------------------------------------------------------------- P5


P5_STREAM = "bench_contacts"
# Insert, not upsert: the emulator finds an upsert's external id by scanning the
# table, so an upsert of 100k rows would measure that scan, not the target.
P5_FIELDS = ("LastName", "FirstName", "Email", "Phone", "Title")


def p5_records(n: int) -> list[dict[str, Any]]:
    """Deterministic Contact rows (distinct emails).

    Args:
        n: how many.

    Returns:
        The records.
    """
    first, last = generate.FIRST, generate.LAST
    return [
        {
            "LastName": last[i % len(last)],
            "FirstName": first[(i * 7) % len(first)],
            "Email": f"bench.{i}@example.com",
            "Phone": f"+1415{2000000 + i % 7999999:07d}",
            "Title": ("CEO", "VP Sales", "Engineer", "Analyst")[i % 4],
        }
        for i in range(n)
    ]


def write_p5_input(path: Path, n: int) -> Path:
    """The P5 Singer input: one stream of Contact-shaped rows.

    Args:
        path: where to write.
        n: number of records.

    Returns:
        The path.
    """
    schema = {
        "type": "object",
        "properties": {f: {"type": ["string", "null"]} for f in P5_FIELDS},
    }
    with path.open("w", encoding="utf-8") as out:
        head = {"type": "SCHEMA", "stream": P5_STREAM, "schema": schema}
        head["key_properties"] = []
        out.write(json.dumps(head) + "\n")
        for rec in p5_records(n):
            msg = {"type": "RECORD", "stream": P5_STREAM, "record": rec}
            out.write(json.dumps(msg) + "\n")
        state = {"type": "STATE", "value": {"bench": n}}
        out.write(json.dumps(state) + "\n")
    return path


def p5_reverse(ctx: Context) -> Section:
    """P5: target-salesforce through Bulk 2.0 against writing the CSV with `csv`.

    Args:
        ctx: the run context.

    Returns:
        The section.
    """
    sec = Section("P5", "reverse path: Bulk 2.0 upsert into the Salesforce emulator")
    n = ctx.n
    scratch = ctx.scratch("p5")
    data = write_p5_input(scratch / "input.singer", n)
    rows: dict[str, Row] = {}
    label = "csv module: same rows to a CSV file"
    out = scratch / "rows.csv"

    def make_csv(rep: int) -> tuple[list[str], dict[str, Any]]:
        cmd = [harness.PYTHON, str(BASELINES / "csv_write.py"), "--out", str(out)]
        return cmd, {"stdin_path": data, "log": scratch / f"csv-{rep}.log"}

    try:
        rows["csv"] = common.median_run(ctx, label, "P5", n, make_csv)
        rows["csv"].note = f"{harness.count_lines(out) - 1} data rows"
        sec.rows.append(rows["csv"])
    except RunFailedError as exc:
        sec.failed(label, str(exc))
    label = "target-salesforce insert, bulk_threshold 1 (every batch via Bulk 2.0)"
    try:
        settings = harness.require_settings(
            "target_salesforce", "bulk_threshold", "streams", "instance_url"
        )
        rows.update(
            _p5_target_runs(
                ctx, sec, scratch=scratch, data=data, settings=settings, label=label
            )
        )
    except NotAvailableError as exc:
        sec.unavailable(label, str(exc))
    ours, csv_row = rows.get("ours"), rows.get("csv")
    sec.goals.append(
        Goal("P5", "target-salesforce / csv module, wall time (report only)",
             common.ratio(ours, csv_row), None)
    )  # fmt: skip
    cpu = None
    if ours and csv_row and ours.cpu and csv_row.cpu:
        cpu = ours.cpu / csv_row.cpu
    sec.goals.append(
        Goal("P5", "target-salesforce / csv module, CPU time of the process "
             "(report only; the wall time includes the emulator's Bulk work)",
             cpu, None)
    )  # fmt: skip
    return sec


def _salesforce_token(emu: harness.Emulator) -> str:
    """A session token from the emulator's `/_sandbox/token` control endpoint."""
    reply = emu.control("POST", "/_sandbox/token", {})
    token = reply.get("access_token") if isinstance(reply, dict) else None
    if not token:
        msg = "emulator /_sandbox/token gave no access_token"
        raise NotAvailableError(msg)
    return str(token)


def _p5_target_runs(  # noqa: PLR0913 - the pieces prepared by p5_reverse
    ctx: Context,
    sec: Section,
    *,
    scratch: Path,
    data: Path,
    settings: frozenset[str],
    label: str,
) -> dict[str, Row]:
    del settings
    with harness.emulator("salesforce", scratch, "--no-seed", tls=True) as emu:
        mapping = {
            P5_STREAM: {
                "object": "Contact",
                "action": "insert",
            }
        }

        def make(rep: int) -> tuple[list[str], dict[str, Any]]:
            emu.control("POST", "/_sandbox/reset")
            run_dir = harness.fresh_dir(scratch / f"rep{rep}")
            cfg = {
                "access_token": _salesforce_token(emu),
                "instance_url": emu.base_url,
                "ca_bundle": str(emu.ca_file),
                "streams": mapping,
                "bulk_threshold": 1,
                "bulk_poll_interval": 0.25,
                "rejects_path": str(run_dir / "rejects.jsonl"),
                "summary_path": str(run_dir / "summary.json"),
                "insert_journal_path": str(run_dir / "insert-journal.sqlite3"),
            }
            cfg_path = harness.write_json(run_dir / "config.json", cfg)
            cmd = [harness.PYTHON, "-m", "target_salesforce", "--config", str(cfg_path)]
            return cmd, {"stdin_path": data, "log": scratch / f"target-{rep}.log"}

        try:
            row = common.median_run(ctx, label, "P5", ctx.n, make, reps=ctx.p5_reps)
        except RunFailedError as exc:
            sec.failed(label, str(exc))
            return {}
        rejects = harness.count_lines(scratch / f"rep{row.reps - 1}" / "rejects.jsonl")
        stored = emu.control("GET", "/_sandbox/records").get("Contact")
        calls = emu.control("GET", "/_sandbox/requests")
        bulk = sum(1 for c in calls if "jobs/ingest" in str(c.get("path", "")))
        row.note = (
            f"last run: {stored} Contacts stored, {rejects} rejects, {bulk} Bulk 2.0 "
            f"calls, {len(calls)} API calls; bulk_poll_interval 0.25 s"
        )
        sec.rows.append(row)
        return {"ours": row}


MEASURES: dict[str, Callable[[Context], Section]] = {
    "P1": p1_cpu,
    "P2": latency.p2_latency,
    "P3": p3_memory,
    "P4": p4_tap,
    "P5": p5_reverse,
    "P6": pipelines.p6_salesforce_to_clevertap,
    "P7": pipelines.p7_clevertap_to_salesforce,
}


# P3 streams up to a million records, the longest part: it runs last, so a run that
# is cut short still has the others.
ORDER = ("P1", "P2", "P4", "P5", "P6", "P7", "P3")


def run_all(
    ctx: Context,
    only: Sequence[str],
    progress: Callable[[list[Section]], None] | None = None,
) -> list[Section]:
    """Run the chosen measurements; return their sections in P1..P7 order.

    Args:
        ctx: the run context.
        only: measurement ids to run.
        progress: called with the sections so far after each measurement.

    Returns:
        One section each.
    """
    done: dict[str, Section] = {}
    for pid in ORDER:
        if pid not in only:
            continue
        ctx.log(f"{pid} ...")
        try:
            done[pid] = MEASURES[pid](ctx)
        except Exception as exc:  # noqa: BLE001 - one broken measurement must not stop the rest
            sec = Section(pid, "(crashed)")
            sec.failed(pid, f"{type(exc).__name__}: {exc}")
            done[pid] = sec
        if progress is not None:
            progress([done[p] for p in MEASURES if p in done])
    return [done[p] for p in MEASURES if p in done]
