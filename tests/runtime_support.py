"""A real `podroute runtime` process and a small project to deploy to it, for integration tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from podroute.client import EndpointClient, RetryPolicy
from podroute.deploy.environments import Environments
from podroute.project import project_name
from podroute.providers.local import LocalRuntimeProvider
from podroute.runtime.app import create_runtime_app
from podroute.runtime.gateway import Gateway
from podroute.runtime.settings import RuntimeSettings
from tests.helpers import REPO_ROOT, CliServer, free_port, hypercorn_server, loopback_socket, wait_for_http

RETRY = RetryPolicy(attempts=6, backoff_base_s=0.05, backoff_max_s=0.5)
"""Retries for tests that call endpoints while workers come and go."""

LAB_SERVICE = """\
import asyncio
import os
import time

from podroute import CpuLiveLoadBalancer, on_startup, remote

api = CpuLiveLoadBalancer(name="lab", workersMin=0, workersMax=3, idleTimeout=2, scalerValue=1)
VERSION = 1


@on_startup(api)
def warm_up() -> None:
    time.sleep(float(os.environ.get("LAB_STARTUP_S", "0.6")))


@remote(api, method="GET", path="/health")
async def health() -> dict:
    return {"status": "healthy", "version": VERSION, "worker": os.environ.get("RUNPOD_POD_ID")}


@remote(api, method="POST", path="/echo")
async def echo(text: str) -> dict:
    return {"text": text, "version": VERSION}


@remote(api, method="GET", path="/python")
async def python() -> dict:
    import sys
    return {"prefix": sys.prefix}


@remote(api, method="GET", path="/slow")
async def slow(seconds: float = 0.2) -> dict:
    await asyncio.sleep(seconds)
    return {"slept": seconds, "version": VERSION}


@remote(api, method="GET", path="/ticks")
async def ticks(count: int = 100000, every: float = 0.05):
    for index in range(count):
        yield {"tick": index}
        await asyncio.sleep(every)


@remote(api, method="POST", path="/size")
async def size(data: str) -> dict:
    return {"length": len(data)}
"""


def make_lab_project(root: Path) -> Path:
    """A project with one service, `lab`, declared like a user would."""
    (root / "services" / "lab").mkdir(parents=True)
    (root / "services" / "__init__.py").write_text("")
    (root / "services" / "lab" / "__init__.py").write_text("")
    (root / "services" / "lab" / "endpoint.py").write_text(LAB_SERVICE)
    (root / "pyproject.toml").write_text('[tool.podroute]\nservices = "services"\n')
    return root


def copy_repo_service(root: Path, service: str) -> Path:
    """A project holding a copy of one of this repository's services."""
    (root / "services").mkdir(parents=True)
    (root / "services" / "__init__.py").write_text("")
    shutil.copytree(
        REPO_ROOT / "services" / service,
        root / "services" / service,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (root / "pyproject.toml").write_text('[tool.podroute]\nservices = "services"\n')
    return root


@dataclass
class Runtime:
    """A running `podroute runtime` process."""

    server: CliServer | None
    url: str
    data_dir: Path

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    def provider(self) -> LocalRuntimeProvider:
        return LocalRuntimeProvider(self.url, self.token)


@contextlib.contextmanager
def runtime_process(data_dir: Path, **env: str) -> Iterator[Runtime]:
    """Start `podroute runtime` (shared worker environments) on a free port; stop it after."""
    port = free_port()
    full_env = {
        "PODROUTE_RUNTIME_ENV_MODE": "shared",
        "PODROUTE_RUNTIME_WAIT_S": "30",
        "LOG_LEVEL": "INFO",
        **env,
    }
    args = ["runtime", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    server = CliServer(args, REPO_ROOT, full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/control/health", ok=(200, 401), timeout=30)
        yield Runtime(server, url, data_dir)
    finally:
        output = server.stop(timeout=30)
        (data_dir / "runtime.log").write_text(output)


@dataclass
class InProcessRuntime(Runtime):
    """The runtime app served on Hypercorn in a thread of the test process, gateway in reach."""

    gateway: Gateway | None = None


@contextlib.contextmanager
def runtime_in_process(data_dir: Path) -> Iterator[InProcessRuntime]:
    """`create_runtime_app` on a loopback port in a background thread (shared environments)."""
    sock = loopback_socket()
    port = sock.getsockname()[1]
    settings = RuntimeSettings(data_dir=data_dir, host="127.0.0.1", port=port, environment_mode="shared")
    app = create_runtime_app(settings)
    with hypercorn_server(app, "/control/health", (200, 401), sock) as url:
        yield InProcessRuntime(None, url, data_dir, app.extensions["podroute_gateway"])


def process_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def open_descriptors(pid: int) -> int:
    """How many file descriptors a process holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def endpoint_inflight(runtime: Runtime, endpoint_id: str) -> int:
    """Requests the runtime counts in flight on the endpoint's workers."""
    with runtime.provider() as provider:
        count: int = provider.status(endpoint_id).details["inflight"]
    return count


def run_cli(args: list[str], project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m podroute ...` in the project and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "podroute", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def wait_for(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll `predicate()` until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def gateway_ping(url: str, key: str) -> int:
    return httpx.get(f"{url}/ping", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code


def deploy(
    project: Path, runtime: Runtime, env: str = "test", *extra: str, key: str = "lab/lab"
) -> dict[str, Any]:
    """`podroute deploy new` (once) and `deploy send` through the CLI; returns the endpoint's id, url
    and API key, read from the runtime (the CLI keeps no record of endpoints)."""
    if env not in Environments(project).environments:
        created = run_cli(
            [
                "deploy",
                "new",
                env,
                "--runtime-url",
                runtime.url,
                "--token-file",
                str(runtime.data_dir / "token"),
            ],
            project,
        )
        assert created.returncode == 0, created.stderr
    sent = run_cli(["deploy", "send", env, *extra, "--timeout", "60"], project)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "healthy at" in sent.stdout and "curl" in sent.stdout
    return endpoint_entry(project, runtime, env, key)


def endpoint_entry(project: Path, runtime: Runtime, env: str, key: str) -> dict[str, Any]:
    """The deployed endpoint of `service/resource` in `env`, as the runtime reports it."""
    service, _, resource = key.partition("/")
    with runtime.provider() as provider:
        [endpoint] = [
            e
            for e in provider.list_endpoints(project_name(project))
            if e.target is not None
            and (e.target.environment, e.target.service, e.target.resource) == (env, service, resource)
        ]
        return {"id": endpoint.id, "url": endpoint.url, "api_key": provider.api_key(endpoint.id)}


class Load:
    """Threads calling the endpoint until stopped; records every outcome."""

    def __init__(self, client: EndpointClient, call: Any, threads: int) -> None:
        self.results: list[Any] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(client, call)) for _ in range(threads)]

    def _run(self, client: EndpointClient, call: Any) -> None:
        while not self._stop.is_set():
            try:
                self.results.append(call(client))
            except Exception as error:
                self.errors.append(error)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def live_workers(runtime: Runtime, endpoint_id: str) -> list[dict[str, Any]]:
    """The endpoint's workers as the runtime reports them."""
    with runtime.provider() as provider:
        workers: list[dict[str, Any]] = provider.status(endpoint_id).details["workers"]
    return workers
