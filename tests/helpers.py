"""Real servers for tests: Hypercorn in a thread, or the `podroute` CLI in a subprocess (a worker on
any of the servers `podroute serve` runs)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config

REPO_ROOT = Path(__file__).resolve().parent.parent
STRICT = os.environ.get("PODROUTE_STRICT_TESTS") == "1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_socket() -> socket.socket:
    """A listening socket on an ephemeral 127.0.0.1 port, ready to hand to Hypercorn."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def hypercorn_server(
    app: Any,
    ready_path: str = "/openapi.json",
    ready: tuple[int, ...] = (200, 204),
    sock: socket.socket | None = None,
) -> Iterator[str]:
    """Serve `app` on real Hypercorn in a thread, on `sock` or an ephemeral loopback port; yields
    the base URL once `ready_path` answers one of `ready`."""
    sock = sock or loopback_socket()
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.graceful_timeout = 2
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(serve(app, config, shutdown_trigger=stop.wait),),  # type: ignore[arg-type]
        daemon=True,
    )
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_for_http(base + ready_path, ok=ready, timeout=30)
    try:
        yield base
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        with contextlib.suppress(OSError):  # Hypercorn closes the descriptor it was handed
            sock.close()


def wait_for_http(url: str, timeout: float = 20.0, ok: tuple[int, ...] = (200, 204)) -> httpx.Response:
    """Poll `url` until it answers one of the `ok` statuses."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code in ok:
                return response
        except httpx.HTTPError as error:
            last = error
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {ok} within {timeout}s (last error: {last})")


class CliServer:
    """A `python -m podroute ...` subprocess with its output captured."""

    def __init__(self, args: list[str], cwd: Path, env: Mapping[str, str]) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        # a file, not a pipe: a chatty server must never block on a full pipe nobody reads yet
        self.output_file = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "podroute", *args],
            cwd=cwd,
            env=full_env,
            stdout=self.output_file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def output_so_far(self) -> str:
        """What the server printed until now (it keeps running; the file offset is left alone)."""
        fd = self.output_file.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def stop(self, timeout: float = 15.0) -> str:
        """SIGTERM the server, wait for it, and return everything it printed (idempotent)."""
        if self.output_file.closed:
            return self.output
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.output_file.seek(0)
        self.output: str = self.output_file.read()
        self.output_file.close()
        return self.output


@contextlib.contextmanager
def cli_server(
    args: list[str], cwd: Path, env: Mapping[str, str] | None = None, ready_url: str | None = None
) -> Iterator[CliServer]:
    """Run the podroute CLI until the block ends; waits for `ready_url` first when given."""
    server = CliServer(args, cwd, env or {})
    try:
        if ready_url:
            try:
                wait_for_http(ready_url, timeout=30)
            except TimeoutError:
                output = server.stop()
                raise AssertionError(f"server never became ready; it printed:\n{output}") from None
        yield server
    finally:
        server.stop()


WORKER_SERVERS = ("hypercorn", "uvicorn", "granian")
"""Every server `podroute serve --server` runs; the worker contract holds on each."""


@dataclasses.dataclass
class Worker:
    """A running `podroute serve` process: its base URL, the server it runs on, its output."""

    url: str
    server: str
    process: CliServer


@contextlib.contextmanager
def worker_process(
    target: str, server: str, env: Mapping[str, str] | None = None, ready: tuple[int, ...] = (200, 204)
) -> Iterator[Worker]:
    """Run `podroute serve TARGET --server SERVER` on a loopback port until the block ends.

    `TARGET` is imported from the repository root (e.g. `tests.support.contract_service:live`);
    the worker is ready once its health path answers one of `ready`.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker_env = {"HOST": "127.0.0.1", "PORT": str(port), **(env or {})}
    health = worker_env.get("HEALTH_CHECK_PATH", "/ping")
    running = CliServer(["serve", target, "--server", server], REPO_ROOT, worker_env)
    try:
        try:
            wait_for_http(base + health, timeout=30, ok=ready)
        except TimeoutError:
            output = running.stop()
            raise AssertionError(f"{server} worker never became ready; it printed:\n{output}") from None
        yield Worker(base, server, running)
    finally:
        running.stop()
