"""The project's own services through build, the local runtime and the client (issue: build and
deploy): the cpu service's whole lifecycle, and the gpu service (torch on the CPU) cold-starting
with /ping 204 before 200."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from podroute.build import build_project
from podroute.client import EndpointClient
from services.cpu.endpoint import transform_text
from tests.runtime_support import (
    RETRY,
    Load,
    Runtime,
    copy_repo_service,
    deploy,
    live_workers,
    pid_alive,
    port_open,
    run_cli,
    wait_for,
)


def test_cpu_service_builds_deterministically(tmp_path: Path) -> None:
    project = copy_repo_service(tmp_path / "project", "cpu")
    (first,) = build_project(project, out=tmp_path / "a", progress=lambda _: None)
    (second,) = build_project(project, out=tmp_path / "b", progress=lambda _: None)
    assert first.sha256 == second.sha256
    assert first.manifest["resource"]["instanceIds"] == ["cpu3c-1-2"]
    assert not any(d.startswith("torch") for d in first.manifest["dependencies"])


def test_cpu_service_lifecycle(tmp_path: Path, runtime: Runtime) -> None:
    project = copy_repo_service(tmp_path / "project", "cpu")
    entry = deploy(project, runtime, key="cpu/cpu")
    endpoint_id, url = entry["id"], entry["url"]
    with EndpointClient(url, entry["api_key"], retry=RETRY) as client:
        result = client.call(transform_text, text="hello world", operation="uppercase")
        assert result == {
            "status": "success",
            "original": "hello world",
            "transformed": "HELLO WORLD",
            "operation": "uppercase",
        }

        scaled = run_cli(
            ["scale", "cpu", "--max", "2", "--scaler-value", "1", "--idle-timeout", "2"], project
        )
        assert scaled.returncode == 0, scaled.stderr
        peak = 0
        transform = {"text": "scale me", "operation": "reverse"}
        with Load(client, lambda c: c.post("/transform", json=transform), threads=8) as load:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and peak < 2:
                peak = max(peak, sum(w["state"] == "ready" for w in live_workers(runtime, endpoint_id)))
                time.sleep(0.1)
        assert peak == 2 and not load.errors, load.errors[:3]
        assert {r["transformed"] for r in load.results} == {"em elacs"}
        wait_for(lambda: not live_workers(runtime, endpoint_id), 30, "scale-in to workersMin (0)")

        with Load(client, lambda c: c.get("/health"), threads=6) as load:
            wait_for(
                lambda: any(w["state"] == "ready" for w in live_workers(runtime, endpoint_id)), 40, "worker"
            )
            time.sleep(0.5)
            victim = next(w for w in live_workers(runtime, endpoint_id) if w["state"] == "ready")
            os.kill(victim["pid"], signal.SIGKILL)
            time.sleep(1.5)
        assert not load.errors, load.errors[:3]

        first_build = runtime.provider().status(endpoint_id).details["build"]
        endpoint = project / "services" / "cpu" / "endpoint.py"
        endpoint.write_text(endpoint.read_text() + "\n# a new release\n")
        with Load(client, lambda c: c.post("/transform", json=transform), threads=4) as load:
            time.sleep(0.3)
            deploy(project, runtime, key="cpu/cpu")
            time.sleep(0.5)
        assert not load.errors, load.errors[:3]
        assert runtime.provider().status(endpoint_id).details["build"] != first_build

        rolled = run_cli(["deploy", "rollback", "test"], project)
        assert rolled.returncode == 0, rolled.stderr
        assert runtime.provider().status(endpoint_id).details["build"] == first_build
        wait_for(lambda: client.get("/health")["status"] == "healthy", 30, "the old release")

    workers = live_workers(runtime, endpoint_id)
    assert run_cli(["deploy", "delete", "test"], project).returncode == 0
    for worker in workers:
        assert not pid_alive(worker["pid"]) and not port_open(worker["port"]), worker


def test_gpu_service_on_the_cpu_pings_204_before_200(tmp_path: Path, runtime: Runtime) -> None:
    project = copy_repo_service(tmp_path / "project", "gpu")
    entry = deploy(project, runtime, key="gpu/gpu")
    provider = runtime.provider()
    provider.scale(entry["id"], {"workersMin": 0, "workersMax": 0})
    wait_for(lambda: not live_workers(runtime, entry["id"]), 20, "scale to zero")
    provider.scale(entry["id"], {"workersMax": 1, "workersMin": 1})
    seen: list[int] = []

    def observe() -> bool:
        for worker in live_workers(runtime, entry["id"]):
            try:
                status = httpx.get(f"http://127.0.0.1:{worker['port']}/ping", timeout=2).status_code
            except httpx.HTTPError:
                continue
            if not seen or seen[-1] != status:
                seen.append(status)
        return 200 in seen

    wait_for(observe, 60, "the gpu worker to become ready", interval=0.02)
    assert seen[:2] == [204, 200], seen
    with EndpointClient(entry["url"], entry["api_key"], retry=RETRY) as client:
        computed = client.post("/compute", json={"numbers": [1, 2, 3, 4, 5]})
        info = client.get("/info")
    assert computed["sum_of_squares"] == 55 and computed["device"] == "cpu"
    assert info["cuda_available"] is False
    assert run_cli(["deploy", "delete", "test"], project).returncode == 0
