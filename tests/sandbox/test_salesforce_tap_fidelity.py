"""The real singer-io tap-salesforce 2.8.1, unmodified, against the emulator.

The tap hard-codes https://login.salesforce.com, so it runs through the sandbox
CONNECT proxy with only HTTPS_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE set; the token
endpoint hands out https://sandbox.my.salesforce.com, which the proxy also routes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sandbox.proxy import running_proxy
from sandbox.salesforce.schema import OBJECTS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sandbox.salesforce.testing import SalesforceHandle

ROOT = Path(__file__).resolve().parents[2]
TAP = ROOT / ".venv-tap-salesforce" / "bin" / "tap-salesforce"
INSTANCE_URL = "https://sandbox.my.salesforce.com"
REST_STREAMS = (
    "Contact",
    "Account",
    "Lead",
    "Campaign",
    "CleverTap_Engagement__c",
    "CaseHistory",
    "Opportunity",
    "OpportunityFieldHistory",
    "Task",
)
BULK_STREAMS = ("Contact", "Lead", "CampaignMember", "OpportunityHistory")

pytestmark = pytest.mark.slow


@pytest.fixture
def tap() -> Path:
    if not TAP.exists():
        pytest.fail(
            f"tap-salesforce is not installed at {TAP}. Create it with: python3.11 -m "
            "venv .venv-tap-salesforce && .venv-tap-salesforce/bin/pip install "
            "tap-salesforce==2.8.1"
        )
    return TAP


@pytest.fixture
def org(make_salesforce_emulator: Callable[..., Any]) -> Iterator[tuple[Any, Any]]:
    # Ten records a page: every stream of the small org spans several pages.
    handle = make_salesforce_emulator(instance_url=INSTANCE_URL, query_page_size=10)
    routes = {
        "login.salesforce.com": ("127.0.0.1", handle.port),
        "*.my.salesforce.com": ("127.0.0.1", handle.port),
    }
    with running_proxy(routes) as proxy:
        yield handle, proxy


def _run_tap(
    tap: Path, proxy: Any, handle: SalesforceHandle, tmp: Path, *args: str
) -> list[dict[str, Any]]:
    """Run the tap; the parsed output (one catalog, or the Singer messages)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        HTTPS_PROXY=proxy.url,
        NO_PROXY="127.0.0.1,localhost",
        REQUESTS_CA_BUNDLE=handle.ca_bundle,
    )
    env.pop("CURL_CA_BUNDLE", None)
    done = subprocess.run(
        [str(tap), "--config", str(tmp / "config.json"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    if "--discover" in args:
        return [json.loads(done.stdout)]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _write_config(handle: SalesforceHandle, tmp: Path, api_type: str) -> None:
    config = {
        "client_id": handle.client_id,
        "client_secret": handle.client_secret,
        "refresh_token": handle.refresh_token,
        "start_date": "2000-01-01T00:00:00Z",
        "api_type": api_type,
        "select_fields_by_default": True,
    }
    (tmp / "config.json").write_text(json.dumps(config))


def _select(catalog: dict[str, Any], streams: tuple[str, ...]) -> dict[str, Any]:
    chosen = []
    for entry in catalog["streams"]:
        if entry["stream"] not in streams:
            continue
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                meta = item["metadata"]
                meta["selected"] = True
                keys = meta.get("valid-replication-keys")
                if keys:
                    meta["replication-method"] = "INCREMENTAL"
                    meta["replication-key"] = keys[0]
                else:
                    meta["replication-method"] = "FULL_TABLE"
        chosen.append(entry)
    return {"streams": chosen}


def _sync(
    tap: Path,
    org: tuple[SalesforceHandle, Any],
    tmp: Path,
    api_type: str,
    streams: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Discover, select `streams` (in `tmp/properties.json`) and sync them."""
    handle, proxy = org
    _write_config(handle, tmp, api_type)
    catalog = _run_tap(tap, proxy, handle, tmp, "--discover")[0]
    properties = tmp / "properties.json"
    properties.write_text(json.dumps(_select(catalog, streams)))
    return _run_tap(tap, proxy, handle, tmp, "--properties", str(properties))


def _tap_datetime(value: str) -> str:
    """The tap's normalisation of a date or date-time: `%Y-%m-%dT%H:%M:%S.%fZ`."""
    parsed = dt.datetime.fromisoformat(value.replace("+0000", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expected(stream: str, row: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    sobject = OBJECTS[stream]
    out: dict[str, Any] = {}
    for field in sobject.fields:
        if field.name not in fields:
            continue
        value = row.get(field.name)
        if value is not None and field.type in {"datetime", "date"}:
            value = _tap_datetime(value)
        out[field.name] = value
    return out


def _records(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        if message["type"] == "RECORD":
            by_stream.setdefault(message["stream"], []).append(message["record"])
    return by_stream


def _assert_same_rows(
    handle: SalesforceHandle, stream: str, emitted: list[dict[str, Any]], *, bulk: bool
) -> None:
    every_field = {
        f.name for f in OBJECTS[stream].fields if not (bulk and f.type == "address")
    }
    stored = {r["Id"]: r for r in handle.records(stream)}
    assert len(emitted) == len(stored), stream
    assert {r["Id"] for r in emitted} == set(stored), stream
    for record in emitted:
        assert set(record) == every_field, stream
        expected = _expected(stream, stored[record["Id"]], set(record))
        assert record == expected, (stream, record["Id"])


def test_discover_lists_every_object_with_salesforce_types(
    tap: Path, org: tuple[Any, Any], tmp_path: Path
) -> None:
    handle, proxy = org
    _write_config(handle, tmp_path, "REST")
    catalog = _run_tap(tap, proxy, handle, tmp_path, "--discover")[0]
    streams = {entry["stream"]: entry for entry in catalog["streams"]}
    assert set(streams) == set(OBJECTS)
    contact = streams["Contact"]
    props = contact["schema"]["properties"]
    assert props["MailingAddress"]["type"] == ["null", "object"]
    assert props["NPS_Score__c"]["type"] == ["null", "number"]
    assert props["HasOptedOutOfEmail"]["type"] == ["null", "boolean"]
    root = next(m for m in contact["metadata"] if m["breadcrumb"] == [])["metadata"]
    assert root["valid-replication-keys"] == ["SystemModstamp"]
    history = streams["CaseHistory"]["metadata"]
    history_root = next(m for m in history if m["breadcrumb"] == [])["metadata"]
    assert history_root["valid-replication-keys"] == ["CreatedDate"]
    # The tap reached the emulator through the proxy, on the real hostnames.
    paths = [r["path"] for r in handle.requests_log()]
    assert paths[0] == "/services/oauth2/token"
    assert "/services/data/v61.0/sobjects" in paths


def test_rest_sync_emits_the_seeded_rows_field_by_field(
    tap: Path, org: tuple[Any, Any], tmp_path: Path
) -> None:
    handle, _proxy = org
    messages = _sync(tap, org, tmp_path, "REST", REST_STREAMS)
    records = _records(messages)
    assert set(records) == set(REST_STREAMS)
    for stream in REST_STREAMS:
        _assert_same_rows(handle, stream, records[stream], bulk=False)
    # Paging went through nextRecordsUrl (a queryAll's next page is under
    # `query/`, as Salesforce sends it), and the bookmark is the newest
    # SystemModstamp.
    log = handle.requests_log()
    assert any("/query/01g" in r["path"] for r in log)
    state = next(m for m in reversed(messages) if m["type"] == "STATE")["value"]
    newest = max(r["SystemModstamp"] for r in handle.records("Contact"))
    assert state["bookmarks"]["Contact"]["SystemModstamp"] == _tap_datetime(newest)


def test_bulk_sync_emits_the_seeded_rows_without_polling_delay(
    tap: Path, org: tuple[Any, Any], tmp_path: Path
) -> None:
    handle, _proxy = org
    messages = _sync(tap, org, tmp_path, "BULK", BULK_STREAMS)
    records = _records(messages)
    assert set(records) == set(BULK_STREAMS)
    for stream in BULK_STREAMS:
        _assert_same_rows(handle, stream, records[stream], bulk=True)
    # Compound address fields are not queried in BULK mode, as with Salesforce.
    assert "MailingAddress" not in records["Contact"][0]
    paths = [r["path"] for r in handle.requests_log()]
    assert any(p.startswith("/services/async/61.0/job/") for p in paths)


def test_incremental_rest_run_picks_up_only_changed_records(
    tap: Path, org: tuple[Any, Any], tmp_path: Path
) -> None:
    handle, proxy = org
    first = _sync(tap, org, tmp_path, "REST", ("Contact",))
    state = next(m for m in reversed(first) if m["type"] == "STATE")["value"]
    (tmp_path / "state.json").write_text(json.dumps(state))
    contact = handle.records("Contact")[3]
    session = handle.session()
    response = session.patch(
        f"{handle.base_url}/services/data/v61.0/sobjects/Contact/{contact['Id']}",
        json={"Title": "Chief Listener"},
        headers={"Authorization": f"Bearer {handle.access_token}"},
        timeout=10,
    )
    assert response.status_code == 204
    second = _run_tap(
        tap,
        proxy,
        handle,
        tmp_path,
        "--properties",
        str(tmp_path / "properties.json"),
        "--state",
        str(tmp_path / "state.json"),
    )
    changed = _records(second)["Contact"]
    # The bookmark is inclusive (>=), so the record at the old bookmark comes again.
    assert contact["Id"] in {r["Id"] for r in changed}
    assert next(r for r in changed if r["Id"] == contact["Id"])["Title"] == (
        "Chief Listener"
    )
    assert len(changed) <= 2
