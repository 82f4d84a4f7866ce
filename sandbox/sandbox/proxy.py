"""A local HTTP CONNECT proxy that sends the real API hostnames to the emulators.

Clients set `HTTPS_PROXY` to this proxy. For each `CONNECT host:443` the proxy
picks an emulator address from a routing table (exact hostnames and `*.suffix`
patterns) and relays bytes both ways, so TLS runs end to end between the client
and the emulator. Hosts without a route are refused with 403: the sandbox never
reaches the internet. The proxy binds 127.0.0.1 only.

In tests use `running_proxy(routes)`; the background sandbox runs
`python -m sandbox.proxy --port P --route HOST=ADDR:PORT ...` (`serve_proxy`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

LOCALHOST = "127.0.0.1"
TUNNEL_PORT = 443
_HEAD_LIMIT = 16 * 1024
_HEAD_TIMEOUT = 10.0
_CONNECT_TIMEOUT = 5.0
_CHUNK = 64 * 1024
# A request line is method, target and HTTP version.
_REQUEST_LINE_PARTS = 3

logger = logging.getLogger(__name__)

Address = tuple[str, int]


class RouteTable:
    """Hostname patterns to emulator addresses.

    An exact hostname wins over a pattern; among `*.suffix` patterns the longest
    suffix wins. `*.example.com` matches any name ending in `.example.com`
    (one label or more), not `example.com` itself.
    """

    def __init__(self, routes: Mapping[str, Address]) -> None:
        """Build the table.

        Args:
            routes: hostname or `*.suffix` pattern -> (host, port) to connect to.

        Raises:
            ValueError: a pattern has a wildcard anywhere but the first label.
        """
        self._exact: dict[str, Address] = {}
        suffixes: list[tuple[str, Address]] = []
        for pattern, address in routes.items():
            name = _normalise(pattern)
            if name.startswith("*."):
                suffix = name[1:]
                if "*" in suffix:
                    msg = f"unsupported route pattern: {pattern!r}"
                    raise ValueError(msg)
                suffixes.append((suffix, (address[0], int(address[1]))))
            elif "*" in name:
                msg = f"unsupported route pattern: {pattern!r}"
                raise ValueError(msg)
            else:
                self._exact[name] = (address[0], int(address[1]))
        self._suffixes = sorted(suffixes, key=lambda item: len(item[0]), reverse=True)

    def lookup(self, host: str) -> Address | None:
        """The emulator address for `host`, or None when it has no route."""
        name = _normalise(host)
        if name in self._exact:
            return self._exact[name]
        for suffix, address in self._suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                return address
        return None


def _normalise(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _parse_connect_target(target: str) -> tuple[str, int] | None:
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit() or host.startswith("["):
        return None
    return host, int(port_text)


class _Proxy:
    """The asyncio side: accepts clients and relays tunnels."""

    def __init__(self, routes: Mapping[str, Address]) -> None:
        self.table = RouteTable(routes)
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self, port: int) -> int:
        self._server = await asyncio.start_server(
            self._handle, host=LOCALHOST, port=port, limit=_HEAD_LIMIT
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        try:
            await self._serve_client(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            logger.debug("client connection ended: %s", exc)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), timeout=_HEAD_TIMEOUT
            )
        except asyncio.LimitOverrunError:
            await _reply(writer, 431, "Request Header Fields Too Large")
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != _REQUEST_LINE_PARTS or parts[0].upper() != "CONNECT":
            # Only the method: a plain-HTTP request line may carry tokens in its URL.
            method = parts[0][:20] if parts else "?"
            logger.info("refused non-CONNECT request: %s", method)
            await _reply(writer, 405, "Method Not Allowed", "Allow: CONNECT\r\n")
            return
        target = _parse_connect_target(parts[1])
        address = None
        if target is not None and target[1] == TUNNEL_PORT:
            address = self.table.lookup(target[0])
        if address is None:
            logger.info("refused CONNECT %s: no route", parts[1][:200])
            await _reply(writer, 403, "Forbidden")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*address), timeout=_CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            logger.warning("CONNECT %s -> %s:%s failed: %s", parts[1], *address, exc)
            await _reply(writer, 502, "Bad Gateway")
            return
        logger.info("CONNECT %s -> %s:%s", parts[1], *address)
        self._writers.add(up_writer)
        try:
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
            up_writer.close()


async def _reply(
    writer: asyncio.StreamWriter, status: int, reason: str, extra: str = ""
) -> None:
    body = f"{status} {reason}\n".encode()
    writer.write(
        (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
        ).encode("latin-1")
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy bytes until EOF, then half-close the other side."""
    try:
        while chunk := await source.read(_CHUNK):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        sink.close()


@dataclasses.dataclass(frozen=True)
class RunningProxy:
    """A proxy serving in a background thread."""

    port: int

    @property
    def url(self) -> str:
        """The value for HTTPS_PROXY, for example `http://127.0.0.1:8903`."""
        return f"http://{LOCALHOST}:{self.port}"


@contextlib.contextmanager
def running_proxy(
    routes: Mapping[str, Address], port: int = 0
) -> Iterator[RunningProxy]:
    """Serve the proxy in a daemon thread for the duration of a `with` block.

    Args:
        routes: hostname or `*.suffix` pattern -> (host, port) of an emulator.
        port: the port to listen on; 0 picks a free one.

    Yields:
        The running proxy, with `.url` and `.port`.

    Raises:
        RuntimeError: the proxy did not start.
    """
    proxy = _Proxy(routes)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    bound: list[int] = []
    errors: list[OSError] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            bound.append(loop.run_until_complete(proxy.start(port)))
        except OSError as exc:
            errors.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(proxy.close())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    thread = threading.Thread(target=run, name="sandbox-proxy", daemon=True)
    thread.start()
    started.wait(timeout=10)
    if not bound:
        thread.join(timeout=1)
        msg = f"the CONNECT proxy did not start on port {port}: {errors}"
        raise RuntimeError(msg)
    try:
        yield RunningProxy(port=bound[0])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def serve_proxy(routes: Mapping[str, Address], port: int) -> None:
    """Serve the proxy in the foreground until SIGINT or SIGTERM.

    Args:
        routes: hostname or `*.suffix` pattern -> (host, port) of an emulator.
        port: the port to listen on (127.0.0.1).
    """

    async def main() -> None:
        proxy = _Proxy(routes)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        bound = await proxy.start(port)
        logger.info("CONNECT proxy listening on http://%s:%s", LOCALHOST, bound)
        await stop.wait()
        logger.info("CONNECT proxy stopping")
        await proxy.close()

    asyncio.run(main())


def parse_route(text: str) -> tuple[str, Address]:
    """Parse `HOST=ADDR:PORT` (for example `*.api.clevertap.com=127.0.0.1:8901`).

    Args:
        text: one `--route` argument.

    Returns:
        The pattern and the address.

    Raises:
        argparse.ArgumentTypeError: the text is malformed.
    """
    pattern, sep, target = text.partition("=")
    address = _parse_connect_target(target)
    if not sep or not pattern or address is None:
        msg = f"expected HOST=ADDR:PORT, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return pattern, address


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m sandbox.proxy --port P --route HOST=ADDR:PORT ...`.

    Args:
        argv: the arguments (default: `sys.argv[1:]`).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.proxy", description="local CONNECT proxy"
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--route", type=parse_route, action="append", required=True, dest="routes"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    serve_proxy(dict(args.routes), args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
