"""The Starlette application: CleverTap's routes and the `/_sandbox/` control API."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from sandbox.clevertap import api
from sandbox.clevertap.api import fail, json_response, read_json
from sandbox.clevertap.emulator import MAX_UPLOAD_RECORDS, Emulator
from sandbox.clevertap.faults import FaultError, parse_fault
from sandbox.clevertap.gate import ABORT_KEY, INFO_KEY, Gate, make_abort
from sandbox.clevertap.seed import SeedError, seed
from sandbox.clevertap.store import Store
from sandbox.clevertap.validation import DEFAULT_MAX_EVENT_PROPERTIES

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send


def malformed() -> Response:
    """CleverTap's reply to a body it cannot read."""
    return fail(400, "Malformed request")


class CleverTapApp(Starlette):
    """Starlette plus the hook that lets faults break the client's connection."""

    emulator: Emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Give the request a way to drop its connection, then route it."""
        if scope["type"] == "http":
            scope[ABORT_KEY] = make_abort(send)
        await super().__call__(scope, receive, send)


def _emulator(request: Request) -> Emulator:
    app: CleverTapApp = request.app
    return app.emulator


# -- CleverTap: upload ---------------------------------------------------------
async def upload(request: Request) -> Response:
    """`POST /1/upload`."""
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("d"), list):
        return malformed()
    records: list[object] = body["d"]
    info = request.scope.get(INFO_KEY)
    if isinstance(info, dict):
        info["records"] = len(records)
    if len(records) > MAX_UPLOAD_RECORDS:
        error = (
            f"Too many records in one request: {len(records)}; "
            f"at most {MAX_UPLOAD_RECORDS} are allowed"
        )
        return fail(400, error)
    # dryRun=1 validates without storing: used by tradeo/clevertap-ruby
    # (lib/clever_tap/client.rb), see ../shared/docs/clevertap-api.md; no
    # developer.clevertap.com page and no recording of its reply are known.
    dry_run = request.query_params.get("dryRun", "").lower() in {"1", "true"}
    reply = _emulator(request).upload(
        records, dry_run=dry_run, method=request.method, path=request.url.path
    )
    return json_response(reply)


# -- /_sandbox/ ----------------------------------------------------------------
async def sandbox_profiles(request: Request) -> Response:
    """`GET /_sandbox/profiles[?identity=]`."""
    return json_response(
        _emulator(request).profiles(request.query_params.get("identity"))
    )


async def sandbox_events(request: Request) -> Response:
    """`GET /_sandbox/events[?evtName=&identity=]`."""
    params = request.query_params
    emulator = _emulator(request)
    # every stored event, those still held back by an ingestion_lag fault too
    emulator.release_lagged(export_read=False, everything=True)
    return json_response(emulator.events(params.get("evtName"), params.get("identity")))


async def sandbox_requests(request: Request) -> Response:
    """`GET /_sandbox/requests`."""
    return json_response(_emulator(request).requests_log())


async def sandbox_reset(request: Request) -> Response:
    """`POST /_sandbox/reset`."""
    _emulator(request).reset()
    return json_response({"status": "success"})


async def sandbox_seed(request: Request) -> Response:
    """`POST /_sandbox/seed` with optional JSON parameters."""
    raw = await request.body()
    try:
        params = json.loads(raw) if raw.strip() else {}
        summary = seed(_emulator(request), **_params(params))
    except (ValueError, TypeError, SeedError) as exc:
        return json_response({"status": "fail", "error": str(exc)}, 400)
    _emulator(request).caps.forget()  # seeded keys and names count too
    return json_response(summary)


def _params(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        msg = "the seed parameters must be a JSON object"
        raise SeedError(msg)
    return {str(key): item for key, item in value.items()}


async def sandbox_faults(request: Request) -> Response:
    """`GET|POST|DELETE /_sandbox/faults`."""
    emulator = _emulator(request)
    if request.method == "DELETE":
        emulator.faults.clear()
        return json_response({"status": "success"})
    if request.method == "POST":
        try:
            fault = parse_fault(await read_json(request))
        except FaultError as exc:
            return json_response({"status": "fail", "error": str(exc)}, 400)
        emulator.faults.add(fault)
    return json_response(emulator.faults.active())


async def sandbox_caps(request: Request) -> Response:
    """`GET|POST /_sandbox/caps`: keys/names in use, limits, what was dropped.

    POST `{"max_custom_profile_keys": n, "max_event_names": n}` lowers the caps
    (tests reach them without 256 keys).
    """
    emulator = _emulator(request)
    caps = emulator.caps
    if request.method == "POST":
        body = await read_json(request)
        if not isinstance(body, dict):
            return json_response({"status": "fail", "error": "a JSON object"}, 400)
        for name, attr in (
            ("max_custom_profile_keys", "max_keys"),
            ("max_event_names", "max_names"),
        ):
            value = body.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                error = f"{name} must be a non-negative integer"
                return json_response({"status": "fail", "error": error}, 400)
            setattr(caps, attr, value)
    caps.load(emulator.store)
    return json_response(caps.describe())


async def sandbox_health(request: Request) -> Response:
    """`GET /_sandbox/health`: account id and time zone (never the passcode)."""
    emulator = _emulator(request)
    return json_response(
        {
            "status": "ok",
            "account_id": emulator.account_id,
            "timezone": emulator.timezone,
            "max_event_properties": emulator.max_event_properties,
        }
    )


def create_app(  # noqa: PLR0913 - every option is a keyword
    *,
    db_path: str | Path | None = None,
    account_id: str = "SANDBOX-ACCOUNT",
    passcode: str = "SANDBOX-PASSCODE",
    timezone: str = "UTC",
    max_event_properties: int = DEFAULT_MAX_EVENT_PROPERTIES,
    seed_params: dict[str, Any] | None = None,
) -> Starlette:
    """Build the CleverTap emulator.

    Args:
        db_path: the SQLite file (None: a fresh temporary file).
        account_id: the account id clients must send.
        passcode: the passcode clients must send.
        timezone: the account's IANA time zone (export `ts` and day filters).
        max_event_properties: properties allowed per event (code 522 above it).
        seed_params: when given, seed engagement data at start with these parameters.

    Returns:
        The Starlette application (serve it with `sandbox.server`).
    """
    if db_path is None:
        db_path = Path(tempfile.mkdtemp(prefix="clevertap-")) / "clevertap.db"
    emulator = Emulator(
        store=Store(db_path),
        account_id=account_id,
        passcode=passcode,
        timezone=timezone,
        max_event_properties=max_event_properties,
    )
    _ = emulator.tz  # fail early on an unknown time zone
    routes = [
        Route("/1/upload", upload, methods=["POST"]),
        *api.routes(),
        Route("/_sandbox/profiles", sandbox_profiles, methods=["GET"]),
        Route("/_sandbox/events", sandbox_events, methods=["GET"]),
        Route("/_sandbox/requests", sandbox_requests, methods=["GET"]),
        Route("/_sandbox/reset", sandbox_reset, methods=["POST"]),
        Route("/_sandbox/seed", sandbox_seed, methods=["POST"]),
        Route("/_sandbox/faults", sandbox_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/health", sandbox_health, methods=["GET"]),
        Route("/_sandbox/caps", sandbox_caps, methods=["GET", "POST"]),
    ]
    app = CleverTapApp(routes=routes, middleware=[Middleware(Gate, emulator=emulator)])
    app.emulator = emulator
    if seed_params is not None:
        seed(emulator, **seed_params)
    return app
