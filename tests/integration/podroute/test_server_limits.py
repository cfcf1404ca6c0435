"""Hostile clients against `podroute serve` on every server: head limits and descriptor exhaustion."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, wait_for_http

USER_MODULE = """
from podroute import CpuLoadBalancerSlsResource, remote
api = CpuLoadBalancerSlsResource(name="limits")

@remote(api, method="GET", path="/hello")
async def hello():
    return {"hello": "world"}
"""

SERVERS = ["hypercorn", "uvicorn", "granian"]


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def _serve(
    project: Path, port: int, server: str | None, log: Path, limit_fds: bool = False
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "podroute", "serve", "userapp", "--host", "127.0.0.1", "--port", str(port)]
    if server:
        args += ["--server", server]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as output:
        return subprocess.Popen(
            args,
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_limit_descriptors if limit_fds else None,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "userapp.py").write_text(USER_MODULE)
    return tmp_path


@pytest.fixture(params=SERVERS)
def served(request: pytest.FixtureRequest, project: Path, tmp_path: Path) -> Iterator[str]:
    """The base URL of `podroute serve` on each server."""
    port = free_port()
    process = _serve(project, port, request.param, tmp_path / "server.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/ping", timeout=30, ok=(200,))
        yield base
    finally:
        _stop(process)


def test_a_1_mb_header_gets_431(served: str) -> None:
    response = httpx.get(f"{served}/hello", headers={"X-Big": "a" * 1_000_000}, timeout=20)
    assert response.status_code == 431
    assert httpx.get(f"{served}/hello").json() == {"hello": "world"}


def test_too_many_header_fields_get_431(served: str) -> None:
    headers = {f"X-Field-{index}": "1" for index in range(150)}
    response = httpx.get(f"{served}/hello", headers=headers)
    assert response.status_code == 431
    if response.content:  # Granian's parser refuses past 100 fields itself, with an empty body
        assert response.headers["content-type"] == "application/problem+json"
        assert "more than 100 header fields" in response.json()["detail"]
    assert httpx.get(f"{served}/hello", headers=dict(list(headers.items())[:50])).status_code == 200


def test_a_long_url_gets_414(served: str) -> None:
    response = httpx.get(f"{served}/hello?q={'x' * 10_000}")
    assert response.status_code == 414
    assert "longer than 8192 bytes" in response.json()["detail"]
    assert httpx.get(f"{served}/hello?{'x' * 100}").status_code == 422


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("server", SERVERS)
def test_connect_close_cycles_under_a_1024_descriptor_limit(
    project: Path, tmp_path: Path, server: str
) -> None:
    port = free_port()
    process = _serve(project, port, server, tmp_path / "server.log", limit_fds=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/ping", timeout=30, ok=(200,))
        for _ in range(2000):
            socket.create_connection(("127.0.0.1", port)).close()
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() - started < 1.0, "/ping did not answer 200 within 1 s"
        assert httpx.get(f"{base}/hello").json() == {"hello": "world"}
    finally:
        _stop(process)


def test_running_out_of_descriptors_is_logged_and_survived(project: Path, tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    port = free_port()
    log = tmp_path / "server.log"
    process = _serve(project, port, None, log, limit_fds=True)
    base = f"http://127.0.0.1:{port}"
    held: list[socket.socket] = []
    try:
        wait_for_http(f"{base}/ping", timeout=30, ok=(200,))
        for _ in range(1100):
            held.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(1.5)  # the server is out of descriptors for a while
        for sock in held:
            sock.close()
        held.clear()
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() - started < 3.0, "/ping did not recover"
        assert httpx.get(f"{base}/hello").json() == {"hello": "world"}
    finally:
        for sock in held:
            sock.close()
        _stop(process)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    output = log.read_text()
    assert "descriptor" in output.lower() or "too many open files" in output.lower(), output[-2000:]
