"""Run with .venv-dagster's Python: load orchestrate/ and report as JSON on stdout.

    dagster_probe.py schedules PROJECT_ROOT
    dagster_probe.py run PROJECT_ROOT MELTANO_JOB

`schedules` lists the Dagster schedules built from PROJECT_ROOT/meltano.yml and
evaluates each once (a RunRequest for its job, or a SkipReason). `run` executes the
Dagster job of MELTANO_JOB in process (Dagster's own API) against the sandbox
environment and reports whether it succeeded and how long it took.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from orchestrate.meltano_dagster import (  # noqa: E402 - needs the repository on sys.path
    MeltanoResource,
    build_definitions,
    dagster_name,
)


def _definitions(root: Path) -> dg.Definitions:
    resource = MeltanoResource(
        project_root=str(root),
        executable=str(REPO / ".venv-meltano" / "bin" / "meltano"),
        environment="sandbox",
    )
    return build_definitions(root, meltano=resource)


def schedules(root: Path) -> list[dict[str, object]]:
    """Every schedule: name, cron, job, tags and what one evaluation asks for."""
    repository = _definitions(root).get_repository_def()
    out: list[dict[str, object]] = []
    with dg.DagsterInstance.local_temp() as instance:
        for schedule in repository.schedule_defs:
            context = dg.build_schedule_context(instance=instance)
            evaluated = schedule.evaluate_tick(context)
            out.append(
                {
                    "name": schedule.name,
                    "cron": schedule.cron_schedule,
                    "job": schedule.job_name,
                    "tags": dict(schedule.tags),
                    "run_requests": len(evaluated.run_requests or []),
                }
            )
    return out


def run(root: Path, meltano_job: str) -> dict[str, object]:
    """Execute one job in process; success, seconds and the op's output."""
    job = _definitions(root).resolve_job_def(dagster_name(meltano_job))
    started = time.monotonic()
    with dg.DagsterInstance.local_temp() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    wall = time.monotonic() - started
    failures = [
        str(event.message)
        for event in result.all_events
        if event.event_type_value == "STEP_FAILURE"
    ]
    return {
        "success": result.success,
        "wall_seconds": wall,
        "meltano_seconds": result.output_for_node(f"meltano_run_{job.name}")
        if result.success
        else None,
        "failures": failures,
    }


def main() -> int:
    """Dispatch on the first argument; print the JSON answer."""
    command, root = sys.argv[1], Path(sys.argv[2])
    answer: object = (
        schedules(root) if command == "schedules" else run(root, sys.argv[3])
    )
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
