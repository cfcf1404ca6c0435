"""How the runtime listens: Hypercorn (with uvloop) set up for clients that misbehave.

- Idle keep-alive connections, and connections that never finish sending their headers, are closed
  after `keep_alive_s`; a client silent for `read_timeout_s` in the middle of a request is dropped.
- A connection the client closes frees its descriptor at once. Hypercorn 0.18 keeps a connection
  that closed without sending a request open until its keep-alive timer fires (600 s under the old
  settings); `install_prompt_close` stops that timer when the client's side ends.
- Running out of descriptors is logged (`DescriptorWatch`) and survived: the listener keeps
  accepting once descriptors are free again, and the gateway answers 503 + Retry-After when it
  cannot open a worker connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
from dataclasses import dataclass
from typing import Any

import hypercorn.asyncio.run as hypercorn_run
from hypercorn.asyncio import serve
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config

from podroute.server import tune_gc

logger = logging.getLogger("podroute.runtime.listener")


@dataclass(frozen=True)
class ListenSettings:
    """Address and connection limits of the runtime's listener."""

    host: str = "localhost"
    port: int = 8800
    keep_alive_s: float = 30.0
    read_timeout_s: float = 360.0
    graceful_timeout_s: float = 30.0
    backlog: int = 1024


def hypercorn_config(settings: ListenSettings) -> Config:
    """The Hypercorn configuration the runtime serves with (no access log: the gateway records)."""
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.keep_alive_timeout = settings.keep_alive_s
    config.read_timeout = int(settings.read_timeout_s)
    config.graceful_timeout = settings.graceful_timeout_s
    config.backlog = settings.backlog
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


class _PromptCloseTCPServer(TCPServer):
    async def _read_data(self) -> None:
        await super()._read_data()
        # the client's side has ended: a keep-alive timer must not hold the descriptor any longer
        await self.idle_task.stop()


def install_prompt_close() -> None:
    """Make Hypercorn free a connection's descriptor as soon as the client closes it."""
    hypercorn_run.TCPServer = _PromptCloseTCPServer  # type: ignore[attr-defined]


def open_descriptors() -> int:
    """How many file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


class DescriptorWatch:
    """Logs once when the process nears its descriptor limit, and once when it has recovered."""

    def __init__(self, warn_ratio: float = 0.9, clear_ratio: float = 0.7, interval_s: float = 1.0) -> None:
        self.warn_ratio = warn_ratio
        self.clear_ratio = clear_ratio
        self.interval_s = interval_s
        self.alarmed = False

    def check(self, used: int, limit: int) -> None:
        """Compare `used` descriptors with `limit` and log a change of state."""
        if not self.alarmed and used >= limit * self.warn_ratio:
            self.alarmed = True
            logger.error(
                "descriptor limit nearly reached: %d of %d open; new connections are refused until "
                "some close. Raise 'ulimit -n' or lower PODROUTE_RUNTIME_KEEP_ALIVE_S",
                used,
                limit,
                extra={"descriptors": used, "descriptor_limit": limit},
            )
        elif self.alarmed and used <= limit * self.clear_ratio:
            self.alarmed = False
            logger.warning(
                "descriptors back to %d of %d; accepting connections normally",
                used,
                limit,
                extra={"descriptors": used, "descriptor_limit": limit},
            )

    async def run(self) -> None:
        """Check every `interval_s` until cancelled."""
        while True:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            try:
                used = open_descriptors()
            except OSError:  # listing /proc/self/fd needs a descriptor too: none is left
                used = limit
            self.check(used, limit)
            await asyncio.sleep(self.interval_s)


def _raise_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        logger.info("descriptor limit raised from %d to %d", soft, hard)


async def _serve(app: Any, settings: ListenSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    watch = asyncio.create_task(DescriptorWatch().run())
    try:
        await serve(app, hypercorn_config(settings), shutdown_trigger=stop.wait)
    finally:
        watch.cancel()


def serve_runtime(app: Any, settings: ListenSettings) -> None:
    """Serve the runtime's ASGI app until SIGTERM/SIGINT."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    install_prompt_close()
    _raise_descriptor_limit()
    tune_gc()
    asyncio.run(_serve(app, settings))
