"""How the runtime listens: the same Hypercorn set-up as every podroute server, tuned for a gateway.

- Idle keep-alive connections, and connections that never finish sending their headers, are closed
  after `keep_alive_s`; a client silent for `read_timeout_s` in the middle of a request is dropped.
- A connection the client closes frees its descriptor at once (`podroute.server.hypercorn_config`).
- Head limits (414/431) are `podroute.serving`'s, as on workers; running out of descriptors is
  logged (`podroute.descriptors`) and survived: the listener accepts again once descriptors are
  free, and the gateway answers 503 + Retry-After when it cannot open a worker connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypercorn.asyncio import serve

from podroute.descriptors import raise_descriptor_limit
from podroute.server import hypercorn_config, install_uvloop, shutdown_event, tune_gc
from podroute.serving import ServingGuard
from podroute.settings import ServerSettings


@dataclass(frozen=True)
class ListenSettings:
    """Address and connection limits of the runtime's listener."""

    host: str = "localhost"
    port: int = 8800
    keep_alive_s: float = 30.0
    read_timeout_s: float = 360.0
    graceful_timeout_s: float = 30.0
    backlog: int = 1024

    @property
    def server(self) -> ServerSettings:
        """The shared server settings these amount to (no access log: the gateway records)."""
        return ServerSettings(
            host=self.host,
            port=self.port,
            access_log=False,
            graceful_timeout=self.graceful_timeout_s,
            keep_alive_timeout=self.keep_alive_s,
        )


def listener_config(settings: ListenSettings) -> Any:
    """Hypercorn's configuration for the runtime: the shared one, with the gateway's read timeout."""
    config = hypercorn_config(settings.server)
    config.read_timeout = int(settings.read_timeout_s)
    config.backlog = settings.backlog
    return config


async def _serve(app: Any, settings: ListenSettings, stopping: Callable[[], None]) -> None:
    stop = shutdown_event()

    async def stopped() -> None:
        await stop.wait()
        stopping()

    guarded: Any = ServingGuard(app, settings.server, None)
    await serve(guarded, listener_config(settings), shutdown_trigger=stopped)


def serve_runtime(app: Any, settings: ListenSettings, stopping: Callable[[], None] = lambda: None) -> None:
    """Serve the runtime's ASGI app until SIGTERM/SIGINT; `stopping` is called as soon as one comes
    (the gateway closes its WebSockets then, so the graceful wait is for HTTP requests only)."""
    install_uvloop()
    raise_descriptor_limit()
    tune_gc()
    asyncio.run(_serve(app, settings, stopping))
