"""Switchable failure modes, set through `POST /_sandbox/faults`."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

KINDS = (
    "invalid_session",
    "request_limit",
    "concurrent_limit",
    "bulk_job_failed",
    "lock_row",
    "slow_bulk",
    "api_usage",
    "status",
    "reset",
    "latency",
)


@dataclasses.dataclass
class Fault:
    """One armed fault: how many more times it fires, and its parameters.

    `count` None means "until cleared". `path` (a substring of the URL path) and
    `method` restrict request-level faults to matching requests.
    """

    kind: str
    count: int | None = 1
    path: str | None = None
    method: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The fault as listed by `GET /_sandbox/faults`."""
        return {
            "kind": self.kind,
            "count": self.count,
            "path": self.path,
            "method": self.method,
            **self.params,
        }


class Faults:
    """The armed faults, consumed in the order they were added."""

    def __init__(self) -> None:
        """Start with no fault."""
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, spec: dict[str, Any]) -> Fault:
        """Arm a fault from its JSON description.

        Raises:
            ValueError: unknown kind or bad parameters.
        """
        spec = dict(spec)
        kind = str(spec.pop("kind", ""))
        if kind not in KINDS:
            msg = f"unknown fault kind {kind!r}; use one of {', '.join(KINDS)}"
            raise ValueError(msg)
        default_count: int | None = 1
        if kind in {"request_limit", "latency"}:
            default_count = None
        if kind == "concurrent_limit" and spec.get("which", "concurrent") not in {
            "concurrent",
            "long_txn",
        }:
            msg = "concurrent_limit: `which` is `concurrent` or `long_txn`"
            raise ValueError(msg)
        count = spec.pop("count", spec.pop("times", default_count))
        if count is not None:
            count = int(count)
            if count < 1:
                msg = "count must be at least 1 (or null for until cleared)"
                raise ValueError(msg)
        path = spec.pop("path", None)
        method = spec.pop("method", None)
        fault = Fault(
            kind,
            count,
            str(path) if path else None,
            str(method).upper() if method else None,
            spec,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    def listing(self) -> list[dict[str, Any]]:
        """The armed faults."""
        with self._lock:
            return [f.as_json() for f in self._faults]

    def take(self, kind: str, method: str = "", path: str = "") -> Fault | None:
        """Consume one firing of the first matching fault of `kind`, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != kind:
                    continue
                if fault.path and fault.path not in path:
                    continue
                if fault.method and fault.method != method.upper():
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def peek(self, kind: str) -> Fault | None:
        """The first armed fault of `kind`, without consuming it."""
        with self._lock:
            return next((f for f in self._faults if f.kind == kind), None)
