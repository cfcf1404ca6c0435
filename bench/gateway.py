"""What the local runtime's gateway adds: the same request through the gateway and straight to the
worker behind it, measured in the same run.

    python bench/gateway.py [-n REQUESTS] [-d SECONDS] [-c CONNECTIONS] [--json FILE]

- Latency: one keep-alive connection each way, `GET /health` of the cpu service, alternating blocks
  of 100 requests (direct, gateway, direct, ...) so drift hits both alike; p50 and p99 of each and
  the added p50 (target: <= 0.5 ms).
- Throughput: `wrk` with CONNECTIONS connections for SECONDS on each (the runtime and its worker on
  CPU 0, wrk and this script on CPU 1 when taskset is there).

`bench/run.py` can call `measure_gateway()` and `format_report()`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_setup import deployed_cpu_service

ADDED_P50_TARGET_MS = 0.5
_BLOCK = 100


def _latencies(port: int, path: str, headers: dict[str, str], count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            samples.append(time.perf_counter() - started)
            if response.status != 200:
                raise SystemExit(f"GET {path} answered {response.status}")
    finally:
        connection.close()
    return samples


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _wrk(url: str, headers: dict[str, str], duration: float, connections: int) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if shutil.which("taskset"):
        command = ["taskset", "-c", "1", *command]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match is None or errors is not None:
        raise SystemExit(f"wrk failed against {url}:\n{output}")
    return float(match.group(1))


def measure_gateway(requests: int = 2000, duration: float = 3.0, connections: int = 32) -> dict[str, Any]:
    """Latency and req/s of `GET /health` through the gateway and direct to its one worker."""
    if hasattr(os, "sched_setaffinity") and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    scaling = {"workersMin": 1, "workersMax": 1, "idleTimeout": 600}
    with deployed_cpu_service(scaling, cpu="0") as deployed:
        worker = deployed.wait_ready(1)[0]
        gateway_port = int(deployed.url.rsplit(":", 1)[1])
        auth = {"Authorization": f"Bearer {deployed.api_key}"}
        gateway_path = f"/{deployed.endpoint_id}/health"
        _latencies(gateway_port, gateway_path, auth, 500)  # warm-up: connections, caches
        _latencies(worker["port"], "/health", {}, 500)
        direct: list[float] = []
        through: list[float] = []
        for _ in range(max(1, requests // _BLOCK)):
            direct += _latencies(worker["port"], "/health", {}, _BLOCK)
            through += _latencies(gateway_port, gateway_path, auth, _BLOCK)
        direct_rps = _wrk(f"http://127.0.0.1:{worker['port']}/health", {}, duration, connections)
        gateway_rps = _wrk(f"{deployed.endpoint_url}/health", auth, duration, connections)
    ms = 1000.0
    return {
        "requests": len(direct),
        "direct_p50_ms": statistics.median(direct) * ms,
        "direct_p99_ms": _percentile(direct, 0.99) * ms,
        "gateway_p50_ms": statistics.median(through) * ms,
        "gateway_p99_ms": _percentile(through, 0.99) * ms,
        "added_p50_ms": (statistics.median(through) - statistics.median(direct)) * ms,
        "direct_rps": direct_rps,
        "gateway_rps": gateway_rps,
        "connections": connections,
        "duration_s": duration,
    }


def format_report(result: dict[str, Any]) -> str:
    """The measurement as a markdown table."""
    verdict = "meets" if result["added_p50_ms"] <= ADDED_P50_TARGET_MS else "misses"
    return "\n".join(
        [
            f"Local runtime gateway, GET /health of the cpu service ({result['requests']} sequential "
            f"requests each way; wrk -c{result['connections']} -d{result['duration_s']:g}s):",
            "",
            "| path | p50 ms | p99 ms | req/s |",
            "|---|---:|---:|---:|",
            f"| straight to the worker | {result['direct_p50_ms']:.3f} | {result['direct_p99_ms']:.3f} "
            f"| {result['direct_rps']:.0f} |",
            f"| through the gateway | {result['gateway_p50_ms']:.3f} | {result['gateway_p99_ms']:.3f} "
            f"| {result['gateway_rps']:.0f} |",
            "",
            f"Added p50: {result['added_p50_ms']:.3f} ms ({verdict} the {ADDED_P50_TARGET_MS} ms target); "
            f"gateway req/s = {result['gateway_rps'] / result['direct_rps']:.2f} x direct.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the table (and write JSON with --json)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--requests", type=int, default=2000, help="sequential requests each way")
    parser.add_argument("-d", "--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("-c", "--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = measure_gateway(args.requests, args.duration, args.connections)
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
