"""The CONNECT proxy: real hostnames reach local TLS servers, nothing else gets out."""

from __future__ import annotations

import argparse
import errno
import socket
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sandbox.proxy import RouteTable, parse_route, running_proxy
from sandbox.server import free_port, serve_in_thread
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sandbox.proxy import RunningProxy
    from sandbox.server import ServerThread
    from sandbox.tls import TLSFiles
    from starlette.requests import Request


def _app(service: str) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "service": service,
                "host": request.headers.get("host"),
                "path": request.url.path,
            }
        )

    return Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])


@pytest.fixture
def servers(tls_files: TLSFiles) -> Iterator[dict[str, ServerThread]]:
    tls: dict[str, Any] = {
        "ssl_certfile": str(tls_files.server_cert),
        "ssl_keyfile": str(tls_files.server_key),
    }
    with (
        serve_in_thread(_app("clevertap"), **tls) as clevertap,
        serve_in_thread(_app("salesforce"), **tls) as salesforce,
    ):
        yield {"clevertap": clevertap, "salesforce": salesforce}


@pytest.fixture
def proxy(
    servers: dict[str, ServerThread],
    tls_files: TLSFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[RunningProxy]:
    ct = ("127.0.0.1", servers["clevertap"].port)
    sf = ("127.0.0.1", servers["salesforce"].port)
    routes = {
        "login.salesforce.com": sf,
        "test.salesforce.com": sf,
        "*.my.salesforce.com": sf,
        "api.clevertap.com": ct,
        "*.api.clevertap.com": ct,
    }
    with running_proxy(routes) as running:
        for name in ("https_proxy", "http_proxy", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        monkeypatch.setenv("HTTPS_PROXY", running.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.bundle))
        yield running


def _raw_request(port: int, head: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode())
        return sock.recv(4096).decode("latin-1")


def test_proxy_url_is_loopback_http(proxy: RunningProxy) -> None:
    assert proxy.url == f"http://127.0.0.1:{proxy.port}"


@pytest.mark.usefixtures("proxy")
def test_clevertap_hostname_reaches_clevertap_server_over_tls() -> None:
    response = requests.get("https://api.clevertap.com/1/profile.json", timeout=10)

    assert response.status_code == 200
    assert response.json() == {
        "service": "clevertap",
        "host": "api.clevertap.com",
        "path": "/1/profile.json",
    }


@pytest.mark.usefixtures("proxy")
def test_regional_clevertap_hostname_uses_wildcard_route() -> None:
    response = requests.post("https://in1.api.clevertap.com/1/upload", timeout=10)

    assert response.json()["service"] == "clevertap"
    assert response.json()["host"] == "in1.api.clevertap.com"


@pytest.mark.usefixtures("proxy")
def test_my_domain_hostname_reaches_salesforce_server() -> None:
    response = requests.get(
        "https://acme.my.salesforce.com/services/data/v61.0/sobjects", timeout=10
    )

    assert response.json() == {
        "service": "salesforce",
        "host": "acme.my.salesforce.com",
        "path": "/services/data/v61.0/sobjects",
    }


@pytest.mark.usefixtures("proxy")
def test_login_hostname_reaches_salesforce_server() -> None:
    response = requests.post(
        "https://login.salesforce.com/services/oauth2/token", timeout=10
    )

    assert response.json()["service"] == "salesforce"


@pytest.mark.usefixtures("proxy")
def test_unknown_host_is_refused() -> None:
    with pytest.raises(requests.exceptions.ProxyError, match="403"):
        requests.get("https://example.com/", timeout=10)


def test_unknown_host_gets_403_status_line(proxy: RunningProxy) -> None:
    reply = _raw_request(
        proxy.port, "CONNECT www.salesforce.com:443 HTTP/1.1\r\nHost: x\r\n\r\n"
    )

    assert reply.startswith("HTTP/1.1 403 ")


def test_routed_host_on_other_port_is_refused(proxy: RunningProxy) -> None:
    reply = _raw_request(proxy.port, "CONNECT api.clevertap.com:80 HTTP/1.1\r\n\r\n")

    assert reply.startswith("HTTP/1.1 403 ")


def test_plain_http_request_is_refused_with_405(proxy: RunningProxy) -> None:
    reply = _raw_request(
        proxy.port, "GET http://api.clevertap.com/ HTTP/1.1\r\nHost: x\r\n\r\n"
    )

    assert reply.startswith("HTTP/1.1 405 ")
    assert "Allow: CONNECT" in reply


def test_route_to_closed_port_answers_502() -> None:
    with running_proxy({"api.clevertap.com": ("127.0.0.1", free_port())}) as running:
        reply = _raw_request(
            running.port, "CONNECT api.clevertap.com:443 HTTP/1.1\r\n\r\n"
        )

    assert reply.startswith("HTTP/1.1 502 ")


def test_proxy_listens_on_127_0_0_1_only() -> None:
    # Another loopback address can take the same port only if the proxy did not
    # bind the wildcard address.
    with (
        running_proxy({}) as running,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other,
    ):
        try:
            other.bind(("127.0.0.2", running.port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                pytest.skip("127.0.0.2 is not a local address here")
            raise


def test_route_table_prefers_exact_name_then_longest_suffix() -> None:
    table = RouteTable(
        {
            "login.salesforce.com": ("127.0.0.1", 1),
            "*.salesforce.com": ("127.0.0.1", 2),
            "*.my.salesforce.com": ("127.0.0.1", 3),
        }
    )

    assert table.lookup("LOGIN.salesforce.com.") == ("127.0.0.1", 1)
    assert table.lookup("acme.my.salesforce.com") == ("127.0.0.1", 3)
    assert table.lookup("acme.sandbox.my.salesforce.com") == ("127.0.0.1", 3)
    assert table.lookup("test.salesforce.com") == ("127.0.0.1", 2)


def test_wildcard_route_does_not_match_bare_domain() -> None:
    table = RouteTable({"*.api.clevertap.com": ("127.0.0.1", 1)})

    assert table.lookup("api.clevertap.com") is None
    assert table.lookup("evilapi.clevertap.com") is None


def test_wildcard_inside_pattern_is_rejected() -> None:
    with pytest.raises(ValueError, match="unsupported route pattern"):
        RouteTable({"api.*.com": ("127.0.0.1", 1)})


def test_parse_route_reads_pattern_and_address() -> None:
    assert parse_route("*.api.clevertap.com=127.0.0.1:8901") == (
        "*.api.clevertap.com",
        ("127.0.0.1", 8901),
    )
    with pytest.raises(argparse.ArgumentTypeError):
        parse_route("api.clevertap.com:8901")
