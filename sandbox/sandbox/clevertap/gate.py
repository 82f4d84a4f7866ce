"""The ASGI layer in front of the CleverTap routes.

It checks credentials, enforces CleverTap's concurrency limits, logs every request and
injects the transport-level faults (status replies, latency, reset, lost or slow reply).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

from sandbox.server import abort_connection

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from sandbox.clevertap.emulator import Emulator

SANDBOX_PREFIX = "/_sandbox/"
UPLOAD_PATH = "/1/upload"
UPLOAD_CONCURRENCY = 15
OTHER_CONCURRENCY = 3
# CleverTap's concurrency limits are "defined per user account for each API"
# (developer.clevertap.com/docs/api-request-limit, page of 2026-03-17, as read in
# api-evangelist/clevertap rate-limits/clevertap-rate-limits.yml): 15 for the uploads,
# 3 for each other API on its own, so a Get Events walk does not take a Get User
# Profiles slot. Paths of one API share a slot count: Get User Profiles is the
# cursor export and the by-ID read (developer.clevertap.com/docs/get-user-profiles-api:
# one API, "by event" and "by ID"; one row of the limits table). Any other path
# counts as its own API.
_API_OF_PATH = {
    UPLOAD_PATH: "upload",
    "/1/events.json": "get events",
    "/1/profiles.json": "get user profiles",
    "/1/profile.json": "get user profiles",
}
ABORT_KEY = "sandbox.abort"
INFO_KEY = "sandbox.info"

_STATUS_BODIES = {
    429: "Too many concurrent requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable. Please try again later",
    504: "Gateway Timeout",
}
CONTENT_TYPE = "application/json;charset=utf-8"
_CONTENT_TYPE = (b"content-type", CONTENT_TYPE.encode())


def fail_body(status: int, error: str) -> dict[str, Any]:
    """CleverTap's JSON body for a failed request."""
    return {"status": "fail", "error": error, "code": status}


async def send_json(send: Send, status: int, body: object) -> None:
    """Send a complete JSON response."""
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_CONTENT_TYPE, (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


def make_abort(send: Send) -> Callable[[], Awaitable[None]]:
    """Build a coroutine function that breaks the client's connection.

    It resets the TCP connection when the transport can be reached; otherwise a
    response is started with a Content-Length and cut short.
    """

    async def abort() -> None:
        if await abort_connection(send):
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [_CONTENT_TYPE, (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        msg = "connection dropped by a sandbox fault"
        raise ConnectionAbortedError(msg)

    return abort


class Gate:
    """Pure ASGI middleware: auth, concurrency, request log and transport faults."""

    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        """Wrap `app` for `emulator`."""
        self.app = app
        self.emulator = emulator
        self.inflight: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http" or scope["path"].startswith(SANDBOX_PREFIX):
            await self.app(scope, receive, send)
            return
        info: dict[str, Any] = {"status": None, "records": None, "fault": None}
        scope[INFO_KEY] = info
        info["entry"] = self.emulator.log_start(
            time.time(),
            scope["method"],
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
        )

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, logged_send, info)
        finally:
            self.emulator.log_finish(info["entry"], info)

    def _authorised(self, scope: Scope) -> bool:
        headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
        account = headers.get("x-clevertap-account-id", b"")
        passcode = headers.get("x-clevertap-passcode", b"")
        return hmac.compare_digest(
            account, self.emulator.account_id.encode()
        ) and hmac.compare_digest(passcode, self.emulator.passcode.encode())

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, info: dict[str, Any]
    ) -> None:
        if not self._authorised(scope):
            await send_json(
                send,
                401,
                # the recorded body of a refused account/passcode
                fail_body(401, "Account ID is not valid"),
            )
            return
        path: str = scope["path"]
        group = _API_OF_PATH.get(path, path)
        limit = UPLOAD_CONCURRENCY if group == "upload" else OTHER_CONCURRENCY
        if self.inflight.get(group, 0) >= limit:
            info["fault"] = "concurrency"
            await send_json(send, 429, fail_body(429, "Too many concurrent requests"))
            return
        self.emulator.release_lagged(
            export_read=path == "/1/events.json" and scope["method"] == "POST"
        )
        self.inflight[group] = self.inflight.get(group, 0) + 1
        try:
            await self._faulted(scope, receive, send, info)
        finally:
            left = self.inflight[group] - 1
            if left:
                self.inflight[group] = left
            else:  # any path may be asked for: keep no count for idle ones
                del self.inflight[group]

    async def _after_store(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        info: dict[str, Any],
        code: int,
    ) -> None:
        """Process the request (the batch is stored), then answer `code`."""
        info["fault"] = f"status_after_store {code}"

        async def drop(_message: Message) -> None:
            return

        await self.app(scope, receive, drop)
        # another 5xx: a gateway or CDN's answer (its body is not CleverTap's)
        error = _STATUS_BODIES.get(code, "Server Error")
        await send_json(send, code, fail_body(code, error))

    async def _faulted(
        self, scope: Scope, receive: Receive, send: Send, info: dict[str, Any]
    ) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        faults = self.emulator.faults
        latency = faults.take("latency", method, path)
        if latency is not None:
            await asyncio.sleep(float(latency.params["ms"]) / 1000)
        status = faults.take("status", method, path)
        if status is not None:
            code = int(status.params["status"])
            info["fault"] = f"status {code}"
            await send_json(send, code, fail_body(code, _STATUS_BODIES[code]))
            return
        abort = scope[ABORT_KEY]
        if faults.take("reset", method, path) is not None:
            info["fault"] = "reset"
            self.emulator.log_finish(info["entry"], info)
            await abort()
            return
        after = faults.take("status_after_store", method, path)
        if after is not None:
            await self._after_store(
                scope, receive, send, info, int(after.params["status"])
            )
            return
        lost = faults.take("lost_reply", method, path)
        slow = None if lost is not None else faults.take("slow_reply", method, path)
        if lost is None and slow is None:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        if lost is not None:
            info["fault"] = "lost_reply"
            self.emulator.log_finish(info["entry"], info)
            await abort()
            return
        if slow is not None:
            info["fault"] = "slow_reply"
            await asyncio.sleep(float(slow.params.get("seconds", 2)))
        for message in held:
            await send(message)
