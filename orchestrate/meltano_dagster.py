"""Dagster jobs and schedules built from meltano.yml's `jobs:` and `schedules:`.

Thin definitions on Dagster's public API (no Meltano-specific Dagster package):
each Meltano job becomes a Dagster job with one op that runs
`meltano --environment=<env> run <job>` in the project; each Meltano schedule
becomes a Dagster schedule on the same cron expression. A schedule tick is skipped
while a run of the same job is still queued or running: two copies of one job
would share a state ID (docs/scaling.md).

docs/scaling.md ("Schedules on Dagster") says why this and not dagster-meltano.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import yaml

if TYPE_CHECKING:
    import logging

REPO = Path(__file__).resolve().parents[1]
# Meltano's interval presets (the values `meltano schedule list --format=json` shows
# as cron_interval); anything else in `interval` is already a cron expression.
PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# Lines of Meltano's output kept in the Dagster log when a run fails.
_TAIL_LINES = 40


def dagster_name(meltano_name: str) -> str:
    """A Dagster-legal name (letters, digits, underscores) for a Meltano name."""
    return re.sub(r"\W", "_", meltano_name)


def cron(interval: str) -> str:
    """The cron expression of a Meltano schedule interval."""
    return PRESETS.get(interval, interval)


class MeltanoResource(dg.ConfigurableResource):
    """Where the Meltano project is and how to run it."""

    project_root: str = str(REPO)
    executable: str = str(REPO / ".venv-meltano" / "bin" / "meltano")
    environment: str = ""

    def run_job(self, job: str, log: logging.Logger) -> float:
        """Run `meltano run JOB`; its wall time. Raises dg.Failure when it fails."""
        command = [self.executable]
        if self.environment:
            command.append(f"--environment={self.environment}")
        command += ["run", job]
        started = time.monotonic()
        try:
            result = subprocess.run(  # noqa: S603 - a fixed executable and a job name
                command,
                cwd=self.project_root,
                capture_output=True,
                text=True,
                check=False,
                env=dict(os.environ),
            )
        except OSError as exc:
            msg = f"cannot start {self.executable} in {self.project_root}: {exc}"
            raise dg.Failure(description=msg) from exc
        elapsed = time.monotonic() - started
        output = (result.stdout + result.stderr).splitlines()
        if result.returncode != 0:
            tail = "\n".join(output[-_TAIL_LINES:])
            msg = f"meltano run {job}: rc={result.returncode} after {elapsed:.1f}s"
            raise dg.Failure(description=msg, metadata={"output_tail": tail})
        log.info("meltano run %s: succeeded in %.1fs", job, elapsed)
        return elapsed


def _job(meltano_job: str) -> dg.JobDefinition:
    name = dagster_name(meltano_job)

    # Dagster reads these annotations unevaluated, and this module's postponed
    # (string) annotations fail its context-type check: the parameter stays bare.
    @dg.op(name=f"meltano_run_{name}", required_resource_keys={"meltano"})
    def run_meltano_job(context):  # noqa: ANN001, ANN202 - see the comment above
        meltano: MeltanoResource = context.resources.meltano
        elapsed = meltano.run_job(meltano_job, context.log)
        return dg.Output(elapsed, metadata={"seconds": elapsed})

    @dg.job(name=name, tags={"meltano/job": meltano_job})
    def meltano_job_graph() -> None:
        run_meltano_job()

    return meltano_job_graph


def _schedule(
    entry: dict[str, Any], job: dg.JobDefinition, status: dg.DefaultScheduleStatus
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=dagster_name(str(entry["name"])),
        cron_schedule=cron(str(entry["interval"])),
        job=job,
        default_status=status,
        tags={"meltano/schedule": str(entry["name"])},
    )
    def tick(context):  # noqa: ANN001, ANN202 - unevaluated annotations, as above
        active = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=job.name, statuses=_ACTIVE), limit=1
        )
        if active:
            return dg.SkipReason(f"{job.name} is still running ({active[0].run_id})")
        return dg.RunRequest()

    return tick


def build_definitions(
    project_root: Path = REPO, *, meltano: MeltanoResource | None = None
) -> dg.Definitions:
    """Dagster definitions for every job and schedule in PROJECT_ROOT/meltano.yml.

    Schedules start stopped (turn them on in Dagster's UI or with
    `dagster schedule start`) unless DAGSTER_MELTANO_SCHEDULES=running.
    """
    project = yaml.safe_load((project_root / "meltano.yml").read_text())
    jobs = {str(j["name"]): _job(str(j["name"])) for j in project.get("jobs") or []}
    running = os.environ.get("DAGSTER_MELTANO_SCHEDULES") == "running"
    status = (
        dg.DefaultScheduleStatus.RUNNING
        if running
        else dg.DefaultScheduleStatus.STOPPED
    )
    schedules = [
        _schedule(entry, jobs[str(entry["job"])], status)
        for entry in project.get("schedules") or []
        if entry.get("job") in jobs
    ]
    resource = meltano or MeltanoResource(
        project_root=str(project_root),
        environment=os.environ.get("MELTANO_ENVIRONMENT", ""),
    )
    return dg.Definitions(
        jobs=list(jobs.values()),
        schedules=schedules,
        resources={"meltano": resource},
    )
