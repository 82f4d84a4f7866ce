"""`clevertap-to-duckdb`: CleverTap engagement into DuckDB through target-duckdb.

One journey: a first run, a rerun with nothing new, then one new event uploaded to
the CleverTap emulator and a third run. The warehouse is read with the DuckDB of the
`duckdb-views` utility venv (the test venv has no DuckDB).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests

from .conftest import REPO

if TYPE_CHECKING:
    from .conftest import MeltanoProject

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

JOB = "clevertap-to-duckdb"
EXTRACTOR = "tap-clevertap--warehouse"
DUCKDB_PYTHON = REPO / ".meltano" / "utilities" / "duckdb-views" / "venv" / "bin"
CLEVERTAP_AUTH = {
    "X-CleverTap-Account-Id": "SANDBOX-ACCOUNT",
    "X-CleverTap-Passcode": "SANDBOX-PASSCODE",
}
# What target-duckdb 0.8.0 plus the typed views make of each JSON Schema type.
INTEGER_TYPES = {"HUGEINT", "BIGINT", "INTEGER", "SMALLINT"}
_READ = """
import json, sys
import duckdb
with duckdb.connect(sys.argv[1], read_only=True) as db:
    out = {"counts": {}, "columns": {}, "duplicates": {}}
    for schema, table in db.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('clevertap', 'clevertap_raw')"
    ).fetchall():
        name = f'{schema}."{table}"'
        if schema == "clevertap_raw":
            count = db.execute(f"SELECT count(*) FROM {name}").fetchone()
            out["counts"][table] = count[0]
            cols = [c for (c,) in db.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'clevertap_raw' AND table_name = ?", [table]
            ).fetchall()]
            if "event_key" in cols:
                out["duplicates"][table] = db.execute(
                    f"SELECT count(*) - count(DISTINCT event_key) FROM {name}"
                ).fetchone()[0]
        else:
            out["columns"][table] = dict(db.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'clevertap' AND table_name = ?", [table]
            ).fetchall())
print(json.dumps(out))
"""


@dataclasses.dataclass
class Warehouse:
    """What the DuckDB file held after one run."""

    counts: dict[str, int]
    columns: dict[str, dict[str, str]]
    duplicates: dict[str, int]


@dataclasses.dataclass
class Journey:
    """The three runs and the tap's catalog."""

    results: list[subprocess.CompletedProcess[str]]
    first: Warehouse
    rerun: Warehouse
    after_new_event: Warehouse
    catalog: dict[str, Any]
    new_event_table: str


def _warehouse(project: MeltanoProject) -> Warehouse:
    out = subprocess.run(
        [
            str(DUCKDB_PYTHON / "python"),
            "-c",
            _READ,
            str(project.root / ".meltano" / "warehouse.duckdb"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    data = json.loads(out)
    return Warehouse(data["counts"], data["columns"], data["duplicates"])


def _upload_event(project: MeltanoProject, event_name: str, marker: str) -> None:
    env = project.sandbox.client_env()
    with requests.Session() as session:
        session.trust_env = False
        response = session.post(
            "https://eu1.api.clevertap.com/1/upload",
            json={
                "d": [
                    {
                        "identity": f"duckdb-{marker}",
                        "type": "event",
                        "evtName": event_name,
                        "ts": int(time.time()),
                        "evtData": {"Marker": marker},
                    }
                ]
            },
            headers=CLEVERTAP_AUTH,
            proxies={"https": env["HTTPS_PROXY"]},
            verify=env["REQUESTS_CA_BUNDLE"],
            timeout=30,
        )
    response.raise_for_status()
    assert response.json().get("status") == "success", response.text


def _catalog(project: MeltanoProject) -> dict[str, Any]:
    result = project.run("invoke", "--dump=catalog", EXTRACTOR)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def journey(meltano_project: MeltanoProject) -> Journey:
    results = [meltano_project.run("run", JOB)]
    first = _warehouse(meltano_project)
    results.append(meltano_project.run("run", JOB))
    rerun = _warehouse(meltano_project)
    catalog = _catalog(meltano_project)
    # the busiest event stream gets one more event
    events = {t: n for t, n in rerun.counts.items() if t.startswith("events_")}
    table = max(events, key=lambda t: events[t]) if events else "events_unknown"
    name = _raw_event_name(meltano_project, table)
    _upload_event(meltano_project, name, uuid.uuid4().hex[:12])
    results.append(meltano_project.run("run", JOB))
    return Journey(results, first, rerun, _warehouse(meltano_project), catalog, table)


_EVENT_NAME = """
import sys
import duckdb
with duckdb.connect(sys.argv[1], read_only=True) as db:
    table = sys.argv[2].replace('"', '""')
    query = 'SELECT any_value(event_name) FROM clevertap_raw."' + table + '"'
    print(db.execute(query).fetchone()[0])
"""


def _raw_event_name(project: MeltanoProject, table: str) -> str:
    """The event name as the warehouse stored it (column event_name)."""
    database = project.root / ".meltano" / "warehouse.duckdb"
    out = subprocess.run(
        [str(DUCKDB_PYTHON / "python"), "-c", _EVENT_NAME, str(database), table],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return out.strip()


def _expected_type(spec: dict[str, Any]) -> set[str]:
    types = _as_list(spec.get("type"))
    types += [t for s in spec.get("anyOf") or [] for t in _as_list(s.get("type"))]
    types = [t for t in types if t != "null"]
    by_format = {"date-time": {"TIMESTAMP"}, "date": {"DATE"}}
    expected = {"VARCHAR"}
    if "object" in types or "array" in types:
        expected = {"JSON"}
    elif spec.get("format") in by_format:
        expected = by_format[spec["format"]]
    elif "number" in types:
        expected = {"DOUBLE"}
    elif "integer" in types and "string" not in types:
        expected = INTEGER_TYPES
    elif types == ["boolean"]:
        expected = {"BOOLEAN"}
    return expected


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _selected(catalog: dict[str, Any]) -> dict[str, dict[str, Any]]:
    streams = {}
    for entry in catalog["streams"]:
        top: dict[str, Any] = next(
            (m["metadata"] for m in entry.get("metadata", []) if m["breadcrumb"] == []),
            {},
        )
        if top.get("selected"):
            streams[entry["tap_stream_id"]] = entry["schema"]
    return streams


def test_every_run_of_the_job_succeeds(journey: Journey) -> None:
    failed = [r.stderr[-3000:] for r in journey.results if r.returncode != 0]
    assert failed == []


def test_every_selected_stream_lands_as_a_typed_table(journey: Journey) -> None:
    streams = _selected(journey.catalog)
    assert "event_counts" in streams
    assert any(name.startswith("events_") for name in streams)
    assert sorted(journey.first.columns) == sorted(streams)
    wrong = {}
    for stream, schema in streams.items():
        columns = journey.first.columns[stream]
        for prop, spec in schema["properties"].items():
            got = columns.get(prop.lower())
            if got not in _expected_type(spec):
                wrong[f"{stream}.{prop}"] = (got, sorted(_expected_type(spec)))
    assert wrong == {}


def test_timestamps_numbers_and_dates_have_their_types(journey: Journey) -> None:
    columns = journey.first.columns
    events = [t for t in columns if t.startswith("events_")]
    assert all(columns[t]["ts"] == "TIMESTAMP" for t in events)
    assert columns["event_counts"]["date"] == "DATE"
    assert columns["event_counts"]["count"] in INTEGER_TYPES
    assert columns["event_trends"]["date"] == "DATE"


def _loaded_event_rows(result: subprocess.CompletedProcess[str]) -> int:
    """Event rows target-duckdb upserted in one run (from its log)."""
    pattern = r"Loading (\d+) rows into '[^']*\"(events_[^\"]+)\"'"
    return sum(int(n) for n, _ in re.findall(pattern, result.stderr))


def test_event_key_keeps_a_rerun_from_duplicating_rows(journey: Journey) -> None:
    assert journey.first.counts[journey.new_event_table] > 0
    # the rerun re-reads the lookback days: rows arrive again, none is added
    assert _loaded_event_rows(journey.results[1]) > 0
    assert journey.rerun.counts == journey.first.counts
    assert set(journey.rerun.duplicates.values()) == {0}


def test_a_later_run_adds_only_the_new_event(journey: Journey) -> None:
    before = {t: n for t, n in journey.rerun.counts.items() if t.startswith("events_")}
    after = {
        t: n
        for t, n in journey.after_new_event.counts.items()
        if t.startswith("events_")
    }
    expected = dict(before)
    expected[journey.new_event_table] += 1
    assert after == expected
    assert set(journey.after_new_event.duplicates.values()) == {0}
