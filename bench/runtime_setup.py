"""A local runtime with the repository's cpu service deployed, for the gateway bench and the soak.

The runtime runs as `python -m podroute runtime` (shared worker environments) on a free loopback
port; the service is deployed with the CLI from a temporary project holding a copy of services/cpu.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from podroute.project import project_name
from podroute.providers.local import LocalRuntimeProvider

PROJECT = Path(__file__).resolve().parent.parent


@dataclass
class DeployedRuntime:
    """A running runtime process and the endpoint deployed to it."""

    process: subprocess.Popen[bytes]
    url: str
    token: str
    endpoint_id: str
    endpoint_url: str
    api_key: str

    @property
    def provider(self) -> LocalRuntimeProvider:
        """The control API client."""
        return LocalRuntimeProvider(self.url, self.token)

    def workers(self) -> list[dict[str, Any]]:
        """The endpoint's workers as the runtime reports them."""
        with self.provider as provider:
            workers: list[dict[str, Any]] = provider.status(self.endpoint_id).details["workers"]
        return workers

    def wait_ready(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until `count` workers are ready; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = [w for w in self.workers() if w["state"] == "ready"]
            if len(ready) >= count:
                return ready
            time.sleep(0.2)
        raise TimeoutError(f"{count} worker(s) not ready within {timeout}s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(args: list[str], cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "podroute", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"podroute {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def deployed_cpu_service(scaling: dict[str, int], cpu: str | None = None) -> Iterator[DeployedRuntime]:
    """Start a runtime (pinned to `cpu` when given), deploy services/cpu with `scaling`, stop after."""
    with tempfile.TemporaryDirectory(prefix="podroute-bench-") as temporary:
        root = Path(temporary)
        project = root / "project"
        (project / "services").mkdir(parents=True)
        (project / "services" / "__init__.py").write_text("")
        shutil.copytree(
            PROJECT / "services" / "cpu",
            project / "services" / "cpu",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        (project / "pyproject.toml").write_text('[tool.podroute]\nservices = "services"\n')
        port = _free_port()
        data = root / "runtime"
        command = [sys.executable, "-m", "podroute", "runtime", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--data-dir", str(data), "--env-mode", "shared"]
        if cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", cpu, *command]
        env = {**os.environ, "LOG_LEVEL": "WARNING", "PODROUTE_RUNTIME_WAIT_S": "60"}
        log = (root / "runtime.log").open("wb")
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_http(f"{url}/control/health")
            token = (data / "token").read_text().strip()
            _cli(
                ["deploy", "new", "bench", "--runtime-url", url, "--token-file", str(data / "token")], project
            )
            _cli(["deploy", "send", "bench", "--timeout", "120"], project)
            with LocalRuntimeProvider(url, token) as provider:
                (endpoint,) = provider.list_endpoints(project_name(project))
                api_key = provider.api_key(endpoint.id)
                provider.scale(endpoint.id, scaling)
            yield DeployedRuntime(process, url, token, endpoint.id, endpoint.url, api_key)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
