"""A do-nothing CleverTap upload endpoint: answers success after a fixed delay.

P2's information row: the same live run as against the CleverTap emulator, but the
server spends almost no CPU (it counts the records and checks nothing), so the
figure shows how well target-clevertap hides the latency when the server does not
share the client's two cores, as a real CleverTap does not.
`python noop_upload_server.py --port 8080 --latency-ms 100`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from starlette.requests import Request


def make_app(latency_s: float) -> Starlette:
    """The app: `POST /1/upload` and `GET /health`.

    Args:
        latency_s: seconds added to every upload call.

    Returns:
        The Starlette app.
    """

    async def upload(request: Request) -> Response:
        records = json.loads(await request.body()).get("d") or []
        await asyncio.sleep(latency_s)
        reply = {"status": "success", "processed": len(records), "unprocessed": []}
        return JSONResponse(reply)

    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/1/upload", upload, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def main() -> None:
    """Serve on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    app = make_app(args.latency_ms / 1000)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
