"""The comparison peers for the CPU benchmark: the CPU service's handlers without PodRoute.

    python -m bench.peers quart --server hypercorn|uvicorn|granian --port PORT [--no-access-log]

serves the same handler functions (`services.cpu.endpoint`) as bare Quart routes, on exactly the
server settings `podroute serve` uses: the same `podroute.server.run_app` for Hypercorn and uvicorn
(uvloop, keep-alive, GC tuning, JSON access log) and the same Granian options for Granian. The
FastAPI peer is `bench.fastapi_app`, served by plain `uvicorn` as Flash workers are.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from quart import Quart, request

from podroute.logs import configure_logging
from podroute.server import SERVERS, run_app, tune_gc
from podroute.settings import ServerSettings, log_level_from
from services.cpu.endpoint import cpu_health, transform_text, validate_text


def create_quart_app() -> Quart:
    """The CPU service's three routes as hand-written Quart views around the same handlers."""
    app = Quart(__name__)

    @app.get("/health")
    async def health() -> Any:
        return await cpu_health()

    @app.post("/validate")
    async def validate() -> Any:
        data = await request.get_json()
        return await validate_text(data["text"])

    @app.post("/transform")
    async def transform() -> Any:
        data = await request.get_json()
        return await transform_text(data["text"], data["operation"])

    @app.errorhandler(ValueError)
    async def bad_request(error: ValueError) -> Any:
        return {"detail": str(error)}, 400

    return app


def granian_quart_app() -> Quart:
    """Factory Granian's worker calls, like `podroute.server.granian_app` does for PodRoute."""
    app = create_quart_app()
    tune_gc()
    return app


def _serve_granian(settings: ServerSettings) -> None:
    from granian.constants import Interfaces, Loops
    from granian.server import Server as Granian

    # The options podroute.server uses for `podroute serve --server granian`.
    Granian(
        "bench.peers:granian_quart_app",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        loop=Loops.auto,
        workers=1,
        factory=True,
        log_enabled=True,
        log_access=settings.access_log,
    ).serve()


def main(argv: list[str] | None = None) -> int:
    """Serve the bare Quart peer until SIGTERM."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("framework", choices=["quart"])
    parser.add_argument("--server", choices=SERVERS, default="hypercorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    configure_logging(log_level_from(os.environ))
    settings = ServerSettings(
        host=args.host, port=args.port, port_health=args.port, access_log=not args.no_access_log
    )
    if args.server == "granian":
        _serve_granian(settings)
    else:
        run_app(create_quart_app(), settings, server=args.server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
