"""Run an ASGI app with uvicorn on 127.0.0.1, in a thread or in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.types import ASGIApp

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def _config(
    app: ASGIApp,
    port: int,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=LOCALHOST,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_keep_alive=30,
        # An idle TLS keep-alive connection whose client never closes it would hold
        # shutdown for the TLS close timeout (30 s); give up waiting after 2 s.
        timeout_graceful_shutdown=2,
        limit_concurrency=None,
        backlog=2048,
    )


class ServerThread:
    """A uvicorn server running in a daemon thread, bound to 127.0.0.1 only."""

    def __init__(
        self,
        app: ASGIApp,
        port: int = 0,
        *,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        """Prepare the server; `port=0` picks a free port."""
        self.port = port or free_port()
        self.tls = ssl_certfile is not None
        self._server = uvicorn.Server(
            _config(app, self.port, ssl_certfile, ssl_keyfile)
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        """The server's base URL, for example `http://127.0.0.1:8901`."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{LOCALHOST}:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        """Start serving and wait until the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                msg = f"emulator did not start on port {self.port}"
                raise RuntimeError(msg)
            time.sleep(0.01)
        return self

    def force_exit_on_stop(self) -> None:
        """Make `stop()` drop idle keep-alive connections instead of waiting."""
        self._server.force_exit = True

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)


@contextlib.contextmanager
def serve_in_thread(
    app: ASGIApp,
    port: int = 0,
    *,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> Iterator[ServerThread]:
    """Serve `app` for the duration of a `with` block."""
    server = ServerThread(
        app, port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile
    ).start()
    try:
        yield server
    finally:
        server.stop()


def serve_forever(
    app: ASGIApp,
    port: int,
    *,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> None:
    """Serve `app` in the foreground until interrupted."""
    uvicorn.Server(_config(app, port, ssl_certfile, ssl_keyfile)).run()


_TRANSPORT_SEARCH_DEPTH = 8


def find_transport(
    send: object, depth: int = _TRANSPORT_SEARCH_DEPTH
) -> asyncio.WriteTransport | None:
    """Return the asyncio transport behind an ASGI `send` callable, or None.

    uvicorn's `send` is a bound method of the connection's request cycle, which holds
    the transport; Starlette's middleware wrap it in closures, so those are searched.

    Args:
        send: the ASGI `send` callable a handler received.
        depth: how many closure levels to search.

    Returns:
        The transport, or None when it cannot be found.
    """
    if depth <= 0 or send is None:
        return None
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if isinstance(transport, asyncio.WriteTransport):  # it can be aborted
        return transport
    for cell in getattr(send, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            found = find_transport(cell.cell_contents, depth - 1)
            if found is not None:
                return found
    return None


async def abort_connection(send: object) -> bool:
    """Reset the client's TCP connection (RST, no reply), for fault injection.

    Args:
        send: the ASGI `send` callable of the request whose connection is cut.

    Returns:
        False when no transport could be found (the caller then cuts the reply short).
    """
    transport = find_transport(send)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    transport.abort()
    await asyncio.sleep(0.01)  # let the server notice the connection is gone
    return True
