"""Helpers for target-salesforce tests against the Salesforce emulator."""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from target_salesforce.bulk_client import BulkClient
from target_salesforce.target import TargetSalesforce

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "target_salesforce"

NPS_MAPPING: dict[str, Any] = {
    "object": "Contact",
    "external_id_field": "CleverTap_Id__c",
    "fields": {
        "CleverTap_Id__c": "identity",
        "LastName": "name",
        "Email": "email",
        "NPS_Score__c": "score",
        "Last_Engagement_Date__c": "ts",
    },
}

# The sample /ct/nps class of salesforce-org/, one call for the whole batch.
APEX_LIST = {
    "nps_feedback": {
        "mode": "apex",
        "apex": {
            "path": "ct/nps/feedback",
            "batching": "list",
            "list_key": "records",
            "payload": {"email": "{profile.email}", "npsScore": "{score}"},
        },
    }
}
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


@dataclasses.dataclass
class Run:
    """What one in-process run of the target left behind."""

    target: TargetSalesforce
    states: list[dict[str, Any]]
    error: BaseException | None
    rejects: list[dict[str, Any]]

    @property
    def summary(self) -> dict[str, Any]:
        return {k: v.as_dict() for k, v in self.target.run.summaries.items()}


class Harness:
    """The emulator handle plus helpers to configure and run the target."""

    def __init__(
        self, handle: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.handle = handle
        self.tmp_path = tmp_path
        self.capsys = capsys
        self.rejects_path = tmp_path / "rejects.jsonl"
        self.journal_path = tmp_path / "insert-journal.sqlite3"
        self.nps_mapping = NPS_MAPPING

    def config(self, **extra: Any) -> dict[str, Any]:
        """Direct token auth against the emulator, fast retries and polls."""
        config: dict[str, Any] = {
            "access_token": self.handle.access_token,
            "instance_url": self.handle.base_url,
            "rejects_path": str(self.rejects_path),
            "insert_journal_path": str(self.journal_path),
            "streams": {"nps": NPS_MAPPING},
            "retry_backoff_seconds": 0.001,
            "bulk_poll_interval": 0.01,
        }
        config.update(extra)
        return config

    @staticmethod
    def fixture(name: str, **replace: str) -> str:
        text = (FIXTURES / name).read_text(encoding="utf-8")
        for old, new in replace.items():
            text = text.replace(old, new)
        return text

    def run(self, config: dict[str, Any], text: str) -> Run:
        """Run the target in-process; collect STATE lines and rejects."""
        self.capsys.readouterr()
        target = TargetSalesforce(config=config, parse_env_config=False)
        error: BaseException | None = None
        try:
            target.listen(file_input=io.StringIO(text))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            # Keep type and message only: the traceback pins HTTP responses (and
            # so their keep-alive connections), which slows the emulator's stop.
            try:
                error = type(exc)(*exc.args)
            except TypeError:
                error = RuntimeError(f"{type(exc).__name__}: {exc}")
            del exc
        finally:
            target.run.close()
            gc.collect()
        out = self.capsys.readouterr().out
        states = [json.loads(line) for line in out.splitlines() if line.strip()]
        path = Path(config["rejects_path"])
        rejects = (
            [json.loads(line) for line in path.read_text().splitlines()]
            if path.exists()
            else []
        )
        return Run(target, states, error, rejects)

    def run_cli(
        self, config: dict[str, Any], text: str
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed CLI as Meltano would, on `text` as input."""
        config_path = self.tmp_path / "config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        input_path = self.tmp_path / "input.singer"
        input_path.write_text(text, encoding="utf-8")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().startswith(
                ("TARGET_SALESFORCE_", "HTTPS_PROXY", "HTTP_PROXY")
            )
        }
        env["REQUESTS_CA_BUNDLE"] = self.handle.ca_bundle
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "target_salesforce",
                "--config",
                str(config_path),
                "--input",
                str(input_path),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    def before_bulk_job(
        self, monkeypatch: pytest.MonkeyPatch, number: int, arm: Callable[[], None]
    ) -> list[int]:
        """Call `arm()` (a fault, say) just before the `number`-th Bulk upload's job.

        Returns:
            One entry per upload sent through `BulkClient.ingest` (filled as it goes).
        """
        original = BulkClient.ingest
        jobs: list[int] = []

        def ingest(client: BulkClient, *args: Any, **kw: Any) -> Any:
            jobs.append(len(jobs) + 1)
            if len(jobs) == number:
                arm()
            return original(client, *args, **kw)

        monkeypatch.setattr(BulkClient, "ingest", ingest)
        return jobs

    def on_bulk_abort(
        self, monkeypatch: pytest.MonkeyPatch, arm: Callable[[], None]
    ) -> None:
        """Call `arm()` whenever a Bulk job is aborted (PATCH state Aborted)."""
        original = BulkClient._raw

        def raw(client: BulkClient, sf: Any, method: str, url: str, **kw: Any) -> Any:
            if kw.get("json") == {"state": "Aborted"}:
                arm()
            return original(client, sf, method, url, **kw)

        monkeypatch.setattr(BulkClient, "_raw", raw)

    def ingest_jobs(self) -> list[dict[str, Any]]:
        """Every Bulk 2.0 ingest job the emulator holds (`GET jobs/ingest`)."""
        url = f"{self.handle.base_url}/services/data/v62.0/jobs/ingest"
        headers = {"Authorization": f"Bearer {self.handle.access_token}"}
        answer = self.handle.session().get(url, headers=headers, timeout=10).json()
        return list(answer["records"])

    def contact(self, ext_id: str) -> dict[str, Any] | None:
        rows = [
            r
            for r in self.handle.live_records("Contact")
            if r.get("CleverTap_Id__c") == ext_id
        ]
        assert len(rows) <= 1
        return rows[0] if rows else None

    def login_config(self, flow: str, **extra: Any) -> dict[str, Any]:
        """A config for one login flow (no access token)."""
        handle = self.handle
        config = self.config()
        del config["access_token"], config["instance_url"]
        config["auth_flow"] = flow
        if flow == "refresh_token":
            config.update(
                client_id=handle.client_id,
                client_secret=handle.client_secret,
                refresh_token=handle.refresh_token,
            )
        elif flow == "jwt":
            config.update(
                client_id=handle.client_id,
                username=handle.username,
                private_key=handle.jwt_private_key_pem.decode(),
            )
        elif flow == "client_credentials":
            config.update(
                client_id=handle.client_id,
                client_secret=handle.client_secret,
                domain="acme.my",
            )
        elif flow == "password":
            config.update(
                username=handle.username,
                password=handle.password,
                security_token=handle.security_token,
            )
        config.update(extra)
        return config

    def writes(self) -> list[dict[str, Any]]:
        """Logged requests that could change data (not GETs, not logins)."""
        return [
            r
            for r in self.handle.requests_log()
            if str(r.get("method", "")).upper() != "GET"
            and "oauth2" not in str(r.get("path", ""))
        ]


@pytest.fixture(scope="session")
def real_errors() -> dict[str, Any]:
    """Recorded real Salesforce answers (tests/fixtures/.../real_api_errors.json)."""
    data: dict[str, Any] = json.loads(
        (FIXTURES / "real_api_errors.json").read_text(encoding="utf-8")
    )
    return data


@pytest.fixture
def harness(
    salesforce_emulator: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    """The seeded emulator, trusted through REQUESTS_CA_BUNDLE, no proxy."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", salesforce_emulator.ca_bundle)
    return Harness(salesforce_emulator, tmp_path, capsys)


@pytest.fixture
def login_harness(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    """The harness with the CONNECT proxy in front of the real login hostnames."""
    from sandbox.proxy import running_proxy  # noqa: PLC0415 - only for login tests

    address = ("127.0.0.1", harness.handle.port)
    routes = {
        "login.salesforce.com": address,
        "test.salesforce.com": address,
        "*.my.salesforce.com": address,
    }
    with running_proxy(routes) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield harness
