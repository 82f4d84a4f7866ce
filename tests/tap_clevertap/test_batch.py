"""tap-clevertap with `batch_config`: STATE never passes records no BATCH has sent.

In batch mode the SDK collects the records in a file and writes the BATCH message,
then STATE, once the file is full or the stream ends (singer_sdk 0.54
``Stream._sync_batches``). A STATE written after a window, before its records left in a
BATCH, would let a failed run lose them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest
from singer_sdk.exceptions import FatalAPIError
from tap_clevertap.tap import TapCleverTap

from tests.tap_clevertap.test_sync import (
    Output,
    base_config,
    local_epoch,
    run_tap,
    upload_events,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("no_waits_no_proxy")

DAYS = ("2024-03-01", "2024-03-02", "2024-03-03")


def batch_config(ct: Any, root: Path, *, batch_size: int = 10000) -> dict[str, Any]:
    """Three daily windows of two Charged events each, in batch mode."""
    upload_events(
        ct,
        [
            ("u1", "Charged", local_epoch(f"{day} {hour}:00", dt.UTC))
            for day in DAYS
            for hour in (10, 11)
        ],
    )
    return base_config(
        ct,
        event_names=["Charged"],
        window_days=1,
        lookback_days=0,
        start_date="2024-03-01T00:00:00Z",
        end_date="2024-03-04T00:00:00Z",
        batch_config={
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": root.as_uri()},
            "batch_size": batch_size,
        },
    )


def sent_ts(message: dict[str, Any]) -> list[str]:
    """The `ts` of every record in the files of one BATCH message."""
    values: list[str] = []
    for url in message["manifest"]:
        with gzip.open(urlparse(url).path, "rt", encoding="utf-8") as lines:
            values.extend(json.loads(line)["ts"] for line in lines)
    return values


def bookmark(state: dict[str, Any]) -> str | None:
    entry = state.get("bookmarks", {}).get("events_charged", {})
    value = entry.get("replication_key_value")
    return str(value) if value else None


def test_batch_mode_failed_run_writes_no_state_past_unsent_records(
    make_clevertap_emulator: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ct = make_clevertap_emulator()
    config = batch_config(ct, tmp_path)
    tap = TapCleverTap(config=config, parse_env_config=False)
    stream = tap.streams["events_charged"]
    real_walk = stream.walk_cursor
    calls: list[int] = []

    def fail_in_day_2(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            msg = "CleverTap refused the second window"
            raise FatalAPIError(msg)
        yield from real_walk(*args, **kwargs)

    monkeypatch.setattr(stream, "walk_cursor", fail_in_day_2)
    buffer = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with contextlib.redirect_stdout(buffer), pytest.raises(FatalAPIError):
        stream.sync()
    buffer.seek(0)
    out = Output([json.loads(line) for line in buffer.read().splitlines() if line])
    # Day 1 was read but its batch file never went out: no BATCH, no bookmark.
    assert not [m for m in out.messages if m["type"] in {"BATCH", "RECORD"}]
    assert [bookmark(m["value"]) for m in out.messages if m["type"] == "STATE"] in (
        [],
        [None],
    )

    rerun = run_tap(config, state=out.state)
    batches = [
        m
        for m in rerun.messages
        if m["type"] == "BATCH" and m["stream"] == "events_charged"
    ]
    assert sorted(ts[:13] for m in batches for ts in sent_ts(m))[:2] == [
        "2024-03-01T10",  # day 1 is read again, nothing lost
        "2024-03-01T11",
    ]


def test_batch_mode_state_follows_each_batch_and_ends_at_the_last_event(
    make_clevertap_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    ct = make_clevertap_emulator()
    # Batches of 3 records: day 2's window ends in the middle of the second batch.
    out = run_tap(batch_config(ct, tmp_path, batch_size=3))
    sent: list[str] = []
    bookmarks: list[str] = []
    for message in out.messages:
        if message["type"] == "BATCH" and message["stream"] == "events_charged":
            sent.extend(sent_ts(message))
        elif message["type"] == "STATE" and (value := bookmark(message["value"])):
            # Every bookmark is covered by records already announced in a BATCH.
            assert sent, f"STATE {value} before any BATCH"
            assert dt.datetime.fromisoformat(value) <= max(
                dt.datetime.fromisoformat(ts) for ts in sent
            )
            bookmarks.append(value)
    assert len(sent) == 6
    assert bookmarks[0].startswith("2024-03-01T11")  # day 1 sent in the first batch
    assert bookmarks[-1].startswith("2024-03-03T11")
    assert bookmark(out.state) == bookmarks[-1]


def test_batch_mode_unwritable_last_batch_leaves_no_bookmark_in_the_state(
    make_clevertap_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    ct = make_clevertap_emulator()
    not_a_directory = tmp_path / "batches"
    not_a_directory.write_text("", encoding="utf-8")
    config = batch_config(ct, not_a_directory)
    tap = TapCleverTap(config=config, parse_env_config=False)
    with (
        contextlib.redirect_stdout(io.TextIOWrapper(io.BytesIO())),
        pytest.raises(OSError, match="batches"),
    ):
        tap.streams["events_charged"].sync()
    # Every window was read, none was sent: the state the tap holds (and would
    # write on SIGTERM) has no bookmark.
    assert bookmark(tap.state) is None


def test_batch_mode_lookback_rerun_keeps_the_bookmark(
    make_clevertap_emulator: Callable[..., Any], tmp_path: Path
) -> None:
    ct = make_clevertap_emulator()
    config = {**batch_config(ct, tmp_path), "lookback_days": 1}
    first = run_tap(config)
    assert (bookmark(first.state) or "").startswith("2024-03-03T11")
    # The rerun ends before the bookmark's day and reads only the lookback day 03-02:
    # its events are older than the bookmark, which stays.
    rerun = run_tap({**config, "end_date": "2024-03-03T00:00:00Z"}, state=first.state)
    assert any(
        m["type"] == "BATCH" and m["stream"] == "events_charged" for m in rerun.messages
    )
    assert bookmark(rerun.state) == bookmark(first.state)
