"""Fixtures for the mapping preset tests: sample-org input and in-process runs."""

from __future__ import annotations

import datetime as dt
import gc
import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from sandbox.salesforce.schema import OBJECTS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from singer_sdk.streams import RESTStream

ROOT = Path(__file__).resolve().parents[2]
TRANSFORMS = ROOT / "transforms"
GOLDEN = ROOT / "tests" / "fixtures" / "transforms"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")

# tap-salesforce 2.8.1 JSON types per Salesforce describe type.
_JSON_TYPES = {
    "boolean": "boolean",
    "int": "integer",
    "double": "number",
    "currency": "number",
    "percent": "number",
    "address": "object",
}


def tap_datetime(value: str) -> str:
    """tap-salesforce's form of a date or date-time: `%Y-%m-%dT%H:%M:%S.%fZ`."""
    parsed = dt.datetime.fromisoformat(value.replace("+0000", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tap_schema(sobject: str) -> dict[str, Any]:
    """The stream schema tap-salesforce discovers for an object of the sample org."""
    props: dict[str, Any] = {}
    for field in OBJECTS[sobject].fields:
        if field.type in {"date", "datetime"}:
            props[field.name] = {"type": ["null", "string"], "format": "date-time"}
        else:
            props[field.name] = {
                "type": ["null", _JSON_TYPES.get(field.type, "string")]
            }
    return {"type": "object", "properties": props}


def tap_record(sobject: str, row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as tap-salesforce emits it (REST mode: every field)."""
    out: dict[str, Any] = {}
    for field in OBJECTS[sobject].fields:
        value = row.get(field.name)
        if value is not None and field.type in {"date", "datetime"}:
            value = tap_datetime(value)
        out[field.name] = value
    return out


def singer_lines(rows_by_stream: Iterable[tuple[str, list[dict[str, Any]]]]) -> str:
    """SCHEMA then RECORD messages, stream by stream, as tap-salesforce orders them."""
    lines: list[str] = []
    for stream, rows in rows_by_stream:
        lines.append(
            json.dumps(
                {
                    "type": "SCHEMA",
                    "stream": stream,
                    "schema": tap_schema(stream),
                    "key_properties": ["Id"],
                }
            )
        )
        lines.extend(
            json.dumps(
                {"type": "RECORD", "stream": stream, "record": tap_record(stream, r)}
            )
            for r in rows
        )
    return "\n".join(lines) + "\n"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a file, or [] when it does not exist."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def run_target_clevertap(config: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """Run target-clevertap in-process on Singer text; returns its STATE lines."""
    from target_clevertap.target import TargetCleverTap  # noqa: PLC0415

    target = TargetCleverTap(config=config, parse_env_config=False)
    out = io.StringIO()
    with redirect_stdout(out):
        target.listen(file_input=io.StringIO(text))
    return [json.loads(line) for line in out.getvalue().splitlines() if line]


def run_target_salesforce(config: dict[str, Any], text: str) -> Any:
    """Run target-salesforce in-process on Singer text; returns the target."""
    from target_salesforce.target import TargetSalesforce  # noqa: PLC0415

    target = TargetSalesforce(config=config, parse_env_config=False)
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            target.listen(file_input=io.StringIO(text))
    finally:
        target.run.close()
        gc.collect()
    return target


def run_tap_clevertap(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Run tap-clevertap in-process (discovery + sync); returns its messages."""
    from tap_clevertap.tap import TapCleverTap  # noqa: PLC0415

    tap = TapCleverTap(config=config, parse_env_config=False)
    # The SDK's message writer writes bytes to sys.stdout.buffer.
    buffer = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    try:
        with redirect_stdout(buffer):
            tap.sync_all()
    finally:
        for stream in tap.streams.values():
            # every tap-clevertap stream is a RESTStream (CleverTapStream)
            cast("RESTStream[Any]", stream).requests_session.close()
    buffer.seek(0)
    return [json.loads(line) for line in buffer.read().splitlines() if line]


@pytest.fixture
def trusted_salesforce(
    salesforce_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The seeded Salesforce emulator, trusted through REQUESTS_CA_BUNDLE, no proxy."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", salesforce_emulator.ca_bundle)
    return salesforce_emulator


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries of the CleverTap clients wait ~0 s (the waits are not under test)."""
    import backoff  # noqa: PLC0415
    from tap_clevertap.client import CleverTapStream  # noqa: PLC0415
    from target_clevertap.client import CleverTapClient  # noqa: PLC0415

    monkeypatch.setattr(
        CleverTapClient, "wait_generator", staticmethod(lambda: backoff.constant(0))
    )
    monkeypatch.setattr(CleverTapClient, "jitter", staticmethod(lambda value: value))
    monkeypatch.setattr(
        CleverTapStream,
        "backoff_wait_generator",
        lambda _self: backoff.constant(interval=0),
    )
    monkeypatch.setattr(CleverTapStream, "backoff_jitter", lambda _self, value: value)


@pytest.fixture
def check_golden() -> Callable[[Path, str], None]:
    """Compare text with a golden file (or rewrite it with TRANSFORMS_UPDATE_GOLDEN)."""
    import os  # noqa: PLC0415

    def check(path: Path, text: str) -> None:
        if os.environ.get("TRANSFORMS_UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        expected = path.read_text(encoding="utf-8") if path.exists() else ""
        assert text == expected, (
            f"{path.relative_to(ROOT)} differs; review the diff and rerun with "
            "TRANSFORMS_UPDATE_GOLDEN=1 to accept it"
        )

    return check


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (importlib mode cannot import conftest)."""
    return SimpleNamespace(
        tap_record=tap_record,
        tap_schema=tap_schema,
        singer_lines=singer_lines,
        read_jsonl=read_jsonl,
        run_target_clevertap=run_target_clevertap,
        run_target_salesforce=run_target_salesforce,
        run_tap_clevertap=run_tap_clevertap,
    )
