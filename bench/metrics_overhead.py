"""Gateway throughput with request metrics on and off, in one runtime run (alternating phases).

    PYTHONPATH=shared/src:. python bench/metrics_overhead.py [seconds per phase] [threads]

Deploys the test suite's shop service to a fresh `podroute runtime`, then drives GET /users/1 with
keep-alive clients for on/off/on/off phases, toggling `PUT /control/metrics/collection`.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.integration.podroute.test_runtime_metrics import make_shop_project
from tests.runtime_support import deploy, runtime_process


def _drive(url: str, key: str, seconds: float, threads: int) -> float:
    done = [0] * threads
    stop = time.monotonic() + seconds

    def run(index: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
            while time.monotonic() < stop:
                client.get(f"{url}/users/1")
                done[index] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / seconds


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        project = make_shop_project(root / "project")
        with runtime_process(root / "runtime") as runtime:
            entry = deploy(project, runtime, key="shop/shop")
            control = {"Authorization": f"Bearer {runtime.token}"}
            _drive(entry["url"], entry["api_key"], 1.0, threads)  # warm up
            rates: dict[bool, list[float]] = {True: [], False: []}
            for enabled in (True, False, True, False):
                httpx.put(
                    f"{runtime.url}/control/metrics/collection", json={"enabled": enabled}, headers=control
                )
                rates[enabled].append(_drive(entry["url"], entry["api_key"], seconds, threads))
    on, off = sum(rates[True]) / 2, sum(rates[False]) / 2
    print(f"metrics on : {on:8.1f} req/s  {rates[True]}")
    print(f"metrics off: {off:8.1f} req/s  {rates[False]}")
    print(f"overhead   : {(off - on) / off * 100:+.1f} %")


if __name__ == "__main__":
    main()
