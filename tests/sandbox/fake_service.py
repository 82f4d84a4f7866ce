"""A stand-in for an emulator process in the control tests (stdlib HTTPS server).

Usage: python fake_service.py NAME PORT CERT KEY [--fail] [--silent] [--ignore-sigterm]
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("port", type=int)
    parser.add_argument("cert")
    parser.add_argument("key")
    parser.add_argument("--fail", action="store_true", help="exit 1 at once")
    parser.add_argument("--silent", action="store_true", help="never listen")
    parser.add_argument("--ignore-sigterm", action="store_true")
    args = parser.parse_args()
    sys.stderr.write(f"fake {args.name} starting\n")
    if args.fail:
        sys.stderr.write("fake failure: database is locked\n")
        return 1
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.silent:
        while True:
            time.sleep(1)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"service": args.name, "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
