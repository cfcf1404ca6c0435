"""Running an app: Hypercorn (with uvloop), uvicorn (httptools + uvloop) or granian.

WebSocket routes work on all three (uvicorn through the `websockets` package, Hypercorn and
Granian natively); uvicorn and Hypercorn also stop a WebSocket message over the app's limit as it
arrives, while Granian hands it whole to the app, which then closes the socket with 1009.

`podroute serve` defaults to `DEFAULT_WORKER_SERVER` (uvicorn, the bench's pick); the dev server,
the dashboard and the runtime run on Hypercorn. Binds `PORT` and, when it differs, `PORT_HEALTH`
(RunPod's worker contract); SIGTERM and SIGINT shut down gracefully: the listener closes and
requests in flight finish. Every server gets the same limits from `ServerSettings` (keep-alive and
header timeouts, head size, URL length, header count) and the same cheap access log
(`podroute.serving`); `hypercorn_config` is the one place Hypercorn's settings are made.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import importlib.util
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

import orjson

from podroute.dispatch import ASGIApp
from podroute.logs import AccessLog, access_log_enabled
from podroute.serving import ServingGuard
from podroute.settings import DEFAULT_MAX_MESSAGE_BYTES, ServerSettings
from podroute.state import PodRouteState
from podroute.worker_app import WorkerApp

if TYPE_CHECKING:
    from quart import Quart

SERVERS = ("hypercorn", "uvicorn", "granian")
DEFAULT_WORKER_SERVER = "uvicorn"
"""What `podroute serve` runs unless told otherwise (`--server`, `PODROUTE_SERVER`): see README."""
FALLBACK_WORKER_SERVER = "hypercorn"
"""What `podroute serve` runs by default where uvicorn is not installed (an older install)."""
_GRANIAN_TARGET_ENV = "PODROUTE_GRANIAN_TARGET"
_GRANIAN_SETTINGS_ENV = "PODROUTE_GRANIAN_SETTINGS"

logger = logging.getLogger("podroute.server")


class ServerError(RuntimeError):
    """The server cannot start (missing package, unsupported option, port in use)."""


def tune_gc() -> None:
    """Freeze the start-up heap and collect young objects less often.

    Request handling allocates many short-lived objects; with the default gen-0 threshold the
    collector runs every few requests and walks the whole (large, immortal) import heap, which shows
    up as p99 latency. The heap is frozen as it is, without a full collection first: the import
    heap holds next to no garbage (a full collection finds none for the cpu service) and one would
    delay the first answer (9 ms on the bench machine). Set PODROUTE_GC_TUNING=0 to keep Python's
    defaults.
    """
    if os.environ.get("PODROUTE_GC_TUNING", "1") == "0":
        return
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def install_uvloop() -> bool:
    """Make uvloop the event loop policy when it is installed; True if it is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def shutdown_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call inside the running loop)."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, event.set)
    return event


def free_descriptors_on_close() -> None:
    """Make Hypercorn close a connection as soon as the client has closed it.

    Hypercorn 0.18 keeps the socket of a connection whose client closed it until the keep-alive
    timer fires, because the connection's task group waits for that timer (issue #14: 500
    connect+close calls held 515 descriptors). Stopping the timer once reading has ended lets
    the connection close at once; requests still in flight on it finish first.
    """
    from hypercorn.asyncio.tcp_server import TCPServer

    if getattr(TCPServer, "_podroute_closes_at_eof", False):
        return
    read_data = TCPServer._read_data

    async def read_then_stop_idle_timer(self: TCPServer) -> None:
        await read_data(self)
        await self.idle_task.stop()

    TCPServer._read_data = read_then_stop_idle_timer  # type: ignore[method-assign]
    TCPServer._podroute_closes_at_eof = True  # type: ignore[attr-defined]


def hypercorn_config(settings: ServerSettings, max_message_bytes: int | None = None) -> Any:
    """Hypercorn's `Config` for `settings`: binds, timeouts, head size, graceful drain.

    Shared by every Hypercorn that podroute runs (dev server, runtime gateway, workers on
    `--server hypercorn`). The access log is `podroute.serving`'s, so Hypercorn's own is off.
    `max_message_bytes` bounds a WebSocket message as it arrives (Hypercorn's 16 MiB if None).
    """
    from hypercorn.config import Config

    free_descriptors_on_close()
    config = Config()
    config.bind = [f"{settings.host}:{port}" for port in settings.ports]
    config.graceful_timeout = settings.graceful_timeout
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.read_timeout = int(max(settings.keep_alive_timeout, settings.header_timeout))
    config.h11_max_incomplete_size = settings.max_header_bytes
    config.h2_max_inbound_frame_size = max(16384, min(settings.max_header_bytes, 2**24 - 1))
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    if max_message_bytes is not None:
        config.websocket_max_message_size = max_message_bytes
    return config


def message_limit(app: ASGIApp) -> int:
    """The largest WebSocket message `app` accepts: its podroute setting, else the default.

    Servers get it as their own limit, so an oversize message is refused (1009) as it arrives,
    never buffered whole.
    """
    state = app.state if isinstance(app, WorkerApp) else getattr(app, "extensions", {}).get("podroute")
    if isinstance(state, PodRouteState):
        return state.settings.max_message_bytes
    return DEFAULT_MAX_MESSAGE_BYTES


def _hypercorn_main(app: ASGIApp, settings: ServerSettings, limit: int) -> Coroutine[Any, Any, None]:
    from hypercorn.asyncio import serve

    config = hypercorn_config(settings, limit)

    async def main() -> None:
        stop = shutdown_event()
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    return main()


def guard_app(app: ASGIApp, settings: ServerSettings) -> tuple[ServingGuard, AccessLog | None]:
    """`app` behind `podroute.serving`'s limits and access log; also returns the access log, if on."""
    log = AccessLog() if settings.access_log and access_log_enabled() else None
    return ServingGuard(app, settings, log), log


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


def default_worker_server() -> str:
    """`DEFAULT_WORKER_SERVER` when it is installed, else Hypercorn (always installed)."""
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("httptools") is None:
        return FALLBACK_WORKER_SERVER
    return DEFAULT_WORKER_SERVER


def _serve_uvicorn(app: ASGIApp, settings: ServerSettings, limit: int) -> None:
    try:
        import uvicorn

        from podroute.uvicorn_server import (
            GracefulUvicornServer,
            lazy_websocket_protocol,
            limited_httptools_protocol,
        )
    except ImportError:
        raise ServerError("uvicorn is not installed: pip install uvicorn httptools") from None
    config = uvicorn.Config(
        app,
        loop="uvloop" if install_uvloop() else "asyncio",
        http=limited_httptools_protocol(settings),
        ws=lazy_websocket_protocol if importlib.util.find_spec("websockets") else "auto",  # type: ignore[arg-type]
        ws_max_size=limit,
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout)),
        timeout_graceful_shutdown=int(settings.graceful_timeout),
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
    server = GracefulUvicornServer(config)
    tune_gc()
    server.run(sockets=_bound_sockets(settings))


def _serve_granian(target: str, settings: ServerSettings) -> None:
    try:
        from granian.constants import Interfaces, Loops
        from granian.http import HTTP1Settings
        from granian.server import Server as Granian
    except ImportError:
        raise ServerError("granian is not installed: pip install 'podroute[granian]'") from None
    if len(settings.ports) > 1:
        raise ServerError("granian binds one port; use --server hypercorn or uvicorn for PORT_HEALTH")
    os.environ[_GRANIAN_TARGET_ENV] = target
    os.environ[_GRANIAN_SETTINGS_ENV] = orjson.dumps(dataclasses.asdict(settings)).decode()
    Granian(
        "podroute.server:granian_app",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        loop=Loops.auto,
        workers=1,
        factory=True,
        log_enabled=True,
        log_access=False,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(settings.header_timeout * 1000),
            keep_alive=True,
            max_buffer_size=max(settings.max_header_bytes, 8192),
        ),
    ).serve()


def granian_app() -> ASGIApp:
    """App factory that granian's worker calls: rebuilds the app from the target env variable."""
    from podroute.discovery import load_target
    from podroute.worker_app import worker_app

    resource, registry = load_target(os.environ[_GRANIAN_TARGET_ENV])
    settings = ServerSettings(**orjson.loads(os.environ[_GRANIAN_SETTINGS_ENV]))
    guarded, _ = guard_app(worker_app(resource, registry), settings)
    tune_gc()
    return guarded


def run_app(
    app: ASGIApp | Quart, settings: ServerSettings, server: str = "hypercorn", target: str = ""
) -> None:
    """Serve `app` until SIGTERM/SIGINT on the chosen server; `target` is needed for granian."""
    if server not in SERVERS:
        raise ServerError(f"unknown server {server!r}; choose one of {', '.join(SERVERS)}")
    ports = ", ".join(str(p) for p in settings.ports)
    logger.info("serving on %s port(s) %s with %s", settings.host, ports, server)
    if server == "granian":
        _serve_granian(target, settings)
        return
    asgi = cast(ASGIApp, app)
    guarded, log = guard_app(asgi, settings)
    try:
        if server == "uvicorn":
            _serve_uvicorn(guarded, settings, message_limit(asgi))
        else:
            _serve_hypercorn(guarded, settings, ports, message_limit(asgi))
    finally:
        if log is not None:
            log.flush()


def _serve_hypercorn(app: ASGIApp, settings: ServerSettings, ports: str, limit: int) -> None:
    install_uvloop()
    coroutine = _hypercorn_main(app, settings, limit)
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
