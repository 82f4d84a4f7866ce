"""Crash and resume through Meltano: kill -9 target-clevertap mid-run, rerun the job.

In the isolated Meltano project (tests/e2e/conftest.py), a clean reference run of
`meltano run salesforce-to-clevertap` records what the CleverTap emulator holds.
Then, for each seeded kill point K, the CleverTap data, the target's state_dir
(event ledger, identity map) and Meltano's stored state are wiped, the emulator
gets some upload latency, and the job is started again; once the emulator has
logged K `/1/upload` calls, the target-clevertap process (a child of meltano) is
killed with SIGKILL. A plain `meltano run` follows, from whatever state Meltano
stored (an SDK target emits STATE only at full drains, so usually none: the rerun
re-extracts everything and the target's ledger must suppress what already
landed). Afterwards the emulator must hold exactly what the reference run left:
no profile or event lost, no event duplicated (by ct_event_key and by
identity + name + ts), and every record the target received accounted for in its
summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import subprocess
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import psutil
import pytest
from sandbox.clevertap.testing import CleverTapHandle
from sandbox.demo import meltano_env

from .conftest import MELTANO

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import MeltanoProject

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

JOB = "salesforce-to-clevertap"
TARGET = "target-clevertap"
STATE_ID = "sandbox:tap-salesforce-to-target-clevertap"
# Seeded kill points: /1/upload calls logged before the SIGKILL, once at least one
# event has landed (profiles of a window go first, and how uploads group into windows
# depends on timing). With the latency below a clean run makes about 13 uploads.
KILL_POINTS = (3, 9)
UPLOAD_LATENCY_MS = 400
SUMMARY = re.compile(r"Summary for stream (\S+): ")


@dataclasses.dataclass
class Holding:
    """What the CleverTap emulator holds, keyed for comparison."""

    profiles: dict[str, dict[str, Any]]
    events: Counter[tuple[str, str, int]]
    event_keys: Counter[str]

    def duplicated_events(self) -> int:
        """Events stored more than once, by ct_event_key or identity + name + ts."""
        return max(
            sum(c - 1 for c in self.event_keys.values()),
            sum(c - 1 for c in self.events.values()),
        )


@dataclasses.dataclass
class Reference:
    """A clean run from nothing: what it left in CleverTap, its log, its uploads."""

    holding: Holding
    output: str
    uploads: int


@dataclasses.dataclass
class Outcome:
    """One crash-and-resume cell."""

    kill_after: int
    uploads_at_kill: int
    killed: subprocess.CompletedProcess[str]
    events_at_kill: int
    ledger_after_kill: list[str]
    rerun: subprocess.CompletedProcess[str]
    holding: Holding


def _clevertap(project: MeltanoProject) -> CleverTapHandle:
    sandbox = project.sandbox
    handle = CleverTapHandle(
        base_url=f"https://127.0.0.1:{sandbox.ports['clevertap']}",
        account_id="SANDBOX-ACCOUNT",
        passcode="SANDBOX-PASSCODE",
        timezone="UTC",
        verify=str(sandbox.tls_dir / "ca.pem"),
    )
    handle.session.trust_env = False
    return handle


def _holding(clevertap: CleverTapHandle) -> Holding:
    profiles = {
        str(p["identity"]): p.get("profileData") or {} for p in clevertap.profiles()
    }
    events = clevertap.events()
    return Holding(
        profiles,
        Counter((str(e["identity"]), str(e["evtName"]), int(e["ts"])) for e in events),
        Counter(
            str(key)
            for e in events
            if (key := (e.get("evtData") or {}).get("ct_event_key"))
        ),
    )


def _state_dir(project: MeltanoProject) -> Path:
    """target-clevertap's state_dir in the project (meltano.yml sets it there)."""
    return project.root / ".meltano" / "state" / TARGET


def _uploads(clevertap: CleverTapHandle) -> int:
    return sum(1 for r in clevertap.requests_log() if r["path"] == "/1/upload")


def _fresh_start(project: MeltanoProject, clevertap: CleverTapHandle) -> None:
    """No CleverTap data, no target ledger, no Meltano state for the job."""
    clevertap.reset()
    shutil.rmtree(_state_dir(project), ignore_errors=True)
    cleared = project.run("state", "clear", "--force", STATE_ID, timeout=120)
    assert cleared.returncode == 0, (cleared.stdout + cleared.stderr)[-3000:]


def _summaries(output: str) -> dict[str, dict[str, Any]]:
    """The last `Summary for stream` line of each stream in Meltano's output."""
    decoder = json.JSONDecoder()
    found: dict[str, dict[str, Any]] = {}
    for match in SUMMARY.finditer(output):
        with contextlib.suppress(json.JSONDecodeError):
            found[match.group(1)] = decoder.raw_decode(output, match.end())[0]
    return found


def _unaccounted(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Streams whose received records are not all accepted, rejected or skipped."""
    return {
        stream: s
        for stream, s in summaries.items()
        if s["received"]
        != s["accepted"] + s["rejected"] + sum(s.get("skipped", {}).values())
    }


def _target_process(meltano: psutil.Process) -> psutil.Process | None:
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in meltano.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                if any(TARGET in part for part in child.cmdline()):
                    return child
    return None


def _kill_tree(meltano: psutil.Process) -> None:
    """SIGKILL the meltano process this test started and its plugin processes."""
    with contextlib.suppress(psutil.NoSuchProcess):
        for process in [*meltano.children(recursive=True), meltano]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def _run_and_kill(
    project: MeltanoProject, clevertap: CleverTapHandle, kill_after: int
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Start the job; SIGKILL target-clevertap once K uploads and an event landed."""
    env = meltano_env()
    env["MELTANO_AUTO_INSTALL"] = "false"
    argv = [str(MELTANO), "--environment=sandbox", "run", JOB]
    log = project.root / f"killed-run-{kill_after}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, cwd=project.root, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        meltano = psutil.Process(proc.pid)
        uploads = 0
        deadline = time.monotonic() + 150
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                uploads = _uploads(clevertap)
                if uploads >= kill_after and clevertap.events():
                    target = _target_process(meltano)
                    assert target is not None, "target-clevertap not found"
                    target.kill()
                    break
                time.sleep(0.05)
            returncode = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:  # only when something above failed
                _kill_tree(meltano)
                proc.wait(timeout=30)
    text = log.read_text()
    return subprocess.CompletedProcess(argv, returncode, text, ""), uploads


@pytest.fixture(scope="module")
def reference(meltano_project: MeltanoProject) -> Reference:
    """A clean run from nothing: what the emulator should hold afterwards."""
    clevertap = _clevertap(meltano_project)
    _fresh_start(meltano_project, clevertap)
    result = meltano_project.run("run", JOB, timeout=240)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return Reference(
        _holding(clevertap), result.stdout + result.stderr, _uploads(clevertap)
    )


@pytest.fixture(scope="module", params=KILL_POINTS, ids=lambda k: f"kill-after-{k}")
def outcome(
    request: pytest.FixtureRequest,
    meltano_project: MeltanoProject,
    reference: Reference,
) -> Outcome:
    """Kill the target after K uploads, then rerun `meltano run` normally."""
    del reference  # requested only so that the clean reference run comes first
    kill_after = int(request.param)
    clevertap = _clevertap(meltano_project)
    _fresh_start(meltano_project, clevertap)
    clevertap.fault("latency", ms=UPLOAD_LATENCY_MS, path="/1/upload")
    try:
        killed, uploads = _run_and_kill(meltano_project, clevertap, kill_after)
    finally:
        clevertap.clear_faults()
    events_at_kill = len(clevertap.events())
    ledger = sorted(p.name for p in _state_dir(meltano_project).glob("*"))
    rerun = meltano_project.run("run", JOB, timeout=240)
    return Outcome(
        kill_after,
        uploads,
        killed,
        events_at_kill,
        ledger,
        rerun,
        _holding(clevertap),
    )


def test_reference_run_accounts_for_every_record(reference: Reference) -> None:
    summaries = _summaries(reference.output)
    assert summaries, "no target summary in the reference run"
    assert _unaccounted(summaries) == {}
    assert reference.holding.profiles
    assert reference.holding.events
    assert reference.holding.duplicated_events() == 0
    # Each kill point must fall strictly inside the run.
    assert max(KILL_POINTS) < reference.uploads


def test_killed_run_fails_before_the_target_finishes(outcome: Outcome) -> None:
    output = outcome.killed.stdout
    assert outcome.killed.returncode != 0, output[-3000:]
    assert outcome.uploads_at_kill >= outcome.kill_after
    assert _summaries(output) == {}, "the target finished before the kill"
    assert "Loader failed" in output, output[-3000:]


def test_target_ledger_persists_in_the_project_across_runs(outcome: Outcome) -> None:
    # The state_dir was wiped before the killed run: the killed run wrote this
    # ledger, and the rerun used it to hold back events that had already landed.
    # Whether each landed event was held back is checked on what CleverTap holds
    # (the tests below), not on this counter.
    assert outcome.ledger_after_kill, "no ledger in the target's state_dir"
    assert outcome.events_at_kill > 0, "the kill landed before any event upload"
    summaries = _summaries(outcome.rerun.stdout + outcome.rerun.stderr)
    suppressed = sum(s["duplicates_suppressed"] for s in summaries.values())
    assert suppressed > 0, summaries


def test_rerun_after_kill_succeeds(outcome: Outcome) -> None:
    result = outcome.rerun
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_rerun_after_kill_loses_no_profile_or_event(
    outcome: Outcome, reference: Reference
) -> None:
    expected = reference.holding
    got = outcome.holding
    assert sorted(expected.profiles.keys() - got.profiles.keys()) == []
    changed = [
        key
        for key, data in expected.profiles.items()
        if key in got.profiles and got.profiles[key] != data
    ]
    assert changed == []
    assert expected.events - got.events == Counter()


def test_rerun_after_kill_duplicates_no_event(
    outcome: Outcome, reference: Reference
) -> None:
    expected = reference.holding
    got = outcome.holding
    assert got.duplicated_events() == 0
    assert got.events - expected.events == Counter()
    assert sorted(got.profiles.keys() - expected.profiles.keys()) == []


def test_rerun_after_kill_accounts_for_every_record(outcome: Outcome) -> None:
    summaries = _summaries(outcome.rerun.stdout + outcome.rerun.stderr)
    assert summaries, "no target summary in the rerun"
    assert _unaccounted(summaries) == {}
