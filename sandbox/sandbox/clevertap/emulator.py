"""The emulator's state and its operations, independent of HTTP routing."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
import sqlite3
import time
import zoneinfo
from typing import Any

from sandbox.clevertap.caps import Caps
from sandbox.clevertap.faults import Fault, FaultBook
from sandbox.clevertap.store import Store, loads
from sandbox.clevertap.upload import UploadBatch
from sandbox.clevertap.validation import (
    DEFAULT_MAX_EVENT_PROPERTIES,
    RecordError,
    echo,
    error_text,
    event_key,
    validate_record,
)

MAX_UPLOAD_RECORDS = 1000
_YYYYMMDD = re.compile(r"\d{8}")


def parse_yyyymmdd(value: object) -> dt.date | None:
    """A `YYYYMMDD` integer or digit string as a date (None when it is not one)."""
    text = str(value) if isinstance(value, int | str) else ""
    if _YYYYMMDD.fullmatch(text) is None:
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _lookup(record: object, field: str) -> object:
    """`record["a"]["b"]` for field "a.b" (None when absent)."""
    current = record
    for part in field.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _forced(fault: Fault, record: object, number: int) -> bool:
    """Whether a `record_failure` fault picks this record (by position or field)."""
    params = fault.params
    if number in params.get("positions", []):
        return True
    field = params.get("field")
    if isinstance(field, str):
        value = _lookup(record, field)
        if "value" not in params:
            return value is not None
        return bool(value == params["value"])
    return False


def to_export(value: object) -> object:
    """Stored value as the export APIs show it (dates back to `"$D_<epoch>"`)."""
    if isinstance(value, dict):
        if len(value) == 1 and "$date" in value:
            return f"$D_{value['$date']}"
        return {key: to_export(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_export(item) for item in value]
    return value


def _reply_status(processed: int, unprocessed: list[dict[str, Any]]) -> str:
    if not unprocessed:
        return "success"
    return "fail" if processed == 0 else "partial"


@dataclasses.dataclass
class Emulator:
    """One emulated CleverTap account: credentials, time zone, store and faults."""

    store: Store
    account_id: str
    passcode: str
    timezone: str
    max_event_properties: int = DEFAULT_MAX_EVENT_PROPERTIES
    faults: FaultBook = dataclasses.field(default_factory=FaultBook)
    caps: Caps = dataclasses.field(default_factory=Caps)
    #: events may be held back by an ingestion_lag fault (a cheap check per
    #: request; True at start: a reopened database may hold some)
    lagging: bool = True

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        """The account's time zone."""
        return zoneinfo.ZoneInfo(self.timezone)

    # -- request log -----------------------------------------------------------
    def log_start(self, started: float, method: str, path: str, query: str) -> int:
        """Log a request as it arrives (never headers, so never the passcode)."""
        return self.store.execute(
            "INSERT INTO request_log (time, method, path, query) VALUES (?, ?, ?, ?)",
            (started, method, path, query),
        )

    def log_finish(self, entry: int, info: dict[str, Any]) -> None:
        """Complete a log entry with the status, record count and fault."""
        # A request cut short by a fault may finish after its server was stopped.
        with contextlib.suppress(sqlite3.ProgrammingError):
            self.store.execute(
                "UPDATE request_log SET status = ?, records = ?, fault = ? "
                "WHERE id = ?",
                (info.get("status"), info.get("records"), info.get("fault"), entry),
            )

    def requests_log(self) -> list[dict[str, Any]]:
        """The request log, oldest first."""
        return [
            {
                "time": row["time"],
                "method": row["method"],
                "path": row["path"],
                "query": row["query"],
                "status": row["status"],
                "records": row["records"],
                "fault": row["fault"],
            }
            for row in self.store.query("SELECT * FROM request_log ORDER BY id")
        ]

    # -- upload ----------------------------------------------------------------
    def upload(
        self, records: list[object], *, dry_run: bool, method: str, path: str
    ) -> dict[str, Any]:
        """Validate and store a batch; the reply body of `/1/upload`."""
        forced = self.faults.take_all("record_failure", method, path)
        partial = self.faults.take("unprocessed_partial", method, path)
        limit = len(records)
        if partial is not None:
            processed_param = partial.params.get("processed")
            limit = (
                (len(records) + 1) // 2 if processed_param is None else processed_param
            )
        now = int(time.time())
        processed = 0
        unprocessed: list[dict[str, Any]] = []
        self.caps.load(self.store)
        lag = None if dry_run else self.faults.peek("ingestion_lag", method, path)
        last_event = self.store.max_event_id() if lag is not None else 0
        with self.store.transaction(rollback=dry_run) as conn:
            batch = UploadBatch(conn)
            batch.prefetch_identities(records)
            # bound once: this loop runs for every record of the request
            cap, store = self.caps.apply, batch.apply
            max_properties = self.max_event_properties
            for number, record in enumerate(records, start=1):
                if processed >= limit:
                    error = RecordError(555)
                else:
                    try:
                        if forced:
                            self._check_forced(forced, record, number)
                        op = validate_record(
                            record, max_event_properties=max_properties, now=now
                        )
                        kept = cap(op, dry_run=dry_run)
                        if kept is not None:  # past a cap: dropped without a word
                            store(kept)
                    except RecordError as exc:
                        error = exc
                    else:
                        processed += 1
                        continue
                unprocessed.append(
                    {
                        "status": "fail",
                        "code": error.code,
                        "error": error_text(error.code, error.message, number),
                        "record": echo(record, error.code),
                    }
                )
            if not dry_run:
                batch.flush()
        if lag is not None:
            self._hold(lag, last_event, method, path)
        return {
            "status": _reply_status(processed, unprocessed),
            "processed": processed,
            "unprocessed": unprocessed,
        }

    def _hold(self, lag: Fault, last_event: int, method: str, path: str) -> None:
        """Hide the events just stored from exports for the fault's lag."""
        self.faults.take("ingestion_lag", method, path)
        self.store.hold_events(
            last_event,
            time.time() + float(lag.params["seconds"]),
            int(lag.params["reads"]),
        )
        self.lagging = True

    @staticmethod
    def _check_forced(forced: list[Fault], record: object, number: int) -> None:
        """Raise the error of the first `record_failure` fault this record meets.

        Raises:
            RecordError: with the fault's code (and detail, when it has one).
        """
        for fault in forced:
            if _forced(fault, record, number):
                detail = fault.params.get("error")
                raise RecordError(
                    int(fault.params["code"]), detail if isinstance(detail, str) else ""
                )

    # -- inspection ------------------------------------------------------------
    def profiles(self, identity: str | None = None) -> list[dict[str, Any]]:
        """Stored profiles, in creation order."""
        rows = self.store.query(
            "SELECT * FROM profiles WHERE ?1 IS NULL OR identity = ?1 ORDER BY id",
            (identity,),
        )
        return [
            {
                "identity": row["identity"],
                "objectId": row["object_id"],
                "FBID": row["fbid"],
                "GPID": row["gpid"],
                "profileData": loads(row["profile_data"]),
                "platformInfo": loads(row["platform_info"]),
                "createdTs": row["created_ts"],
                "updatedTs": row["updated_ts"],
                "source": row["source"],
            }
            for row in rows
        ]

    def events(
        self, evt_name: str | None = None, identity: str | None = None
    ) -> list[dict[str, Any]]:
        """Stored events, in arrival order."""
        rows = self.store.query(
            "SELECT * FROM events WHERE (?1 IS NULL OR evt_key = ?1) "
            "AND (?2 IS NULL OR identity = ?2) ORDER BY id",
            (None if evt_name is None else event_key(evt_name), identity),
        )
        return [
            {
                "identity": row["identity"],
                "objectId": row["object_id"],
                "evtName": row["evt_name"],
                "ts": row["ts"],
                "evtData": loads(row["evt_data"]),
                "sessionProps": loads(row["session_props"]),
                "source": row["source"],
            }
            for row in rows
        ]

    def release_lagged(self, *, export_read: bool, everything: bool = False) -> None:
        """Show held events whose lag is over (every one when `everything`)."""
        if not self.lagging:  # the common case: nothing held, no query
            return
        self.lagging = bool(
            self.store.release_events(
                time.time(), export_read=export_read, everything=everything
            )
        )

    def reset(self) -> None:
        """Wipe data, cursors, logs and faults; restore the default caps."""
        self.store.wipe()
        self.faults.clear()
        self.caps = Caps()  # the default caps again, nothing counted
        self.lagging = False
