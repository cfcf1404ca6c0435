"""Soak (`nox -s soak`): the local runtime under steady load while one of its workers is killed.

    python bench/soak.py [-d SECONDS] [-c CONNECTIONS] [--warm-up SECONDS] [--json FILE]

For SECONDS (default 60), CONNECTIONS (default 64) clients call `GET /health` of the cpu service
through the gateway and as many call one worker straight, all with podroute.client's retries.
Halfway through, another worker of the endpoint is killed (SIGKILL). It passes when no idempotent
request failed on either path, the runtime's RSS grew less than 5 % from the end of the warm-up to
the end, and the runtime's descriptors went back to their baseline once the clients closed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from podroute.client import AsyncEndpointClient, RetryPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_setup import deployed_cpu_service

RSS_GROWTH_LIMIT = 0.05
RETRY = RetryPolicy(attempts=8, backoff_base_s=0.05, backoff_max_s=1.0)
DESCRIPTOR_WAIT_S = 40.0


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class _Load:
    """Clients calling one URL until told to stop; counts outcomes and latencies."""

    def __init__(self, client: AsyncEndpointClient, connections: int) -> None:
        self.client = client
        self.connections = connections
        self.ok = 0
        self.failed: list[str] = []
        self.latencies: list[float] = []
        self.stop = asyncio.Event()

    async def _call(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                await self.client.request("GET", "/health")
            except Exception as error:
                self.failed.append(f"{type(error).__name__}: {error}")
            else:
                self.ok += 1
                self.latencies.append(time.perf_counter() - started)

    async def run(self) -> None:
        await asyncio.gather(*(self._call() for _ in range(self.connections)))

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies) or [0.0]
        return {
            "ok": self.ok,
            "failed": len(self.failed),
            "first_failures": self.failed[:3],
            "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000,
        }


async def _soak(duration: float, connections: int, warm_up: float) -> dict[str, Any]:
    scaling = {"workersMin": 2, "workersMax": 3, "idleTimeout": 600, "scalerValue": 64}
    with deployed_cpu_service(scaling) as deployed:
        direct_worker, victim = deployed.wait_ready(2)[:2]
        pid = deployed.process.pid
        baseline_fds = _descriptors(pid)
        through = AsyncEndpointClient(deployed.endpoint_url, deployed.api_key, retry=RETRY)
        direct = AsyncEndpointClient(f"http://127.0.0.1:{direct_worker['port']}", retry=RETRY)
        loads = {"gateway": _Load(through, connections), "direct": _Load(direct, connections)}
        tasks = [asyncio.create_task(load.run()) for load in loads.values()]
        started = time.monotonic()
        rss: list[tuple[float, int]] = []
        killed_at = None
        while (elapsed := time.monotonic() - started) < duration:
            rss.append((elapsed, _rss_kib(pid)))
            if killed_at is None and elapsed >= duration / 2:
                os.kill(victim["pid"], signal.SIGKILL)
                killed_at = elapsed
            await asyncio.sleep(1.0)
        for load in loads.values():
            load.stop.set()
        await asyncio.gather(*tasks)
        end_rss = _rss_kib(pid)
        await through.aclose()
        await direct.aclose()
        fds_started = time.monotonic()
        for _ in range(int(DESCRIPTOR_WAIT_S / 0.5)):  # pooled worker connections expire first
            if _descriptors(pid) <= baseline_fds:
                break
            await asyncio.sleep(0.5)
        final_fds = _descriptors(pid)
        fds_after = time.monotonic() - fds_started
        ready = [w for w in deployed.workers() if w["state"] == "ready"]
        replaced = victim["id"] not in {w["id"] for w in ready} and len(ready) >= 2
    warm_rss = next(kib for at, kib in rss if at >= warm_up)
    return {
        "duration_s": duration,
        "connections_each": connections,
        "killed_worker_at_s": round(killed_at or 0.0, 1),
        "victim_replaced": replaced,
        "gateway": loads["gateway"].summary(),
        "direct": loads["direct"].summary(),
        "rss_warm_mib": warm_rss / 1024,
        "rss_end_mib": end_rss / 1024,
        "rss_peak_mib": max(kib for _, kib in rss) / 1024,
        "rss_growth": (end_rss - warm_rss) / warm_rss,
        "descriptors_baseline": baseline_fds,
        "descriptors_after": final_fds,
        "descriptors_settled_s": round(fds_after, 1),
    }


def _passed(result: dict[str, Any]) -> list[str]:
    problems = []
    for path in ("gateway", "direct"):
        if result[path]["failed"]:
            problems.append(f"{result[path]['failed']} failed requests {path}")
    if result["rss_growth"] >= RSS_GROWTH_LIMIT:
        problems.append(f"RSS grew {result['rss_growth']:.1%} after the warm-up")
    if result["descriptors_after"] > result["descriptors_baseline"]:
        problems.append("descriptors did not return to the baseline")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print its figures, and exit 1 when a goal is missed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-d", "--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("-c", "--connections", type=int, default=64, help="clients on each path")
    parser.add_argument("--warm-up", type=float, default=10.0, help="seconds before RSS is baselined")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = asyncio.run(_soak(args.duration, args.connections, args.warm_up))
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    problems = _passed(result)
    print("soak passed" if not problems else "soak FAILED: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
