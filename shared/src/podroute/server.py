"""Running an app: Hypercorn (default, with uvloop), uvicorn or granian.

Binds `PORT` and, when it differs, `PORT_HEALTH` (RunPod's worker contract); SIGTERM and SIGINT
shut down gracefully: the listener closes and requests in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from quart import Quart

from podroute.settings import ServerSettings

SERVERS = ("hypercorn", "uvicorn", "granian")
_GRANIAN_TARGET_ENV = "PODROUTE_GRANIAN_TARGET"

logger = logging.getLogger("podroute.server")


class ServerError(RuntimeError):
    """The server cannot start (missing package, unsupported option, port in use)."""


def tune_gc() -> None:
    """Freeze the start-up heap and collect young objects less often.

    Request handling allocates many short-lived objects; with the default gen-0 threshold the
    collector runs every few requests and walks the whole (large, immortal) import heap, which shows
    up as p99 latency. Set PODROUTE_GC_TUNING=0 to keep Python's defaults.
    """
    if os.environ.get("PODROUTE_GC_TUNING", "1") == "0":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def _shutdown_event() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, event.set)
    return event


def _hypercorn_main(app: Quart, settings: ServerSettings) -> Coroutine[Any, Any, None]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{settings.host}:{port}" for port in settings.ports]
    config.graceful_timeout = settings.graceful_timeout
    config.keep_alive_timeout = 600
    config.accesslog = logging.getLogger("podroute.access") if settings.access_log else None
    config.access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
    config.errorlog = logging.getLogger("hypercorn.error")

    async def main() -> None:
        stop = _shutdown_event()
        await serve(app, config, shutdown_trigger=stop.wait)

    return main()


def _bound_sockets(settings: ServerSettings) -> list[socket.socket]:
    sockets = []
    for port in settings.ports:
        sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, port))
        except OSError as error:
            raise ServerError(f"cannot listen on {settings.host}:{port}: {error.strerror}") from None
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


def _serve_uvicorn(app: Quart, settings: ServerSettings) -> None:
    try:
        import uvicorn
    except ImportError:
        raise ServerError("uvicorn is not installed: pip install 'podroute[uvicorn]'") from None
    config = uvicorn.Config(
        app,
        loop="uvloop" if _install_uvloop() else "asyncio",
        http="auto",
        lifespan="on",
        log_config=None,
        access_log=settings.access_log,
        timeout_keep_alive=600,
        timeout_graceful_shutdown=int(settings.graceful_timeout),
    )
    server = uvicorn.Server(config)
    tune_gc()
    server.run(sockets=_bound_sockets(settings))


def _serve_granian(target: str, settings: ServerSettings) -> None:
    try:
        from granian.constants import Interfaces, Loops
        from granian.server import Server as Granian
    except ImportError:
        raise ServerError("granian is not installed: pip install 'podroute[granian]'") from None
    if len(settings.ports) > 1:
        raise ServerError("granian binds one port; use --server hypercorn or uvicorn for PORT_HEALTH")
    os.environ[_GRANIAN_TARGET_ENV] = target
    Granian(
        "podroute.server:granian_app",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        loop=Loops.auto,
        workers=1,
        factory=True,
        log_enabled=True,
        log_access=settings.access_log,
    ).serve()


def granian_app() -> Quart:
    """App factory that granian's worker calls: rebuilds the app from the target env variable."""
    from podroute.app import create_app
    from podroute.discovery import load_target

    resource, registry = load_target(os.environ[_GRANIAN_TARGET_ENV])
    app = create_app(resource, registry=registry)
    tune_gc()
    return app


def run_app(app: Quart, settings: ServerSettings, server: str = "hypercorn", target: str = "") -> None:
    """Serve `app` until SIGTERM/SIGINT on the chosen server; `target` is needed for granian."""
    if server not in SERVERS:
        raise ServerError(f"unknown server {server!r}; choose one of {', '.join(SERVERS)}")
    ports = ", ".join(str(p) for p in settings.ports)
    logger.info("serving on %s port(s) %s with %s", settings.host, ports, server)
    if server == "uvicorn":
        _serve_uvicorn(app, settings)
    elif server == "granian":
        _serve_granian(target, settings)
    else:
        _install_uvloop()
        coroutine = _hypercorn_main(app, settings)
        tune_gc()
        try:
            asyncio.run(coroutine)
        except OSError as error:
            raise ServerError(f"cannot listen on {settings.host} port(s) {ports}: {error.strerror}") from None


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP port can be bound on `host` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def first_free_port(host: str, port: int, attempts: int = 20, notify: Callable[[str], None] = print) -> int:
    """`port` if free, else the next free one (telling the user), trying `attempts` ports."""
    for candidate in range(port, port + attempts):
        if port_is_free(host, candidate):
            if candidate != port:
                notify(f"port {port} is in use; using {candidate} instead")
            return candidate
    raise ServerError(f"ports {port}-{port + attempts - 1} on {host} are all in use; set FLASH_PORT")
