"""`make demo` runs each plugin's preflight first and shows its lines."""

from __future__ import annotations

import io
import os
import stat
from typing import TYPE_CHECKING

from sandbox.demo import PREFLIGHTS, Demo, preflight_lines

if TYPE_CHECKING:
    from pathlib import Path


def test_preflight_lines_keep_the_checks_and_summary_only() -> None:
    text = (
        "2026-01-01T00:00:00Z [info] Parsing 'passcode' config from env variable\n"
        "PASS login: session on https://x\n"
        "FAIL field Contact.X__c: missing -> fix: deploy\n"
        "WARN duplicate rules Lead: active\n"
        "preflight: 1 passed, 1 failed\n"
    )

    assert preflight_lines(text) == [
        "PASS login: session on https://x",
        "FAIL field Contact.X__c: missing -> fix: deploy",
        "WARN duplicate rules Lead: active",
        "preflight: 1 passed, 1 failed",
    ]


def test_demo_invokes_every_preflight_in_the_sandbox_environment_and_shows_it(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls.txt"
    meltano = tmp_path / "meltano"
    meltano.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'echo "[info] noise"\n'
        'case "$3" in target-salesforce:preflight) '
        'echo "FAIL object CleverTap_Engagement__c: missing -> fix: deploy"; '
        'echo "preflight: 0 passed, 1 failed"; exit 1;; esac\n'
        'echo "PASS credentials and region: ok"\n'
        'echo "preflight: 1 passed, 0 failed"\n'
    )
    meltano.chmod(meltano.stat().st_mode | stat.S_IEXEC)
    out = io.StringIO()
    demo = Demo(tmp_path, out)

    code = demo._preflights(meltano, dict(os.environ))

    assert code == 1
    assert calls.read_text().splitlines() == [
        f"--environment=sandbox invoke {plugin}:preflight" for plugin in PREFLIGHTS
    ]
    shown = out.getvalue()
    assert "   PASS credentials and region: ok" in shown
    assert "   FAIL object CleverTap_Engagement__c: missing -> fix: deploy" in shown
    assert "noise" not in shown
