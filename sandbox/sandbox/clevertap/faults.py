"""Fault injection for the CleverTap emulator (set through `/_sandbox/faults`)."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

KINDS = frozenset(
    {
        "status",
        "reset",
        "lost_reply",
        "latency",
        "slow_reply",
        "record_failure",
        "in_progress",
        "counts_partial",
        "repeat_cursor",
        "unprocessed_partial",
        "status_after_store",
        "ingestion_lag",
    }
)

# The fault kinds (among them status_after_store and ingestion_lag) are an
# emulator choice for tests: no recording or doc page describes them.
# Kinds that stay active until cleared unless `times` is given.
_FOREVER_BY_DEFAULT = frozenset(
    {"latency", "record_failure", "in_progress", "counts_partial", "ingestion_lag"}
)
_STATUSES = frozenset({429, 500, 502, 503, 504})


class FaultError(ValueError):
    """A fault definition is invalid."""


@dataclasses.dataclass
class Fault:
    """One injected fault: its kind, the path prefix it matches, how often it fires."""

    kind: str
    params: dict[str, Any]
    path: str = "/"
    method: str | None = None
    remaining: int | None = 1
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return path.startswith(self.path)

    def describe(self) -> dict[str, Any]:
        """A JSON view of the fault."""
        return {
            "kind": self.kind,
            "path": self.path,
            "method": self.method,
            "remaining": self.remaining,
            "fired": self.fired,
            **self.params,
        }


def _int(params: dict[str, Any], key: str, default: int | None) -> int | None:
    value = params.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{key} must be a number"
        raise FaultError(msg)
    return int(value)


def _seconds(params: dict[str, Any], default: float) -> float:
    """`seconds`, or `ms` / 1000, as a number of seconds."""
    if "ms" in params:
        return (_int(params, "ms", 0) or 0) / 1000
    value = params.get("seconds", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        msg = "seconds must be a non-negative number"
        raise FaultError(msg)
    return float(value)


def _check_record_failure(params: dict[str, Any]) -> None:
    params["code"] = _int(params, "code", 555)
    if not {"position", "positions", "field"} & set(params):
        msg = "record_failure needs field (+ value) or position(s)"
        raise FaultError(msg)
    if "position" in params:
        params["positions"] = [params.pop("position")]
    positions = params.get("positions", [])
    if not isinstance(positions, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) for p in positions
    ):
        msg = "positions must be a list of 1-based record numbers"
        raise FaultError(msg)
    if "field" in params and not isinstance(params["field"], str):
        msg = "field must be a (dotted) field name"
        raise FaultError(msg)


def _check_store_fault(kind: str, params: dict[str, Any]) -> None:
    """`status_after_store` (`status`) and `ingestion_lag` (`seconds`, `reads`)."""
    if kind == "status_after_store":
        # any 5xx: a gateway (or a CDN: 520-524) may answer after the store
        status = _int(params, "status", 502) or 502
        if status not in _STATUSES and status // 100 != 5:  # noqa: PLR2004 - 5xx
            msg = f"status must be one of {sorted(_STATUSES)} or another 5xx"
            raise FaultError(msg)
        params["status"] = status
        return
    params["seconds"] = _seconds(params, 0)
    params.pop("ms", None)
    params["reads"] = _int(params, "reads", 0)
    if not params["seconds"] and not params["reads"]:
        msg = "ingestion_lag needs seconds and/or reads (export queries)"
        raise FaultError(msg)


def _check_params(kind: str, params: dict[str, Any]) -> None:
    """Validate and complete the parameters of one fault kind in place."""
    if kind == "status":
        status = _int(params, "status", _int(params, "code", 503))
        if status not in _STATUSES:
            msg = f"status must be one of {sorted(_STATUSES)}"
            raise FaultError(msg)
        params["status"] = status
    elif kind in {"status_after_store", "ingestion_lag"}:
        _check_store_fault(kind, params)
    elif kind == "latency":
        params["ms"] = round(_seconds(params, 0.2) * 1000)
        params.pop("seconds", None)
    elif kind == "slow_reply":
        params["seconds"] = _seconds(params, 2)
        params.pop("ms", None)
    elif kind == "record_failure":
        _check_record_failure(params)
    elif kind == "in_progress":
        params["fetches"] = _int(params, "fetches", 1)
        params["http_status"] = _int(params, "http_status", 200)
    elif kind == "counts_partial":
        params["polls"] = max(1, _int(params, "polls", 1) or 1)
    elif kind == "unprocessed_partial":
        params["processed"] = _int(params, "processed", None)


def parse_fault(body: object) -> Fault:
    """Build a Fault from a `/_sandbox/faults` JSON body.

    Raises:
        FaultError: when the body does not describe a valid fault.
    """
    if not isinstance(body, dict) or body.get("kind") not in KINDS:
        msg = f"kind must be one of {sorted(KINDS)}"
        raise FaultError(msg)
    params = dict(body)
    kind = str(params.pop("kind"))
    path = params.pop("path", "/")
    method = params.pop("method", None)
    if not isinstance(path, str) or not path.startswith("/"):
        msg = "path must be a path prefix starting with /"
        raise FaultError(msg)
    default_times = None if kind in _FOREVER_BY_DEFAULT else 1
    times = _int(params, "times", default_times)
    params.pop("times", None)
    if kind in {"in_progress", "counts_partial"}:
        # For these, `times` means how many fetches / polls, as a convenience.
        key = "fetches" if kind == "in_progress" else "polls"
        if key not in params and times is not None:
            params[key] = times
        times = None
    _check_params(kind, params)
    return Fault(
        kind=kind,
        params=params,
        path=path,
        method=method if isinstance(method, str) else None,
        remaining=times,
    )


class FaultBook:
    """The active faults. `take` consumes one use of the first matching fault."""

    def __init__(self) -> None:
        """Start with no faults."""
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        """Activate a fault."""
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    def active(self) -> list[dict[str, Any]]:
        """The active faults as JSON."""
        with self._lock:
            return [fault.describe() for fault in self._faults]

    def peek(self, kind: str, method: str, path: str) -> Fault | None:
        """The first active fault of `kind` matching the request, not consumed."""
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and fault.matches(method, path):
                    return fault
        return None

    def take(self, kind: str, method: str, path: str) -> Fault | None:
        """Consume one use of the first matching fault of `kind`."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != kind or not fault.matches(method, path):
                    continue
                fault.fired += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def take_all(self, kind: str, method: str, path: str) -> list[Fault]:
        """Consume one use of every matching fault of `kind`."""
        taken: list[Fault] = []
        with self._lock:
            for fault in list(self._faults):
                if fault.kind != kind or not fault.matches(method, path):
                    continue
                fault.fired += 1
                taken.append(fault)
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
        return taken
