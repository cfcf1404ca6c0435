"""Run the local stack for `nox -s dev`: dev server, local runtime, dashboard and Celery worker.

The Celery worker uses the embedded broker (a SQLite file in .podroute/), so no Redis or other
server is needed; it also runs beat (`-B`) for the periodic status sync.

Each part is its own process; their output is prefixed with the part's name. Ctrl-C (or SIGTERM)
stops them all; if one exits on its own, the others are stopped too and its status is returned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".podroute"

DEV_DEFAULTS = {
    "DASHBOARD_ENV": "development",
    "DASHBOARD_ADMIN_PASSWORD": "podroute-dev",
    "PODROUTE_RUNTIME_ENV_MODE": "shared",
}

PARTS: list[tuple[str, list[str], str]] = [
    ("dev", [sys.executable, "-m", "podroute", "dev"], "http://localhost:8888 (docs at /docs)"),
    (
        "runtime",
        [sys.executable, "-m", "podroute", "runtime"],
        "http://localhost:8800 (local runtime gateway)",
    ),
    ("dashboard", [sys.executable, "-m", "dashboard"], "http://localhost:8080 (user admin / podroute-dev)"),
    (
        "celery",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "dashboard.worker",
            "worker",
            "-B",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--schedule",
            str(DATA / "celery-beat-schedule"),
        ],
        "Celery worker + beat (broker: .podroute/celery-broker.sqlite3 unless REDIS_URL is set)",
    ),
]


def _pipe(name: str, stream: object) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sys.stdout.write(f"{name:>9} | {line}")
        sys.stdout.flush()


def _migrate(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "dashboard", "migrate"], cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        sys.exit(f"devstack: migrating the dashboard database failed (exit {result.returncode})")


def main() -> int:
    """Start every part, wait, stop them all."""
    env = {**DEV_DEFAULTS, **os.environ}
    DATA.mkdir(exist_ok=True)
    _migrate(env)
    processes: list[tuple[str, subprocess.Popen[str]]] = []
    for name, command, address in PARTS:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=_pipe, args=(name, process.stdout), daemon=True).start()
        processes.append((name, process))
        print(f"devstack: {name:<9} {address}", flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    status = 0
    while not stopping.is_set():
        for name, process in processes:
            if process.poll() is not None:
                print(
                    f"devstack: {name} exited with status {process.returncode}; stopping the rest", flush=True
                )
                status = process.returncode or 1
                stopping.set()
        time.sleep(0.2)
    for name, process in processes:
        if process.poll() is None:
            # Celery's main process stops its own pool children (warm shutdown); the others get
            # SIGTERM for their whole process group.
            if name == "celery":
                os.kill(process.pid, signal.SIGTERM)
            else:
                os.killpg(process.pid, signal.SIGTERM)
    for _, process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return status


if __name__ == "__main__":
    sys.exit(main())
