"""Startup hooks: run once the server starts, in the background, so `/ping` can say 204 meanwhile.

`Lifecycle` is started and stopped by whatever owns the ASGI lifespan of an app: Quart's
`before_serving`/`after_serving` for an app made by `create_app`, the worker app itself for
`podroute serve` (`podroute.worker_app`). A hook that fails marks its mount failed (`/ping` 503);
it never crashes the worker.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time

from podroute.state import PodRouteState, StartupState

logger = logging.getLogger("podroute.app")


async def _run_hooks(state: StartupState, who: str) -> None:
    for hook in state.hooks:
        name = getattr(hook, "__name__", repr(hook))
        try:
            if inspect.iscoroutinefunction(hook):
                state.results.append(await hook())
            else:
                state.results.append(await asyncio.to_thread(hook))
        except Exception as error:  # a failing hook must mark the worker unhealthy, not crash it
            state.status, state.error = "failed", f"{name}: {error}"
            logger.exception("startup hook %s of %s failed; /ping now answers 503", name, who)
            return
    state.status = "ready"
    state.ready_after_s = round(time.monotonic() - state.started_at, 3)
    if gc.isenabled() and gc.get_freeze_count():
        gc.freeze()  # what the hooks loaded (models, weights) lives as long as the process
    logger.info("%s ready after %.3fs of startup hooks", who, state.ready_after_s)


class Lifecycle:
    """Runs each mount's startup hooks as a background task; cancels them at shutdown."""

    def __init__(self, state: PodRouteState) -> None:
        self.state = state
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the hooks of every mount that is still starting (call inside the running loop)."""
        for mount, startup in zip(self.state.mounts, self.state.startup, strict=True):
            if startup.status == "starting":
                startup.started_at = time.monotonic()
                self._tasks.append(asyncio.create_task(_run_hooks(startup, mount.resource.name)))

    async def stop(self) -> None:
        """Cancel hooks still running."""
        for task in self._tasks:
            task.cancel()
