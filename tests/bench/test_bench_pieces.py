"""The bench's pieces: pipeline measurement, the opening of RESULTS.md, the fixtures.

No timing goal is asserted; only that each side of a pipe is measured on its own,
that RESULTS.md opens with every goal's figure and verdict, and that the large
Salesforce org and the CleverTap events are seeded quickly and consistently.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sandbox.salesforce.large_org import DEFAULT_MIX, counts_for, seed_large
from sandbox.salesforce.store import Store

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    """The bench modules, imported from bench/ as run.py does."""
    sys.path.insert(0, str(BENCH))
    try:
        import common  # noqa: PLC0415 - bench/ is not a package
        import harness  # noqa: PLC0415 - bench/ is not a package
        import latency  # noqa: PLC0415 - bench/ is not a package
        import report  # noqa: PLC0415 - bench/ is not a package

        yield {
            "common": common,
            "harness": harness,
            "latency": latency,
            "report": report,
        }
    finally:
        sys.path.remove(str(BENCH))


BUSY = "import sys\nx = 0\nfor i in range(3_000_000): x += i\nprint('{}')\n"
DRAIN = "import sys\nsys.stdin.read()\n"
FAIL = "import sys\nsys.stdin.read()\nsys.stderr.write('target broke')\nsys.exit(3)\n"


def test_pipeline_measures_each_side_with_its_own_cpu(
    bench: dict[str, Any], tmp_path: Path
) -> None:
    harness = bench["harness"]
    logs = (tmp_path / "a.log", tmp_path / "b.log")
    run = harness.run_pipeline(
        [sys.executable, "-c", BUSY], [sys.executable, "-c", DRAIN], logs=logs
    )
    assert run.first.returncode == run.second.returncode == 0
    assert run.first.cpu > 2 * run.second.cpu
    assert run.wall >= max(run.first.wall, run.second.wall) > 0
    assert run.first.max_rss_kib > 0
    assert run.second.max_rss_kib > 0


def test_pipeline_failure_names_the_side_and_its_last_words(
    bench: dict[str, Any], tmp_path: Path
) -> None:
    harness = bench["harness"]
    logs = (tmp_path / "a.log", tmp_path / "b.log")
    with pytest.raises(harness.RunFailedError, match=r"second side.*target broke"):
        harness.run_pipeline(
            [sys.executable, "-c", BUSY], [sys.executable, "-c", FAIL], logs=logs
        )


def test_child_gets_extra_environment_variables(
    bench: dict[str, Any], tmp_path: Path
) -> None:
    harness = bench["harness"]
    out = tmp_path / "out.txt"
    code = "import os\nprint(os.environ['HTTPS_PROXY'], os.environ.get('TAP_X'))"
    harness.run_child(
        [sys.executable, "-c", code],
        log=tmp_path / "log",
        stdout_path=out,
        env={"HTTPS_PROXY": "http://127.0.0.1:1"},
    )
    assert out.read_text().split() == ["http://127.0.0.1:1", "None"]


def test_results_open_with_every_goal_its_verdict_the_machine_and_date(
    bench: dict[str, Any],
) -> None:
    common, report = bench["common"], bench["report"]
    sec = common.Section("P6", "pipeline")
    sec.goals.append(common.Goal("P6", "pipe / tap alone", 1.07, 1.15))
    sec.goals.append(common.Goal("P6", "pipe / tap alone, BULK", None, 1.15))
    other = common.Section("P2", "latency")
    other.goals.append(common.Goal("P2", "live / dry", 1.9, 1.25))
    info = {"CPU": "Test CPU", "cores": "2 logical", "RAM": "1 GiB", "Python": "3"}
    started = dt.datetime(2026, 12, 7, 7, 30, tzinfo=dt.UTC)
    text = report.markdown(
        [other, sec], info, command="python bench/run.py", started=started, seconds=1
    )
    lines = text.splitlines()
    first = lines.index("## Current figures")
    assert first < lines.index("## Machine")
    opening = "\n".join(lines[first : lines.index("## Machine")])
    assert "2026-12-07 07:30 UTC" in opening
    assert "Test CPU" in opening
    assert "| P2 | live / dry | 1.90 | <= 1.25 | misses by 1.52x" in opening
    assert "| P6 | pipe / tap alone | 1.07 | <= 1.15 | holds |" in opening
    unmeasured = "| P6 | pipe / tap alone, BULK | not measured | <= 1.15 |"
    assert f"{unmeasured} not measured |" in opening


def test_p2_floor_is_the_dry_run_plus_the_rounds_after_the_last_record(
    bench: dict[str, ModuleType],
) -> None:
    latency, common = bench["latency"], bench["common"]
    # the default input ends with Task: events only, their people upserted before
    assert latency.rounds_after_input(None) == 1
    # Opportunity upserts its Contact and sends events: they wait for the profiles
    assert latency.rounds_after_input("Contact=1,Opportunity=1") == 2
    dry = common.Row("P2", "dry", 20_000, wall=1.5, reps=3)
    floor = latency._floor_row(dry, 500, 1)
    assert floor.wall == pytest.approx(2.0)
    assert "floor at 500 ms" in floor.what
    assert "computed, not run" in floor.note


def test_large_org_counts_follow_the_mix() -> None:
    counts = counts_for(100_000)
    assert sum(counts[name] for name in DEFAULT_MIX) == 100_000
    assert counts["Contact"] == 40_000
    assert counts["Task"] == 20_000
    assert counts["Account"] > 0
    assert counts["User"] > 0
    assert counts["Case"] == counts["CampaignMember"] == 0
    assert sum(counts_for(7, {"Contact": 1, "Lead": 1}).values()) >= 7
    with pytest.raises(ValueError, match="Account"):
        counts_for(10, {"Account": 1})


def test_large_org_is_seeded_in_one_go_with_related_records() -> None:
    store = Store(None)
    started = time.monotonic()
    written = seed_large(store, 4000)
    took = time.monotonic() - started
    assert sum(written[name] for name in DEFAULT_MIX) == 4000
    contacts = {r["Id"] for r in store.rows("Contact")}
    leads = {r["Id"] for r in store.rows("Lead")}
    assert len(contacts) == 1600
    assert len(leads) == 1000
    tasks = store.rows("Task")
    assert all(t["WhoId"] in contacts | leads for t in tasks)
    assert any(t["WhoId"] in leads for t in tasks)
    opportunities = store.rows("Opportunity")
    assert any(o["ContactId"] in contacts for o in opportunities)
    assert any(o["IsWon"] for o in opportunities)
    assert all(r["SystemModstamp"] for r in store.rows("Contact"))
    assert len({r["Email"] for r in store.rows("Contact")}) == 1600
    # generous: about 0.1 ms per record on a quiet machine
    assert took < 60


def test_large_org_is_the_same_every_time() -> None:
    first, second = Store(None), Store(None)
    seed_large(first, 300)
    seed_large(second, 300)
    assert first.rows("Contact") == second.rows("Contact")
    assert first.rows("Task") == second.rows("Task")


def test_large_org_command_refuses_a_database_that_holds_records(
    tmp_path: Path,
) -> None:
    from sandbox.salesforce.large_org import main  # noqa: PLC0415

    db = tmp_path / "org.db"
    assert main(["--db", str(db), "--records", "50"]) == 0
    store = Store(db)
    try:
        assert len(store.rows("Contact")) == 20
    finally:
        store.close()
    assert main(["--db", str(db), "--records", "50"]) == 1
