"""The emulator's state and its operations, independent of HTTP routing."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
import zoneinfo
from typing import Any

from sandbox.clevertap.faults import Fault, FaultBook
from sandbox.clevertap.store import Store, loads
from sandbox.clevertap.upload import apply_operation
from sandbox.clevertap.validation import (
    DEFAULT_MAX_EVENT_PROPERTIES,
    RecordError,
    event_key,
    validate_record,
)

MAX_UPLOAD_RECORDS = 1000


def _lookup(record: Any, field: str) -> Any:  # noqa: ANN401 - JSON values
    """`record["a"]["b"]` for field "a.b" (None when absent)."""
    current = record
    for part in field.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _forced(fault: Fault, record: Any, number: int) -> bool:  # noqa: ANN401
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


def to_export(value: Any) -> Any:  # noqa: ANN401 - JSON values
    """Stored value as the export APIs show it (dates back to `"$D_<epoch>"`)."""
    if isinstance(value, dict):
        if len(value) == 1 and "$date" in value:
            return f"$D_{value['$date']}"
        return {key: to_export(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_export(item) for item in value]
    return value


@dataclasses.dataclass
class Emulator:
    """One emulated CleverTap account: credentials, time zone, store and faults."""

    store: Store
    account_id: str
    passcode: str
    timezone: str
    max_event_properties: int = DEFAULT_MAX_EVENT_PROPERTIES
    faults: FaultBook = dataclasses.field(default_factory=FaultBook)

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
        self, records: list[Any], *, dry_run: bool, method: str, path: str
    ) -> dict[str, Any]:
        """Validate and store a batch; the reply body of `/1/upload`."""
        forced = self.faults.take_all("record_failure", method, path)
        partial = self.faults.take("unprocessed_partial", method, path)
        limit = None
        if partial is not None:
            limit = partial.params.get("processed")
            if limit is None:
                limit = (len(records) + 1) // 2
        now = int(time.time())
        processed = 0
        unprocessed: list[dict[str, Any]] = []
        with self.store.transaction(rollback=dry_run) as conn:
            for number, record in enumerate(records, start=1):
                try:
                    if limit is not None and processed >= limit:
                        raise RecordError(555)  # noqa: TRY301 - one path for all failures
                    self._one(conn, record, number, forced, now)
                    processed += 1
                except RecordError as exc:
                    unprocessed.append(
                        {
                            "status": "fail",
                            "code": exc.code,
                            "error": f"{exc.message}Skipped record number : {number}",
                            "record": record,
                        }
                    )
        if not unprocessed:
            status = "success"
        elif processed == 0:
            status = "fail"
        else:
            status = "partial"
        return {"status": status, "processed": processed, "unprocessed": unprocessed}

    def _one(
        self,
        conn: sqlite3.Connection,
        record: Any,  # noqa: ANN401 - JSON value
        number: int,
        forced: list[Fault],
        now: int,
    ) -> None:
        for fault in forced:
            if _forced(fault, record, number):
                code = int(fault.params["code"])
                detail = fault.params.get("error")
                if isinstance(detail, str):
                    raise RecordError(code, detail)
                raise RecordError(code)
        op = validate_record(
            record, max_event_properties=self.max_event_properties, now=now
        )
        apply_operation(conn, op)

    # -- inspection ------------------------------------------------------------
    def profiles(self, identity: str | None = None) -> list[dict[str, Any]]:
        """Stored profiles, in creation order."""
        sql = "SELECT * FROM profiles"
        params: tuple[Any, ...] = ()
        if identity is not None:
            sql += " WHERE identity = ?"
            params = (identity,)
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
            for row in self.store.query(sql + " ORDER BY id", params)
        ]

    def events(
        self, evt_name: str | None = None, identity: str | None = None
    ) -> list[dict[str, Any]]:
        """Stored events, in arrival order."""
        clauses = []
        params: list[Any] = []
        if evt_name is not None:
            clauses.append("evt_key = ?")
            params.append(event_key(evt_name))
        if identity is not None:
            clauses.append("identity = ?")
            params.append(identity)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
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
            for row in self.store.query(
                f"SELECT * FROM events{where} ORDER BY id",  # noqa: S608 - fixed clauses
                tuple(params),
            )
        ]

    def reset(self) -> None:
        """Wipe data, cursors, logs and faults."""
        self.store.wipe()
        self.faults.clear()
