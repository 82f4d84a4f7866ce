"""P6 and P7 (issue 18): whole pipelines, where a target must never be the bottleneck.

P6: the real singer-io tap-salesforce 2.8.1 (its own venv, `.venv-tap-salesforce`)
reads a large org from the Salesforce emulator (REST, then BULK) through the sandbox
CONNECT proxy on the real hostnames, exactly as `meltano run` in the sandbox does, and
is piped into target-clevertap (the import preset) uploading to the CleverTap
emulator. Compared with the same tap writing to /dev/null: goal <= 1.15x.

P7: tap-clevertap exports the events seeded in the CleverTap emulator and is piped
into target-salesforce (the export preset: Bulk 2.0 upserts into
CleverTap_Engagement__c). Compared with the slower of the two run alone (the tap
writing a file, the target reading that file): goal <= 1.3x.

Both sides of a pipe are measured by `os.wait4` on their own pid (CPU, peak RSS);
the emulators and the proxy run as their own processes and never count.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import common
import harness
from common import ROOT, Context, Goal, Row, Section
from harness import NotAvailableError, RunFailedError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

TAP_SALESFORCE = ROOT / ".venv-tap-salesforce" / "bin" / "tap-salesforce"
EXPORT_PRESET = ROOT / "transforms" / "clevertap_to_salesforce.yml"
# The org's My Domain as the token endpoint hands it out; the proxy routes it.
INSTANCE_URL = "https://sandbox.my.salesforce.com"
SF_STREAMS = ("Contact", "Lead", "Opportunity", "Task")
API_TYPES = ("REST", "BULK")
P6_GOAL = 1.15
P7_GOAL = 1.3
# the cached org is rebuilt when any of these sources changes
ORG_SOURCES = ("large_org.py", "seed.py", "schema.py", "dml.py", "store.py")
P7_EVENT = "Product Viewed"
P7_DAYS = (dt.date(2024, 3, 4), dt.date(2024, 3, 8))
P7_PROFILES = 5000
DEV_NULL = Path("/dev/null")


def _pipe_row(pid: str, what: str, n: int, runs: list[harness.PipeRun]) -> Row:
    """The median pipeline run as a row; each side's CPU and peak RSS in the note."""
    ordered = sorted(runs, key=lambda r: r.wall)
    mid = ordered[(len(ordered) - 1) // 2]
    row = Row(
        pid,
        what,
        n=n,
        wall=mid.wall,
        cpu=mid.first.cpu + mid.second.cpu,
        rss_mib=max(mid.first.max_rss_kib, mid.second.max_rss_kib) / 1024,
        reps=len(runs),
    )
    row.note = (
        f"median run: tap CPU {mid.first.cpu:.1f} s (peak RSS "
        f"{mid.first.max_rss_kib / 1024:.0f} MiB, ended at {mid.first.wall:.1f} s), "
        f"target CPU {mid.second.cpu:.1f} s (peak RSS "
        f"{mid.second.max_rss_kib / 1024:.0f} MiB, ended at {mid.second.wall:.1f} s); "
        "CPU s = both sides"
    )
    return row


def _median_pipe(
    ctx: Context,
    what: str,
    pid: str,
    make: Callable[[int], tuple[list[str], list[str], dict[str, Any]]],
) -> list[harness.PipeRun]:
    runs = []
    for rep in range(ctx.pipe_reps):
        first, second, kwargs = make(rep)
        ctx.log(f"  {pid} {what}: run {rep + 1}/{ctx.pipe_reps}")
        runs.append(harness.run_pipeline(first, second, timeout=ctx.timeout, **kwargs))
    return runs


def _cpu(*emulators: harness.Emulator) -> tuple[float, ...]:
    return tuple(emu.cpu_seconds() for emu in emulators)


def _emulator_cpu(
    names: tuple[str, ...],
    before: tuple[float, ...],
    after: tuple[float, ...],
    runs: int,
) -> str:
    """`the Salesforce emulator spent 3.1 s CPU per run, ...` (averaged over runs)."""
    parts = [
        f"the {name} emulator {(b - a) / max(runs, 1):.1f} s"
        for name, a, b in zip(names, before, after, strict=True)
    ]
    return "CPU per run: " + ", ".join(parts)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


# --------------------------------------------------------------------------- P6


def _org_version() -> str:
    """A digest of the emulator sources that decide what the large org holds."""
    import sandbox.salesforce  # noqa: PLC0415 - only to find its sources

    folder = Path(sandbox.salesforce.__file__).parent
    digest = hashlib.sha256()
    for name in ORG_SOURCES:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:12]


def large_org(ctx: Context, records: int) -> Path:
    """The seeded Salesforce org database for `records` records (cached).

    Args:
        ctx: the run context.
        records: Contacts, Leads, Opportunities and Tasks together.

    Returns:
        The SQLite file (copy it before serving: the emulator writes to it).

    Raises:
        RunFailedError: when seeding fails.
    """
    path = ctx.workdir / f"sf-org-{records}-{_org_version()}.db"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    ctx.log(f"  seeding a {records}-record Salesforce org -> {path.name}")
    cmd = [harness.PYTHON, "-m", "sandbox.salesforce.large_org"]
    cmd += ["--db", str(partial), "--records", str(records)]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=harness.child_env(),
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        msg = f"seeding the large org failed: {done.stderr.strip()[-300:]}"
        raise RunFailedError(msg)
    ctx.log(f"  {done.stderr.strip()}")
    for suffix in ("-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    partial.rename(path)
    return path


def _select_sf(catalog: dict[str, Any]) -> dict[str, Any]:
    """Keep the four streams, selected, incremental on their replication key."""
    chosen = []
    for entry in catalog.get("streams", []):
        if entry.get("stream") not in SF_STREAMS:
            continue
        for item in entry.get("metadata", []):
            if item.get("breadcrumb") == []:
                meta = item.setdefault("metadata", {})
                meta["selected"] = True
                keys = meta.get("valid-replication-keys") or []
                if keys:
                    meta["replication-method"] = "INCREMENTAL"
                    meta["replication-key"] = keys[0]
                else:
                    meta["replication-method"] = "FULL_TABLE"
        chosen.append(entry)
    missing = set(SF_STREAMS) - {e.get("stream") for e in chosen}
    if missing:
        msg = f"tap-salesforce did not discover {sorted(missing)}"
        raise NotAvailableError(msg)
    return {"streams": chosen}


def _discover_sf(
    scratch: Path, api_type: str, tap_env: Mapping[str, str]
) -> tuple[Path, Path]:
    """Write the tap's config and its selected catalog; return both paths."""
    from sandbox.salesforce import auth  # noqa: PLC0415 - the emulator's fake app

    cfg = harness.write_json(
        scratch / f"tap-{api_type}.json",
        {
            "client_id": auth.CLIENT_ID,
            "client_secret": auth.CLIENT_SECRET,
            "refresh_token": auth.REFRESH_TOKEN,
            "start_date": "2000-01-01T00:00:00Z",
            "api_type": api_type,
            "select_fields_by_default": True,
        },
    )
    done = subprocess.run(
        [str(TAP_SALESFORCE), "--config", str(cfg), "--discover"],
        capture_output=True,
        text=True,
        env={**harness.child_env(), **tap_env},
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        msg = f"tap-salesforce --discover: {done.stderr.strip()[-300:]}"
        raise RunFailedError(msg)
    catalog = _select_sf(json.loads(done.stdout))
    return cfg, harness.write_json(scratch / f"catalog-{api_type}.json", catalog)


def _require_tap_salesforce() -> None:
    if not TAP_SALESFORCE.exists():
        msg = (
            f"{TAP_SALESFORCE.relative_to(ROOT)} is not installed (python3.11 -m venv "
            ".venv-tap-salesforce && .venv-tap-salesforce/bin/pip install "
            "tap-salesforce==2.8.1)"
        )
        raise NotAvailableError(msg)


def p6_salesforce_to_clevertap(ctx: Context) -> Section:
    """P6: tap-salesforce | target-clevertap against the tap alone into /dev/null.

    Args:
        ctx: the run context.

    Returns:
        The section.
    """
    sec = Section(
        "P6",
        "Salesforce -> CleverTap: the real tap-salesforce (REST, BULK) through the "
        "proxy, piped into target-clevertap uploading to the CleverTap emulator",
    )
    ratios: dict[str, float | None] = dict.fromkeys(API_TYPES)
    try:
        _require_tap_salesforce()
        settings = harness.require_settings("target_clevertap", "api_url")
        scratch = ctx.scratch("p6")
        org = large_org(ctx, ctx.pipe_n)
        served = scratch / "org.db"
        shutil.copyfile(org, served)
        with (
            harness.emulator(
                "salesforce", scratch, tls=True, instance_url=INSTANCE_URL, db=served
            ) as sf,
            harness.emulator("clevertap", scratch, ready_path="/_sandbox/health") as ct,
        ):
            target = f"{harness.LOCALHOST}:{_port(sf.base_url)}"
            routes = {"login.salesforce.com": target, "*.my.salesforce.com": target}
            with harness.proxy(routes, scratch) as proxy_url:
                assert sf.ca_file is not None  # noqa: S101 - tls=True sets it
                tap_env = {
                    "HTTPS_PROXY": proxy_url,
                    "REQUESTS_CA_BUNDLE": str(sf.ca_file.parent / "bundle.pem"),
                }
                for api_type in API_TYPES:
                    ratios[api_type] = _p6_runs(
                        ctx,
                        sec,
                        scratch=scratch,
                        api_type=api_type,
                        tap_env=tap_env,
                        emulators=(sf, ct),
                        settings=settings,
                    )
    except NotAvailableError as exc:
        sec.unavailable("tap-salesforce | target-clevertap", str(exc))
    except RunFailedError as exc:
        sec.failed("tap-salesforce | target-clevertap", str(exc))
    for api_type in API_TYPES:
        sec.goals.append(
            Goal(
                "P6",
                f"tap-salesforce {api_type} | target-clevertap / the tap alone into "
                "/dev/null, wall time",
                ratios[api_type],
                P6_GOAL,
            )
        )
    for api_type in API_TYPES:
        name = f"tap-salesforce {api_type} | target-clevertap"
        sec.goals.append(_rate_goal(sec, "P6", name))
    return sec


def _rate_goal(sec: Section, pid: str, name: str) -> Goal:
    """Records per second end to end of the pipeline row starting with `name`."""
    row = next((r for r in sec.rows if r.what.startswith(name) and r.wall), None)
    return Goal(
        pid,
        f"{name}: records/s end to end (report only; each side's CPU in the row's "
        "note)",
        row.rate if row else None,
        None,
    )


def _p6_runs(  # noqa: PLR0913 - the pieces prepared by p6_salesforce_to_clevertap
    ctx: Context,
    sec: Section,
    *,
    scratch: Path,
    api_type: str,
    tap_env: dict[str, str],
    emulators: tuple[harness.Emulator, harness.Emulator],
    settings: frozenset[str],
) -> float | None:
    n = ctx.pipe_n
    sf, ct = emulators
    try:
        cfg, catalog = _discover_sf(scratch, api_type, tap_env)
    except RunFailedError as exc:
        sec.failed(f"tap-salesforce {api_type} --discover", str(exc))
        return None
    tap = [str(TAP_SALESFORCE), "--config", str(cfg), "--properties", str(catalog)]
    label = f"tap-salesforce {api_type} alone, into /dev/null"

    def make_tap(rep: int) -> tuple[list[str], dict[str, Any]]:
        log = scratch / f"tap-{api_type}-{rep}.log"
        return tap, {"stdout_path": DEV_NULL, "log": log, "env": tap_env}

    before = _cpu(sf, ct)
    try:
        alone = common.median_run(ctx, label, "P6", n, make_tap, reps=ctx.pipe_reps)
    except RunFailedError as exc:
        sec.failed(label, str(exc))
        return None
    alone.note = "4 streams, every field selected, INCREMENTAL on SystemModstamp; "
    alone.note += _emulator_cpu(("Salesforce",), before[:1], _cpu(sf)[:1], alone.reps)
    sec.rows.append(alone)

    label = f"tap-salesforce {api_type} | target-clevertap (import preset)"

    def make_pipe(rep: int) -> tuple[list[str], list[str], dict[str, Any]]:
        ct.control("POST", "/_sandbox/reset")
        where = scratch / f"target-{api_type}"
        target_cfg = common.clevertap_config(settings, where, rep, api_url=ct.base_url)
        cfg_path = harness.write_json(where / f"rep{rep}.json", target_cfg)
        target = [harness.PYTHON, "-m", "target_clevertap", "--config", str(cfg_path)]
        logs = (
            scratch / f"pipe-{api_type}-tap-{rep}.log",
            scratch / f"pipe-{api_type}-target-{rep}.log",
        )
        return tap, target, {"logs": logs, "envs": (tap_env, None)}

    before = _cpu(sf, ct)
    try:
        runs = _median_pipe(ctx, label, "P6", make_pipe)
    except RunFailedError as exc:
        sec.failed(label, str(exc))
        return None
    row = _pipe_row("P6", label, n, runs)
    names = ("Salesforce", "CleverTap")
    row.note += "; " + _emulator_cpu(names, before, _cpu(sf, ct), len(runs))
    log = ct.control("GET", "/_sandbox/requests")
    uploads = [r for r in log if r.get("path") == "/1/upload"]
    sent = sum(int(r.get("records") or 0) for r in uploads if r.get("status") == 200)
    last = scratch / f"target-{api_type}" / f"rep{len(runs) - 1}"
    rejects = harness.count_lines(last / "rejects.jsonl")
    row.note += (
        f"; last run: {len(uploads)} upload calls carrying {sent} profiles and "
        f"events, {rejects} rejects"
    )
    sec.rows.append(row)
    return common.ratio(row, alone)


# --------------------------------------------------------------------------- P7


def _seed_clevertap(ct: harness.Emulator, n: int) -> int:
    """Seed n events (at least) of P7_EVENT over P7_DAYS; returns how many."""
    days = (P7_DAYS[1] - P7_DAYS[0]).days + 1
    per_day = -(-n // days)
    reply = ct.control(
        "POST",
        "/_sandbox/seed",
        {
            "profiles": min(P7_PROFILES, max(n, 1)),
            "events_per_day": per_day,
            "from": int(P7_DAYS[0].strftime("%Y%m%d")),
            "to": int(P7_DAYS[1].strftime("%Y%m%d")),
            "event_names": [P7_EVENT],
            "notifications": False,
            "campaigns": 0,
            "messages": 0,
        },
    )
    return int(reply.get("events", {}).get(P7_EVENT, 0))


def p7_clevertap_to_salesforce(ctx: Context) -> Section:
    """P7: tap-clevertap | target-salesforce against the slower side alone.

    Args:
        ctx: the run context.

    Returns:
        The section.
    """
    sec = Section(
        "P7",
        "CleverTap -> Salesforce: tap-clevertap piped into target-salesforce (Bulk "
        "2.0 upserts into CleverTap_Engagement__c, the export preset)",
    )
    value = None
    try:
        tap_settings = harness.require_settings(
            "tap_clevertap", "api_url", "event_names", "start_date", "timezone"
        )
        harness.require_settings("target_salesforce", "mappings_file", "instance_url")
        scratch = ctx.scratch("p7")
        with (
            harness.emulator("clevertap", scratch, ready_path="/_sandbox/health") as ct,
            harness.emulator("salesforce", scratch, "--no-seed", tls=True) as sf,
        ):
            seeded = _seed_clevertap(ct, ctx.pipe_n)
            ctx.log(f"  P7 seeded {seeded} events of {P7_EVENT!r}")
            tap, stream, _ = common.tap_clevertap_command(
                scratch, ct.base_url, P7_DAYS, P7_EVENT, tap_settings
            )
            value = _p7_runs(ctx, sec, scratch, (tap, stream, seeded), (ct, sf))
    except NotAvailableError as exc:
        sec.unavailable("tap-clevertap | target-salesforce", str(exc))
    except RunFailedError as exc:
        sec.failed("tap-clevertap | target-salesforce", str(exc))
    sec.goals.append(
        Goal(
            "P7",
            "tap-clevertap | target-salesforce / the slower side alone, wall time",
            value,
            P7_GOAL,
        )
    )
    sec.goals.append(_rate_goal(sec, "P7", "tap-clevertap | target-salesforce"))
    return sec


def _p7_target(scratch: Path, sf: harness.Emulator, name: str) -> list[str]:
    """Reset the org and write a target-salesforce config; return the command."""
    sf.control("POST", "/_sandbox/reset")
    reply = sf.control("POST", "/_sandbox/token", {})
    token = reply.get("access_token") if isinstance(reply, dict) else None
    if not token:
        msg = "emulator /_sandbox/token gave no access_token"
        raise NotAvailableError(msg)
    run_dir = harness.fresh_dir(scratch / name)
    cfg = {
        "access_token": token,
        "instance_url": sf.base_url,
        "ca_bundle": str(sf.ca_file),
        "mappings_file": str(EXPORT_PRESET),
        "rejects_path": str(run_dir / "rejects.jsonl"),
        "summary_path": str(run_dir / "summary.json"),
    }
    cfg_path = harness.write_json(run_dir / "config.json", cfg)
    return [harness.PYTHON, "-m", "target_salesforce", "--config", str(cfg_path)]


def _p7_landed(sf: harness.Emulator, scratch: Path, name: str) -> str:
    stored = sf.control("GET", "/_sandbox/records").get("CleverTap_Engagement__c")
    calls = sf.control("GET", "/_sandbox/requests")
    bulk = sum(1 for c in calls if "jobs/ingest" in str(c.get("path", "")))
    rejects = harness.count_lines(scratch / name / "rejects.jsonl")
    return (
        f"{stored} CleverTap_Engagement__c rows stored, {rejects} rejects, {bulk} "
        "Bulk 2.0 calls"
    )


def _p7_runs(
    ctx: Context,
    sec: Section,
    scratch: Path,
    tap_info: tuple[list[str], str, int],
    emulators: tuple[harness.Emulator, harness.Emulator],
) -> float | None:
    tap, stream, n = tap_info
    ct, sf = emulators
    output = scratch / "tap.singer"
    label = "tap-clevertap alone, into a file"

    def make_tap(rep: int) -> tuple[list[str], dict[str, Any]]:
        return tap, {"stdout_path": output, "log": scratch / f"tap-{rep}.log"}

    rows: dict[str, Row] = {}
    before = _cpu(ct, sf)
    try:
        rows["tap"] = common.median_run(
            ctx, label, "P7", n, make_tap, reps=ctx.pipe_reps
        )
    except RunFailedError as exc:
        sec.failed(label, str(exc))
        return None
    records = harness.count_lines(output, b'"type":"RECORD"') or harness.count_lines(
        output, b'"type": "RECORD"'
    )
    rows["tap"].note = f"stream {stream}: {records} RECORD messages; "
    rows["tap"].note += _emulator_cpu(
        ("CleverTap",), before[:1], _cpu(ct), rows["tap"].reps
    )
    sec.rows.append(rows["tap"])

    label = "target-salesforce alone, reading that file (export preset)"

    def make_target(rep: int) -> tuple[list[str], dict[str, Any]]:
        cmd = _p7_target(scratch, sf, f"alone{rep}")
        return cmd, {"stdin_path": output, "log": scratch / f"target-{rep}.log"}

    before = _cpu(sf)
    try:
        rows["target"] = common.median_run(
            ctx, label, "P7", n, make_target, reps=ctx.pipe_reps
        )
    except RunFailedError as exc:
        sec.failed(label, str(exc))
        return None
    last = f"alone{rows['target'].reps - 1}"
    rows["target"].note = "last run: " + _p7_landed(sf, scratch, last) + "; "
    rows["target"].note += _emulator_cpu(
        ("Salesforce",), before, _cpu(sf), rows["target"].reps
    )
    sec.rows.append(rows["target"])

    label = "tap-clevertap | target-salesforce"

    def make_pipe(rep: int) -> tuple[list[str], list[str], dict[str, Any]]:
        target = _p7_target(scratch, sf, f"pipe{rep}")
        logs = (scratch / f"pipe-tap-{rep}.log", scratch / f"pipe-target-{rep}.log")
        return tap, target, {"logs": logs}

    before = _cpu(ct, sf)
    try:
        runs = _median_pipe(ctx, label, "P7", make_pipe)
    except RunFailedError as exc:
        sec.failed(label, str(exc))
        return None
    row = _pipe_row("P7", label, n, runs)
    row.note += "; last run: " + _p7_landed(sf, scratch, f"pipe{len(runs) - 1}")
    names = ("CleverTap", "Salesforce")
    row.note += "; " + _emulator_cpu(names, before, _cpu(ct, sf), len(runs))
    sec.rows.append(row)
    slower = max((rows["tap"], rows["target"]), key=lambda r: r.wall or 0.0)
    return common.ratio(row, slower)
