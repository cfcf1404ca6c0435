"""The local runtime end to end: deploy, call, scale out and in, survive a crash, roll out, roll
back, delete; plus the gateway's RunPod behaviours and restarts. Real processes throughout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from podroute.client import EndpointClient
from podroute.deploy.model import Target, endpoint_name, target_labels
from podroute.deploy.rollout import find_endpoint
from podroute.project import project_name
from podroute.providers.base import EndpointNotFoundError, ProviderUnavailableError
from podroute.providers.local import LocalRuntimeProvider
from tests.runtime_support import (
    RETRY,
    Load,
    Runtime,
    deploy,
    gateway_ping,
    live_workers,
    make_lab_project,
    pid_alive,
    port_open,
    run_cli,
    runtime_process,
    wait_for,
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_lab_project(tmp_path / "project")


def test_lifecycle_scale_crash_rollout_rollback_delete(project: Path, runtime: Runtime) -> None:
    entry = deploy(project, runtime)
    endpoint_id, url, key = entry["id"], entry["url"], entry["api_key"]
    assert httpx.get(f"{url}/health").status_code == 401

    with EndpointClient(url, key, retry=RETRY) as client:
        response = client.request("POST", "/echo", json={"text": "hi"})
        assert response.json() == {"text": "hi", "version": 1}
        assert response.headers["x-runpod-worker-id"].startswith("w-")

        listed = run_cli(["deploy", "list"], project)
        assert listed.returncode == 0 and f"lab/lab: {endpoint_id} {url}" in listed.stdout
        scaled = run_cli(
            ["scale", "lab", "--max", "3", "--scaler-value", "1", "--idle-timeout", "2"], project
        )
        assert scaled.returncode == 0 and "workersMax=3" in scaled.stdout, scaled.stderr

        # concurrent load scales out to workersMax
        peak = 0
        with Load(client, lambda c: c.get("/slow", params={"seconds": 0.3}), threads=8) as load:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and peak < 3:
                peak = max(peak, sum(w["state"] == "ready" for w in live_workers(runtime, endpoint_id)))
                time.sleep(0.1)
        assert peak == 3 and not load.errors
        seen_workers = {r["version"] for r in load.results}
        assert seen_workers == {1}

        # idle workers are drained back to workersMin (0) after idleTimeout
        wait_for(lambda: not live_workers(runtime, endpoint_id), 20, "scale-in to zero")
        decisions = runtime.provider().status(endpoint_id).details["decisions"]
        assert any(d["action"] == "scale in" for d in decisions)
        status = run_cli(["deploy", "status", "test"], project)
        assert status.returncode == 0 and "desired 0" in status.stdout and "scale in:" in status.stdout

        # a worker killed mid-load: every idempotent request still succeeds
        with Load(client, lambda c: c.get("/slow", params={"seconds": 0.1}), threads=6) as load:
            wait_for(
                lambda: any(w["state"] == "ready" for w in live_workers(runtime, endpoint_id)), 30, "a worker"
            )
            time.sleep(0.5)
            victim = next(w for w in live_workers(runtime, endpoint_id) if w["state"] == "ready")
            os.kill(victim["pid"], signal.SIGKILL)
            time.sleep(1.5)
        assert not load.errors, load.errors[:3]
        failures = runtime.provider().status(endpoint_id).details["failures"]
        assert any(f["worker"] == victim["id"] for f in failures)

        # a new build rolls out with no failed request
        endpoint = project / "services" / "lab" / "endpoint.py"
        endpoint.write_text(endpoint.read_text().replace("VERSION = 1", "VERSION = 2"))
        with Load(client, lambda c: c.post("/echo", json={"text": "x"}), threads=4) as load:
            time.sleep(0.3)
            deploy(project, runtime)
            time.sleep(0.5)
        assert not load.errors, load.errors[:3]
        assert {r["version"] for r in load.results} >= {2}
        assert client.post("/echo", json={"text": "x"})["version"] == 2

        # roll back to the previous build
        rolled = run_cli(["deploy", "rollback", "test"], project)
        assert rolled.returncode == 0, rolled.stderr
        wait_for(lambda: client.post("/echo", json={"text": "x"})["version"] == 1, 30, "the old release")

    # delete: no process, no port left
    workers = live_workers(runtime, endpoint_id)
    assert workers
    deleted = run_cli(["deploy", "delete", "test"], project)
    assert deleted.returncode == 0, deleted.stderr
    for worker in workers:
        assert not pid_alive(worker["pid"]), worker
        assert not port_open(worker["port"]), worker
    assert httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {key}"}).status_code == 404


def test_gateway_follows_runpod(project: Path, tmp_path: Path) -> None:
    with runtime_process(tmp_path / "rt", PODROUTE_RUNTIME_WAIT_S="1") as runtime:
        entry = deploy(project, runtime)
        provider = runtime.provider()
        headers = {"Authorization": f"Bearer {entry['api_key']}"}
        url = entry["url"]
        health = httpx.get(f"{runtime.url}/v2/{entry['id']}/health", headers=headers).json()
        assert set(health["workers"]) >= {"idle", "ready", "initializing", "unhealthy"}

        big = httpx.post(f"{url}/echo", headers=headers, content=b"x" * (30 * 1024 * 1024 + 1))
        assert big.status_code == 413

        provider.scale(entry["id"], {"workersMin": 2, "workersMax": 2})
        wait_for(
            lambda: sum(w["state"] == "ready" for w in live_workers(runtime, entry["id"])) == 2, 30, "two"
        )
        chosen = live_workers(runtime, entry["id"])[1]["id"]
        pinned = {
            httpx.get(f"{url}/health", headers={**headers, "X-Runpod-Worker-Id": chosen}).json()["worker"]
            for _ in range(8)
        }
        assert pinned == {chosen}

        provider.scale(entry["id"], {"executionTimeoutMs": 500})
        slow = httpx.get(f"{url}/slow", params={"seconds": 2}, headers=headers, timeout=10)
        assert slow.status_code == 524

        provider.scale(entry["id"], {"workersMin": 0, "workersMax": 0})
        wait_for(lambda: not live_workers(runtime, entry["id"]), 15, "workers gone")
        none = httpx.get(f"{url}/health", headers=headers, timeout=10)
        assert (none.status_code, none.json()) == (400, {"error": "no workers available"})


def test_ping_is_204_while_the_startup_hook_runs(project: Path, runtime: Runtime) -> None:
    entry = deploy(project, runtime)
    runtime.provider().scale(entry["id"], {"workersMin": 1})
    seen: set[int] = set()

    def probe() -> bool:
        for worker in live_workers(runtime, entry["id"]):
            if worker["state"] in ("initializing", "ready") and worker["port"]:
                with contextlib.suppress(httpx.HTTPError):
                    seen.add(httpx.get(f"http://127.0.0.1:{worker['port']}/ping").status_code)
        return 200 in seen

    runtime.provider().scale(entry["id"], {"workersMin": 0, "workersMax": 0})
    wait_for(lambda: not live_workers(runtime, entry["id"]), 15, "scale to zero")
    runtime.provider().update_env(entry["id"], {"LAB_STARTUP_S": "2.5"})
    runtime.provider().scale(entry["id"], {"workersMax": 1, "workersMin": 1})
    wait_for(probe, 60, "/ping 200", interval=0.05)
    assert seen >= {204, 200}, seen
    # the probe can see 200 a moment before the runtime's own health check marks the worker ready
    wait_for(lambda: any(w["state"] == "ready" for w in live_workers(runtime, entry["id"])), 10, "ready")
    ready = [w for w in live_workers(runtime, entry["id"]) if w["state"] == "ready"]
    assert all(w["cold_start_s"] >= 1.0 for w in ready), ready


def test_restart_restores_endpoints(project: Path, tmp_path: Path) -> None:
    data = tmp_path / "rt"
    with runtime_process(data) as runtime:
        entry = deploy(project, runtime)
        runtime.provider().scale(entry["id"], {"workersMin": 1})
        wait_for(
            lambda: any(w["state"] == "ready" for w in live_workers(runtime, entry["id"])), 30, "min worker"
        )
        first_pid = live_workers(runtime, entry["id"])[0]["pid"]
    assert not pid_alive(first_pid)
    state = json.loads((data / "state.json").read_text())
    assert entry["api_key"] not in json.dumps(state)
    with runtime_process(data) as runtime:
        wait_for(
            lambda: any(w["state"] == "ready" for w in live_workers(runtime, entry["id"])), 30, "restored"
        )
        new_url = f"{runtime.url}/{entry['id']}"
        assert gateway_ping(new_url, entry["api_key"]) == 200


def test_failed_rollout_keeps_the_previous_release(project: Path, runtime: Runtime) -> None:
    entry = deploy(project, runtime)
    endpoint = project / "services" / "lab" / "endpoint.py"
    endpoint.write_text(
        endpoint.read_text().replace(
            "def warm_up() -> None:\n", "def warm_up() -> None:\n    raise RuntimeError('weights missing')\n"
        )
    )
    failed = run_cli(["deploy", "send", "test", "--timeout", "30"], project)
    assert failed.returncode == 2
    assert "a worker failed" in failed.stderr and "rolled back" in failed.stderr
    assert "weights missing" in failed.stderr
    with EndpointClient(entry["url"], entry["api_key"], retry=RETRY) as client:
        assert client.post("/echo", json={"text": "still"})["version"] == 1


def test_isolated_worker_environment(project: Path, tmp_path: Path) -> None:
    with runtime_process(tmp_path / "rt", PODROUTE_RUNTIME_ENV_MODE="isolated") as runtime:
        entry = deploy(project, runtime)
        with EndpointClient(entry["url"], entry["api_key"], retry=RETRY) as client:
            prefix = client.get("/python")["prefix"]
    assert prefix.startswith(str((tmp_path / "rt" / "envs").resolve()))


def test_provider_finds_endpoints_by_name_and_raises_typed_errors(project: Path, runtime: Runtime) -> None:
    entry = deploy(project, runtime)
    provider = runtime.provider()
    target = Target(project_name(project), "test", "lab", "lab")
    found = find_endpoint(provider, target)
    assert found is not None and found.id == entry["id"] and found.name == endpoint_name(target)
    assert found.labels == target_labels(target) and found.release is not None
    assert found.release.deployed_by.startswith("cli:")
    assert find_endpoint(provider, Target(project_name(project), "other", "lab", "lab")) is None
    with pytest.raises(EndpointNotFoundError, match="answered 404"):
        provider.status("ep-does-not-exist")
    with pytest.raises(ProviderUnavailableError, match="start it with 'podroute runtime'"):
        LocalRuntimeProvider("http://127.0.0.1:9", runtime.token, timeout=2).status(entry["id"])
    provider.delete(entry["id"])
    assert find_endpoint(provider, target) is None
    provider.delete(entry["id"])  # already gone: nothing to do
