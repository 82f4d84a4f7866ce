"""The bench runs end to end at a tiny size and writes a well-formed results table.

No timing is asserted: only that every measurement P1..P7 produced rows (figures, or a
"not available yet"/"failed" reason) and that RESULTS.md is a consistent Markdown table
that opens with the current figure of every goal.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run.py"
IDS = ("P1", "P2", "P3", "P4", "P5", "P6", "P7")
TAP_SALESFORCE = ROOT / ".venv-tap-salesforce" / "bin" / "tap-salesforce"
GOAL_IDS = ["P1"] * 3 + ["P2"] * 8 + ["P3"] + ["P4"] * 2 + ["P5"] * 2
GOAL_IDS += ["P6"] * 4 + ["P7"] * 2
BASELINES = (
    "do-nothing SDK target (default reader, validation on)",
    "do-nothing SDK target (msgspec reader, validate_records false)",
    "bare requests loop over the cursor pages, JSON lines",
    "csv module: same rows to a CSV file",
)


def _table(lines: list[str], heading: str) -> list[list[str]]:
    start = lines.index(heading) + 1
    while not lines[start].startswith("|"):
        start += 1
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows.append(cells)
    return rows


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_runs_end_to_end_at_tiny_n_and_writes_results_table(
    tmp_path: Path,
) -> None:
    results = tmp_path / "RESULTS.md"
    args = ["--n", "100", "--reps", "1", "--mem-sizes", "100,200"]
    args += ["--p2-concurrency", "1,15", "--results", str(results)]
    args += ["--pipe-n", "200"]
    args += ["--workdir", str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, str(RUN), *args],
        capture_output=True,
        text=True,
        timeout=290,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Goals:" in proc.stdout

    lines = results.read_text(encoding="utf-8").splitlines()
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[:2] == ["## Current figures", "## Machine"]
    current = _table(lines, "## Current figures")
    assert [g[0] for g in current[2:]] == GOAL_IDS
    machine = dict(row[:2] for row in _table(lines, "## Machine")[2:])
    for key in ("CPU", "cores", "RAM", "Python", "singer-sdk"):
        assert machine.get(key), key

    rows = _table(lines, "## Measurements")
    header = rows[0]
    assert header[:4] == ["id", "measurement", "records", "median wall s"]
    assert rows[1][0].startswith("---")
    body = rows[2:]
    assert {r[0] for r in body} == set(IDS)
    for row in body:
        assert len(row) == len(header), row
        measured = row[3] != ""
        explained = row[-1].startswith(("not available yet: ", "failed: ", "not run: "))
        assert measured != explained, row
    measured_baselines = {r[1] for r in body if r[3]}
    assert set(BASELINES) <= measured_baselines

    goals = _table(lines, "## Goals")[2:]
    assert [g[0] for g in goals] == GOAL_IDS
    assert all(len(g) == 5 for g in goals)
    assert goals == current[2:]
    # the pipelines ran at tiny N: each side measured on its own (CPU in the note)
    pipes = [r for r in body if r[0] in {"P6", "P7"} and "\\|" in r[1]]
    if TAP_SALESFORCE.exists():
        assert len(pipes) == 3, body
        for row in pipes:
            assert row[3], row
            assert "tap CPU" in row[-1], row
            assert "target CPU" in row[-1], row


def _parse_args(argv: list[str]):
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_args(argv)


def test_quick_bench_writes_a_scratch_file_not_the_committed_results(
    tmp_path: Path,
) -> None:
    quick = _parse_args(["--quick"])
    assert quick.results == ROOT / "bench" / "out" / "RESULTS-quick.md"
    assert _parse_args([]).results == ROOT / "bench" / "RESULTS.md"
    chosen = tmp_path / "elsewhere.md"
    assert _parse_args(["--quick", "--results", str(chosen)]).results == chosen
