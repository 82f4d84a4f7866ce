"""`meltano invoke target-salesforce:preflight` in a scratch Meltano project.

The command passes the settings with `--config ENV`; Meltano flattens an object
setting such as `streams` into dotted keys on the way, which the preflight undoes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from target_salesforce.preflight import streams_path
from target_salesforce.preflight_cli import unflatten

if TYPE_CHECKING:
    from tests.target_salesforce.conftest import Harness

REPO = Path(__file__).resolve().parents[2]
MELTANO = REPO / ".venv-meltano" / "bin" / "meltano"


def test_meltano_flattened_streams_are_rebuilt_with_dotted_field_names() -> None:
    flat = {
        "nps.object": "Contact",
        "nps.action": "update",
        "nps.fields.Id": "id",
        "nps.fields.Account.Name": "account",
        "nps.fields.Score__c.source": "score",
        "nps.fields.Score__c.type": "number",
        "nps.fields.Channel__c.map.push": "Push",
    }

    assert unflatten(flat, streams_path) == {
        "nps": {
            "object": "Contact",
            "action": "update",
            "fields": {
                "Id": "id",
                "Account.Name": "account",
                "Score__c": {"source": "score", "type": "number"},
                "Channel__c": {"map": {"push": "Push"}},
            },
        }
    }
    nested = {"nps": {"object": "Contact"}}
    assert unflatten(nested, streams_path) is nested


@pytest.mark.slow
@pytest.mark.skipif(not MELTANO.exists(), reason="no .venv-meltano (make install)")
def test_meltano_invoke_preflight_reads_meltano_yml_settings(
    harness: Harness, tmp_path: Path
) -> None:
    project = {
        "project_id": str(uuid.uuid4()),
        "send_anonymous_usage_stats": False,
        "plugins": {
            "loaders": [
                {
                    "name": "target-salesforce",
                    "namespace": "target_salesforce_clevertap",
                    "executable": str(
                        Path(sys.executable).with_name("target-salesforce")
                    ),
                    "commands": {"preflight": {"args": "--config ENV --preflight"}},
                    "settings": [
                        {"name": "access_token", "sensitive": True},
                        {"name": "instance_url"},
                        {"name": "mappings_file"},
                        {"name": "streams", "kind": "object"},
                    ],
                    "config": {
                        "access_token": harness.handle.access_token,
                        "instance_url": harness.handle.base_url,
                        "mappings_file": str(
                            REPO / "transforms/clevertap_to_salesforce.yml"
                        ),
                        "streams": {
                            "broken": {
                                "object": "Contact",
                                "action": "update",
                                "fields": {"Id": "id", "Missing__c": "x"},
                            }
                        },
                    },
                }
            ]
        },
    }
    (tmp_path / "meltano.yml").write_text(yaml.safe_dump(project, sort_keys=False))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "REQUESTS_CA_BUNDLE": harness.handle.ca_bundle,
    }

    result = subprocess.run(
        [str(MELTANO), "invoke", "target-salesforce:preflight"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stderr[-2000:]
    assert "PASS mappings: 10 stream mappings read" in lines
    assert any(
        line.startswith("FAIL field Contact.Missing__c: broken") for line in lines
    )
    assert lines[-1].endswith(" 1 failed")
