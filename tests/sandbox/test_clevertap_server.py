"""The CleverTap emulator as a server: restart persistence, CLI, TLS, SQLite file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest
import requests
from sandbox.clevertap import create_app
from sandbox.clevertap.testing import running_emulator
from sandbox.server import free_port
from starlette.applications import Starlette

RECORDS = {
    "d": [
        {
            "type": "profile",
            "identity": "p1",
            "ts": 1_704_067_200,
            "profileData": {"Name": "P"},
        },
        {"type": "event", "identity": "p1", "ts": 1_704_067_200, "evtName": "Kept"},
    ]
}


def test_create_app_returns_a_starlette_app_with_a_temporary_db() -> None:
    app = create_app()
    assert isinstance(app, Starlette)


def test_data_survives_a_restart_on_the_same_db(tmp_path) -> None:
    db = tmp_path / "persist.db"
    with running_emulator(db_path=db) as first:
        assert first.api_post("/1/upload", RECORDS).json()["processed"] == 2
        object_id = first.profiles()[0]["objectId"]
        cursor = first.api_post(
            "/1/events.json?batch_size=10",
            {"event_name": "Kept", "from": 20240101, "to": 20240101},
        ).json()["cursor"]
    with running_emulator(db_path=db) as second:
        assert second.profiles()[0]["objectId"] == object_id
        assert [e["evtName"] for e in second.events()] == ["Kept"]
        page = second.api_get(f"/1/events.json?cursor={cursor}").json()
        assert len(page["records"]) == 1
        assert second.api_post("/1/upload", RECORDS).json()["processed"] == 2
        assert len(second.events()) == 2
        assert len(second.profiles()) == 1


def test_sqlite_file_can_be_inspected(tmp_path) -> None:
    db = tmp_path / "inspect.db"
    with running_emulator(db_path=db) as ct:
        ct.api_post("/1/upload", RECORDS)
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT identity, evt_name FROM events").fetchall()
        assert rows == [("p1", "Kept")]


def test_plugin_config_and_health_never_show_more_than_needed(tmp_path) -> None:
    with running_emulator(
        db_path=tmp_path / "c.db", account_id="ACC", passcode="SECRET"
    ) as ct:
        assert ct.plugin_config() == {
            "account_id": "ACC",
            "passcode": "SECRET",
            "api_url": ct.base_url,
        }
        assert ct.base_url.startswith("http://127.0.0.1:")
        health = requests.get(ct.base_url + "/_sandbox/health", timeout=5).json()
        assert health["account_id"] == "ACC"
        assert "SECRET" not in str(health)
        assert ct.api_post("/1/upload", RECORDS).json()["status"] == "success"


def test_serves_https_with_the_test_ca(tmp_path, tls_files) -> None:
    with running_emulator(db_path=tmp_path / "tls.db", tls_files=tls_files) as ct:
        assert ct.base_url.startswith("https://127.0.0.1:")
        assert ct.api_post("/1/upload", RECORDS).json()["processed"] == 2
        ct.fault("reset")
        with pytest.raises(requests.ConnectionError):
            ct.api_post("/1/upload", RECORDS)
        assert len(ct.events()) == 1


def _wait_for(url: str, proc: subprocess.Popen[bytes]) -> requests.Response:
    deadline = time.monotonic() + 20
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_cli_serves_on_the_given_port(tmp_path) -> None:
    port = free_port()
    db = tmp_path / "cli.db"
    cmd = [
        sys.executable,
        "-m",
        "sandbox",
        "clevertap",
        "--port",
        str(port),
        "--db",
        str(db),
        "--account-id",
        "CLI-ACC",
        "--passcode",
        "CLI-PASS",
        "--timezone",
        "Europe/Paris",
        "--seed",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        health = _wait_for(base + "/_sandbox/health", proc).json()
        assert health["account_id"] == "CLI-ACC"
        assert health["timezone"] == "Europe/Paris"
        headers = {
            "X-CleverTap-Account-Id": "CLI-ACC",
            "X-CleverTap-Passcode": "CLI-PASS",
        }
        schema = requests.get(
            base + "/getSchema?type=events", headers=headers, timeout=5
        )
        assert "Charged" in {e["name"] for e in schema.json()["events"]}
        denied = requests.get(base + "/getSchema?type=events", timeout=5)
        assert denied.status_code == 401
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=15)
    assert b"CLI-PASS" not in stderr
    assert db.exists()


def test_cli_tls_serves_https_with_the_sandbox_ca(tmp_path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "sandbox", "clevertap", "--port", str(port), "--tls"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        ca = tmp_path / ".sandbox" / "tls" / "ca.pem"
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = requests.get(
                    f"https://127.0.0.1:{port}/_sandbox/health",
                    verify=str(ca),
                    timeout=2,
                )
                break
            except (requests.ConnectionError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert reply.json()["account_id"] == "SANDBOX-ACCOUNT"
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
