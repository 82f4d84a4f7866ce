"""The demo's pieces that do not need Meltano: environment, report inputs, checks."""

from __future__ import annotations

import collections
import io
import json
import re
from typing import TYPE_CHECKING

import pytest
from sandbox.demo import (
    CleverTapSnapshot,
    DemoError,
    find_meltano,
    joined_profiles,
    meltano_env,
    meltano_proxy_port,
    new_not_linked,
    new_rejects,
    rejects_sizes,
    run_demo,
    target_summaries,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_meltano_never_sees_proxy_or_ca_variables() -> None:
    env = meltano_env(
        {
            "PATH": "/usr/bin",
            "HTTPS_PROXY": "http://127.0.0.1:8903",
            "https_proxy": "http://127.0.0.1:8903",
            "NO_PROXY": "127.0.0.1",
            "REQUESTS_CA_BUNDLE": "/x/bundle.pem",
        }
    )

    assert env == {"PATH": "/usr/bin", "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}


def test_only_rejects_appended_during_the_run_are_counted_by_reason(
    tmp_path: Path,
) -> None:
    rejects = tmp_path / "output" / "rejects"
    rejects.mkdir(parents=True)
    old = {"stream": "Contact", "code": "OLD", "message": "before", "record": {}}
    path = rejects / "target-clevertap.jsonl"
    path.write_text(json.dumps(old) + "\n")
    before = rejects_sizes(tmp_path)
    secret_record = {"Email": "person@example.com"}
    with path.open("a") as handle:
        for _ in range(2):
            entry = {
                "stream": "Contact",
                "code": 515,
                "message": "Email is not valid",
                "record": secret_record,
            }
            handle.write(json.dumps(entry) + "\n")
        handle.write("not json\n")

    counted = new_rejects(tmp_path, before)

    assert counted == {
        "target-clevertap": collections.Counter(
            {"Contact: 515 Email is not valid": 2, "unreadable rejects line": 1}
        )
    }
    assert "person@example.com" not in repr(counted)


def test_clevertap_snapshot_diff_counts_new_and_updated_profiles_and_events() -> None:
    before = CleverTapSnapshot(
        {"a": "1", "b": "1"}, collections.Counter({"Charged": 2})
    )
    after = CleverTapSnapshot(
        {"a": "1", "b": "2", "c": "2"},
        collections.Counter({"Charged": 3, "Case Created": 4}),
    )

    assert after.new_profiles(before) == 1
    assert after.updated_profiles(before) == 1
    assert after.new_events(before) == {"Charged": 1, "Case Created": 4}


def test_missing_meltano_points_at_its_own_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(DemoError, match=re.escape("python3.11 -m venv .venv-meltano")):
        find_meltano(tmp_path)


def test_proxy_port_is_read_from_the_sandbox_environment(tmp_path: Path) -> None:
    (tmp_path / "meltano.yml").write_text(
        "environments:\n- name: sandbox\n  env:\n"
        "    HTTPS_PROXY: http://127.0.0.1:9911\n"
    )

    assert meltano_proxy_port(tmp_path) == 9911


def test_demo_refuses_a_proxy_port_that_meltano_yml_does_not_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "meltano.yml").write_text(
        "env:\n  HTTPS_PROXY: http://127.0.0.1:8903\n"
    )
    meltano = tmp_path / ".venv-meltano" / "bin" / "meltano"
    meltano.parent.mkdir(parents=True)
    meltano.write_text("")  # only needs to exist: the check comes first
    monkeypatch.setenv("SANDBOX_PROXY_PORT", "9999")
    out = io.StringIO()

    assert run_demo(tmp_path, out) == 1
    assert "SANDBOX_PROXY_PORT is 9999" in out.getvalue()
    assert not (tmp_path / ".sandbox").exists()


def test_not_linked_records_are_counted_apart_from_rejects(tmp_path: Path) -> None:
    rejects = tmp_path / "output" / "rejects"
    rejects.mkdir(parents=True)
    not_linked = rejects / "target-salesforce.not-linked.jsonl"
    before = rejects_sizes(tmp_path)
    lines = [
        {"stream": "profiles", "code": "NOT_LINKED", "record": {"identity": "a"}},
        {"stream": "profiles", "code": "NOT_LINKED", "record": {"identity": "b"}},
        {"stream": "events_nps_submitted", "code": "NOT_LINKED", "record": {}},
    ]
    not_linked.write_text("".join(json.dumps(line) + "\n" for line in lines))

    assert new_rejects(tmp_path, before) == {}
    assert new_not_linked(tmp_path, before) == {
        not_linked: collections.Counter({"profiles": 2, "events_nps_submitted": 1})
    }


def test_joined_profiles_are_read_from_this_runs_target_summaries(
    tmp_path: Path,
) -> None:
    log = tmp_path / "salesforce-to-clevertap.log"
    old = {"received": 3, "joined_existing_profiles": 9, "identity_lookups": 9}
    log.write_text(f"2026-01-01 [info] Summary for stream Contact: {json.dumps(old)}\n")
    offset = log.stat().st_size
    contact = {"received": 5, "joined_existing_profiles": 2, "identity_lookups": 4}
    lead = {"received": 2, "joined_existing_profiles": 1, "identity_lookups": 2}
    task = {"received": 7}
    with log.open("a") as handle:
        for stream, summary in (("Contact", contact), ("Lead", lead), ("Task", task)):
            handle.write(
                f"2026-01-02 [info] Summary for stream {stream}: "
                f"{json.dumps(summary)} cmd_type=elb consumer=True\n"
            )
    summaries = target_summaries(log, offset)
    assert summaries == {"Contact": contact, "Lead": lead, "Task": task}
    assert joined_profiles(summaries) == (3, 6)
    assert target_summaries(tmp_path / "missing.log") == {}
