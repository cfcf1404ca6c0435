"""A worker: one `podroute serve` process running a build, and its health as RunPod sees it.

States: `starting` (process up, /ping not answering yet), `initializing` (/ping 204), `ready`
(/ping 200: gets traffic), `draining` (finishes what it has, gets nothing new), `unhealthy` (any
other /ping answer, or the process died), `stopped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from podroute.runtime.volumes import VolumeMount, with_volume

logger = logging.getLogger("podroute.runtime.workers")

LIVE_STATES = frozenset({"starting", "initializing", "ready"})

StateListener = Callable[["Worker", str, str], None]
"""Called as (worker, new state, reason) on every transition."""
LogListener = Callable[["Worker", str], None]
"""Called with every line the worker prints."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class WorkerSpec:
    """How to start a worker: interpreter, folder, serve target and environment."""

    python: str
    cwd: Path
    target: str
    env: dict[str, str]
    release_key: str
    startup_timeout_s: float = 600.0
    volume: VolumeMount | None = None


@dataclass
class Worker:
    """A worker process and what the pool knows about it."""

    spec: WorkerSpec
    id: str = field(default_factory=lambda: "w-" + secrets.token_hex(5))
    port: int = field(default_factory=free_port)
    state: str = "starting"
    inflight: int = 0
    started_at: float = field(default_factory=time.monotonic)
    first_204_at: float | None = None
    ready_at: float | None = None
    last_active: float = field(default_factory=time.monotonic)
    failure: str | None = None
    log: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    process: asyncio.subprocess.Process | None = None
    on_state: StateListener | None = None
    on_log: LogListener | None = None
    retired: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)
    """Set once the worker leaves service (draining, unhealthy, stopped): long-lived connections
    through the gateway (WebSockets) are closed then, so the drain can finish."""
    _health_task: asyncio.Task[None] | None = None
    _output_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Where the worker listens."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def release_key(self) -> str:
        """The release this worker runs."""
        return self.spec.release_key

    def describe(self) -> dict[str, object]:
        """Status for the control API."""
        cold_start = None
        if self.ready_at is not None:
            cold_start = round(self.ready_at - (self.first_204_at or self.started_at), 3)
        return {
            "id": self.id,
            "state": self.state,
            "port": self.port,
            "release": self.release_key,
            "inflight": self.inflight,
            "pid": self.process.pid if self.process else None,
            "cold_start_s": cold_start,
            "failure": self.failure,
        }

    @property
    def startup_s(self) -> float | None:
        """Seconds from process start to ready (None until ready)."""
        return None if self.ready_at is None else round(self.ready_at - self.started_at, 3)

    def set_state(self, state: str, reason: str) -> None:
        """Move to `state`, telling the listener why."""
        if state == self.state:
            return
        self.state = state
        if state not in LIVE_STATES:
            self.retired.set()
        self._tell(state, reason)

    def _tell(self, state: str, reason: str) -> None:
        if self.on_state is not None:
            self.on_state(self, state, reason)

    async def start(self, health_path: str = "/ping") -> None:
        """Start the process (with its network volume in place) and its health and log watchers."""
        command, volume_env = with_volume(
            [self.spec.python, "-m", "podroute", "serve", self.spec.target], self.spec.volume
        )
        env = {
            **os.environ,
            **self.spec.env,
            **volume_env,
            "PORT": str(self.port),
            "PORT_HEALTH": str(self.port),
            "HOST": "127.0.0.1",
            "RUNPOD_POD_ID": self.id,
            "PYTHONPATH": str(self.spec.cwd),
            "PYTHONUNBUFFERED": "1",
        }
        self.process = await asyncio.create_subprocess_exec(
            *command,
            cwd=self.spec.cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        logger.info("worker %s started (pid %s, port %s)", self.id, self.process.pid, self.port)
        self._tell("starting", f"process started (pid {self.process.pid}, port {self.port})")
        self._output_task = asyncio.create_task(self._read_output())
        self._health_task = asyncio.create_task(self._watch_health(health_path))

    async def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if self.on_log is not None:
                self.on_log(self, line)
            logger.debug("worker %s: %s", self.id, line)

    def _mark_unhealthy(self, reason: str) -> None:
        if self.state in ("stopped", "unhealthy"):
            return
        self.failure = reason
        self.set_state("unhealthy", reason)
        logger.warning("worker %s unhealthy: %s", self.id, reason)

    async def _watch_health(self, health_path: str) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while self.state not in ("stopped", "unhealthy"):
                if self.process is not None and self.process.returncode is not None:
                    self._mark_unhealthy(f"process exited with status {self.process.returncode}")
                    return
                await self._probe(client, health_path)
                await asyncio.sleep(0.1 if self.state in ("starting", "initializing") else 1.0)

    async def _probe(self, client: httpx.AsyncClient, health_path: str) -> None:
        try:
            response = await client.get(self.url + health_path)
        except httpx.HTTPError:
            if self.state == "ready":
                self._mark_unhealthy("stopped answering its health check")
            elif time.monotonic() - self.started_at > self.spec.startup_timeout_s:
                self._mark_unhealthy(f"no health answer within {self.spec.startup_timeout_s:.0f}s")
            return
        if response.status_code == 200:
            if self.state in ("starting", "initializing"):
                self.ready_at = time.monotonic()
                self.set_state("ready", f"/ping answered 200 after {self.startup_s:.2f} s")
                logger.info("worker %s ready", self.id)
        elif response.status_code == 204:
            if self.state == "starting":
                self.first_204_at = time.monotonic()
                self.set_state("initializing", "/ping answered 204 (startup hooks running)")
        else:
            self._mark_unhealthy(f"health check answered {response.status_code}")

    def last_lines(self, count: int = 15) -> list[str]:
        """The last lines the worker printed."""
        return list(self.log)[-count:]

    async def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the worker's process group, then SIGKILL after `grace_s`."""
        previous, self.state = self.state, "stopped"
        self.retired.set()
        if self._health_task is not None and self._health_task is not asyncio.current_task():
            self._health_task.cancel()
        process = self.process
        if process is None or process.returncode is not None:
            self._tell("stopped", f"stopped (was {previous}; the process had already exited)")
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        self._tell("stopped", f"process exited with status {process.returncode} (was {previous})")
        logger.info("worker %s stopped (was %s)", self.id, previous)
