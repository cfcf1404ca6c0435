"""Observability end to end: known traffic through a real runtime, read back from the metrics API,
the Prometheus exposition, the request log, worker logs, timeline, scaling decisions, a restart,
the what-if replay and the CLI's per-route table."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.runtime_support import Runtime, deploy, run_cli, runtime_process, wait_for

SHOP_SERVICE = """\
import asyncio

from podroute import CpuLiveLoadBalancer, remote

api = CpuLiveLoadBalancer(name="shop", workersMin=0, workersMax=2, idleTimeout=2, scalerValue=4)


@remote(api, method="GET", path="/users/{user_id}")
async def user(user_id: int) -> dict:
    if user_id % 10 == 0:
        raise ValueError(f"user {user_id} is reserved")
    return {"id": user_id}


@remote(api, method="GET", path="/slow")
async def slow() -> dict:
    await asyncio.sleep(0.2)
    return {"slept": 0.2}


@remote(api, method="GET", path="/crash")
async def crash() -> dict:
    raise RuntimeError("boom in the shop")
"""


def make_shop_project(root: Path) -> Path:
    (root / "services" / "shop").mkdir(parents=True)
    (root / "services" / "__init__.py").write_text("")
    (root / "services" / "shop" / "__init__.py").write_text("")
    (root / "services" / "shop" / "endpoint.py").write_text(SHOP_SERVICE)
    (root / "pyproject.toml").write_text('[tool.podroute]\nservices = "services"\n')
    return root


def _control(runtime: Runtime, path: str, **params: Any) -> Any:
    response = httpx.get(
        f"{runtime.url}/control{path}",
        params=params,
        headers={"Authorization": f"Bearer {runtime.token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_known_traffic_is_measured_per_route_and_replayed(tmp_path: Path) -> None:
    project = make_shop_project(tmp_path / "project")
    data_dir = tmp_path / "runtime"
    with runtime_process(data_dir) as runtime:
        entry = deploy(project, runtime, key="shop/shop")
        endpoint_id, url, key = entry["id"], entry["url"], entry["api_key"]
        # wait until the deploy's own workers are gone: the traffic below starts from zero
        wait_for(
            lambda: not _control(runtime, f"/endpoints/{endpoint_id}")["workers"], 30, "scale-in to zero"
        )
        started = time.time()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(headers=headers, timeout=60) as client:
            first = client.get(f"{url}/users/200")  # alone: the one request that waits for a cold start
            assert first.status_code == 400

            slow_seen: list[float] = []  # what the client measured, gateway included

            def call(i: int) -> int:
                path = f"/users/{i}" if i < 200 else "/slow"
                began = time.perf_counter()
                status = client.get(f"{url}{path}").status_code
                if path == "/slow":
                    slow_seen.append(time.perf_counter() - began)
                return status

            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(call, range(1, 300)))
            crash = client.get(f"{url}/crash", headers={"X-Request-ID": "crash-test-1"})
        assert crash.status_code == 500 and crash.headers["x-request-id"] == "crash-test-1"
        assert statuses.count(400) == 19 and statuses.count(200) == 280  # + /users/200: 10 % of 200 fail

        summary = _control(runtime, f"/endpoints/{endpoint_id}/metrics", window="15m")
        totals = summary["totals"]
        routes = {r["route"]: r for r in summary["routes"]}
        pings = routes.pop("/ping")["requests"]  # the deploy's health checks
        assert set(routes) == {"/users/{user_id}", "/slow", "/crash"}
        users, slow = routes["/users/{user_id}"], routes["/slow"]
        assert totals["requests"] == 301 + pings
        assert users["requests"] == 200 and users["status"]["4xx"] == 20 and users["status"]["2xx"] == 180
        assert users["error_rate"] == 0.1
        assert slow["requests"] == 100 and slow["errors"] == 0
        assert routes["/crash"]["status"]["5xx"] == 1
        # the gateway's percentiles sit between the route's own 200 ms and what the client saw (a
        # loaded machine stretches both alike), within the latency sketch's bucket error
        client_p50, client_p95 = (sorted(slow_seen)[int(len(slow_seen) * q)] for q in (0.5, 0.95))
        assert 0.19 <= slow["p50_s"] <= client_p50 * 1.1 + 0.01, (slow, client_p50)
        assert 0.19 <= slow["p95_s"] <= client_p95 * 1.1 + 0.01, (slow, client_p95)
        assert users["p50_s"] < 0.1, users
        assert sum(r["cold_starts"] for r in routes.values()) == 1  # the first request only
        assert routes["/users/{user_id}"]["cold_starts"] == 1 and users["wait_s_avg"] > 0
        assert totals["bytes_out"] > 0 and summary["series"] and summary["series"][-1]["requests"] > 0
        assert summary["cost"]["billed_seconds"] > 0 and summary["cost"]["per_1000_requests_usd"] > 0

        # the Prometheus exposition, parsed by prometheus-client's own parser
        scrape = httpx.get(f"{runtime.url}/metrics", headers={"Authorization": f"Bearer {runtime.token}"})
        assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
        assert httpx.get(f"{runtime.url}/metrics").status_code == 401
        families = {f.name: f for f in text_string_to_metric_families(scrape.text)}
        counts = {
            (s.labels["route"], s.labels["status"]): s.value
            for s in families["podroute_requests"].samples
            if s.name == "podroute_requests_total" and s.labels["endpoint"] == endpoint_id
        }
        assert counts[("/users/{user_id}", "4xx")] == 20 and counts[("/slow", "2xx")] == 100
        assert sum(counts.values()) == 301 + pings
        slow_buckets = {
            s.labels["le"]: s.value
            for s in families["podroute_request_duration_seconds"].samples
            if s.name.endswith("_bucket") and s.labels["route"] == "/slow"
        }
        assert slow_buckets["0.1"] == 0 and slow_buckets["+Inf"] == 100

        # request log: filters, and from a request to its worker's log lines
        failed = _control(runtime, f"/endpoints/{endpoint_id}/requests", status="4xx", limit=100)["requests"]
        assert len(failed) == 20 and {r["route"] for r in failed} == {"/users/{user_id}"}
        found = _control(runtime, f"/endpoints/{endpoint_id}/requests", request_id="crash-test-1")["requests"]
        assert len(found) == 1 and found[0]["status"] == 500 and found[0]["worker"].startswith("w-")
        lines = _control(runtime, f"/endpoints/{endpoint_id}/logs", request_id="crash-test-1")["lines"]
        assert lines and all(line["worker"] == found[0]["worker"] for line in lines)
        assert any("boom in the shop" in line["line"] for line in lines)

        # worker timeline and scaling decisions
        wait_for(
            lambda: not _control(runtime, f"/endpoints/{endpoint_id}")["workers"],
            30,
            "scale-in after traffic",
        )
        timeline = _control(runtime, f"/endpoints/{endpoint_id}/workers")["workers"]
        served = next(w for w in timeline if w["worker"] == found[0]["worker"])
        states = [t["state"] for t in served["transitions"]]
        assert states[0] == "starting" and "ready" in states and states[-2:] == ["draining", "stopped"]
        assert served["startup_s"] > 0 and "idleTimeout" in served["transitions"][-2]["reason"]
        decisions = _control(runtime, f"/endpoints/{endpoint_id}/scaling")["decisions"]
        assert any(d["action"] == "scale out" and "scalerValue 4" in d["reason"] for d in decisions)
        assert any(d["action"] == "scale in" and "idleTimeout" in d["reason"] for d in decisions)

        # what-if: the real settings reproduce the real worker-seconds; workersMin 1 avoids the cold start
        replayed = httpx.post(
            f"{runtime.url}/control/endpoints/{endpoint_id}/replay",
            json={"since": started, "until": time.time(), "variants": [{"workersMin": 1}]},
            headers={"Authorization": f"Bearer {runtime.token}"},
            timeout=30,
        ).json()
        actual, same, warm = replayed["actual"], replayed["replayed"][0], replayed["replayed"][1]
        assert replayed["requests"] == 301
        assert abs(same["worker_seconds"] - actual["worker_seconds"]) <= 0.05 * actual["worker_seconds"], (
            replayed
        )
        assert actual["cold_starts"] == 1 and same["cold_starts"] == 1 and warm["cold_starts"] == 0

        table = run_cli(["deploy", "status", "test"], project)
        assert table.returncode == 0, table.stderr
        assert "/users/{user_id}" in table.stdout and "10.0%" in table.stdout, table.stdout

        printed = run_cli(["deploy", "logs", "test", "shop"], project)
        assert printed.returncode == 0 and "boom in the shop" in printed.stdout, printed.stderr
        # -f streams (server-sent events): the recent lines come first, then it keeps following
        follower = subprocess.Popen(
            [sys.executable, "-m", "podroute", "deploy", "logs", "test", "shop", "-f"],
            cwd=project, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert follower.stdout is not None
            first = follower.stdout.readline()
            assert first.startswith("w-"), first
            assert follower.poll() is None  # still following
        finally:
            follower.terminate()
            follower.wait(10)

    # a restart keeps the history
    with runtime_process(data_dir) as runtime:
        again = _control(runtime, f"/endpoints/{endpoint_id}/metrics", window="1h")
        assert again["totals"]["requests"] == 301 + pings
