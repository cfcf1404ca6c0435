"""Run the local stack for `nox -s dev`: dev server, local runtime, dashboard and Celery worker.

The Celery worker uses the embedded broker (a SQLite file in .podroute/), so no Redis or other
server is needed; it also runs beat (`-B`) for the periodic status sync.

Each part is its own process; their output is prefixed with the part's name. Ctrl-C (or SIGTERM)
stops them all; if one exits on its own, the others are stopped too and its status is returned.

Ports move together: `FLASH_PORT`, `PODROUTE_RUNTIME_PORT` and `DASHBOARD_PORT` are enough. When the
dev server's port is taken, the next free one is chosen here, before anything starts, and passed to
every part as `FLASH_PORT`, so the dashboard's try-it panel calls the port really in use; the banner
prints the addresses the parts really use (read with the dashboard's own settings code).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the dashboard package (podroute is installed by `nox -s dev`)

from dashboard.settings import DashboardSettings  # noqa: E402
from podroute.server import first_free_port  # noqa: E402

DATA = ROOT / ".podroute"

DEV_DEFAULTS = {
    "DASHBOARD_ENV": "development",
    "DASHBOARD_ADMIN_PASSWORD": "podroute-dev",
    "PODROUTE_RUNTIME_ENV_MODE": "shared",
}

PARTS: list[tuple[str, list[str]]] = [
    ("dev", [sys.executable, "-m", "podroute", "dev"]),
    ("runtime", [sys.executable, "-m", "podroute", "runtime"]),
    ("dashboard", [sys.executable, "-m", "dashboard"]),
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
    ),
]


def stack_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The parts' environment: the development defaults under `environ`, with `FLASH_PORT` set to
    the port the dev server will really get (the next free one when the asked one is taken)."""
    env = {**DEV_DEFAULTS, **environ}
    host = env.get("FLASH_HOST", "").strip() or "localhost"
    wanted = int(env.get("FLASH_PORT", "").strip() or "8888")
    notify = lambda message: print(f"devstack: dev server {message}", flush=True)  # noqa: E731
    env["FLASH_PORT"] = str(first_free_port(host, wanted, notify=notify))
    return env


def addresses(env: Mapping[str, str]) -> dict[str, str]:
    """What each part listens on (and where try-it sends requests), as the parts read `env`."""
    settings = DashboardSettings.from_env(env)
    flash_host = env.get("FLASH_HOST", "").strip() or "localhost"
    user = env.get("DASHBOARD_ADMIN_USER", "").strip() or "admin"
    password = env.get("DASHBOARD_ADMIN_PASSWORD", "")
    login = (
        f"user {user} / {password}"
        if password == DEV_DEFAULTS["DASHBOARD_ADMIN_PASSWORD"]
        else f"user {user}"
    )
    broker = "Redis" if settings.broker_url or settings.redis_url else ".podroute/celery-broker.sqlite3"
    return {
        "dev": f"http://{flash_host}:{env['FLASH_PORT']} (docs at /docs)",
        "runtime": f"{settings.runtime_url} (local runtime gateway)",
        "dashboard": f"http://{settings.host}:{settings.port} ({login}; try-it calls "
        f"{settings.try_it_base_url})",
        "celery": f"Celery worker + beat (broker: {broker})",
    }


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
    env = stack_environment(os.environ)
    shown = addresses(env)
    DATA.mkdir(exist_ok=True)
    _migrate(env)
    processes: list[tuple[str, subprocess.Popen[str]]] = []
    for name, command in PARTS:
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
        print(f"devstack: {name:<9} {shown[name]}", flush=True)
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
