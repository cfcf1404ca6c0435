"""The app `podroute serve` runs: the lean path, with Quart loaded only when a request needs it.

A deployed worker is billed from the moment it starts, and RunPod sends it traffic once `/ping`
answers 200. Its `@remote` routes and `/ping` are served by `podroute.dispatch.LeanDispatch`, which
needs no web framework, so `WorkerApp` answers them without importing Quart, Werkzeug or Flask
(about half of a worker's start-up time). The Quart app that serves `/docs`, `/openapi.json`,
`/execute`, 404 and 405 (`podroute.app.quart_app`) is built on the first request that needs it,
also for a route or body decoder that reads the `quart.Request`. The worker owns the ASGI
lifespan: it starts the startup hooks (`podroute.lifecycle`) itself.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from podroute.dispatch import Fallback, LeanDispatch, Receive, Scope, Send
from podroute.lifecycle import Lifecycle
from podroute.registry import Registry
from podroute.resources import Resource
from podroute.settings import AppSettings
from podroute.state import PodRouteState, build_state

if TYPE_CHECKING:
    from quart import Quart

logger = logging.getLogger("podroute.app")


class LazyQuartFallback:
    """A `Fallback` that builds its Quart app (`build`) on the first call that needs one."""

    def __init__(self, build: Callable[[], Quart]) -> None:
        self._build = build
        self._fallback: Fallback | None = None

    def _quart(self) -> Fallback:
        if self._fallback is None:
            from podroute.quart_fallback import QuartFallback

            started = time.perf_counter()
            self._fallback = QuartFallback(self._build())
            if gc.get_freeze_count():
                gc.freeze()  # Quart's modules live as long as the process, like the rest of the import heap
            seconds = time.perf_counter() - started
            logger.debug("Quart loaded for the first request that needs it in %.3fs", seconds)
        return self._fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let Quart serve the connection."""
        await self._quart()(scope, receive, send)

    def methods_for(self, path: str) -> set[str]:
        """The methods Quart's routes take on `path`."""
        return self._quart().methods_for(path)

    def has_socket(self, path: str) -> bool:
        """Whether Quart has a WebSocket route at `path`."""
        return self._quart().has_socket(path)

    def request(self, scope: Scope, body: bytes) -> Any:
        """A Quart request for `scope`, its body already read."""
        return self._quart().request(scope, body)


class WorkerApp:
    """ASGI app of one worker: lifespan (startup hooks), the lean path, Quart on first need."""

    def __init__(self, state: PodRouteState) -> None:
        self.state = state
        self.lifecycle = Lifecycle(state)
        self.fallback = LazyQuartFallback(self._build_quart)
        self.dispatch = LeanDispatch(state, self.fallback)

    def _build_quart(self) -> Quart:
        from podroute.app import quart_app

        return quart_app(self.state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.dispatch(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.lifecycle.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.lifecycle.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def worker_app(
    resource: Resource, registry: Registry | None = None, settings: AppSettings | None = None
) -> WorkerApp:
    """The worker app serving `resource`'s routes (from `registry`, default the current one)."""
    return WorkerApp(build_state([resource], registry, settings))
