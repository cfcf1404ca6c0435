"""A real Celery worker (`celery -A dashboard.worker worker -B`) in a subprocess, for the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from dashboard.settings import DashboardSettings

ROOT = Path(__file__).resolve().parents[3]
_DROPPED = (
    "DASHBOARD_",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_",
    "PODROUTE_RUNTIME_",
    "PODROUTE_RUNPOD_",
    "RUNPOD_",  # a developer's real RunPod key or URLs must never reach a test worker
)


def worker_env(settings: DashboardSettings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that makes `DashboardSettings.from_env()` in the worker match `settings`.

    `extra` adds variables (the `RUNPOD_*` base URLs of a fake RunPod, for instance).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED)}
    env.update(
        DASHBOARD_DATA_DIR=str(settings.data_dir),
        DASHBOARD_PROJECT_DIR=str(settings.project_dir),
        PODROUTE_RUNTIME_URL=settings.runtime_url,
        PODROUTE_RUNTIME_TOKEN_FILE=str(settings.token_file),
        DASHBOARD_SYNC_INTERVAL_S=str(settings.sync_interval_s),
        DASHBOARD_LEASE_S=str(settings.lease_s),
        DASHBOARD_DEPLOY_TIMEOUT_S=str(settings.deploy_timeout_s),
        DASHBOARD_CELERY_QUEUE=settings.celery_queue,
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    if settings.secret_key:  # the worker decrypts what the web side stored (secrets at rest)
        env["DASHBOARD_SECRET_KEY"] = settings.secret_key
    if settings.old_secret_keys:
        env["DASHBOARD_OLD_SECRET_KEYS"] = ",".join(settings.old_secret_keys)
    if settings.broker_url:
        env["CELERY_BROKER_URL"] = settings.broker_url
    if settings.runpod_api_key:
        env["RUNPOD_API_KEY"] = settings.runpod_api_key
        env["PODROUTE_RUNPOD_API"] = settings.runpod_api
    env["DASHBOARD_USAGE_INTERVAL_S"] = str(settings.usage_interval_s)
    for environment, provider in settings.providers:
        env[f"DASHBOARD_PROVIDER_{environment.upper().replace('-', '_')}"] = provider
    env.update(extra or {})
    return env


class CeleryWorker:
    """`celery -A dashboard.worker worker -B` with its output in a log file."""

    def __init__(self, settings: DashboardSettings, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        self.handle = log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "dashboard.worker",
                "worker",
                "-B",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                "--schedule",
                str(settings.data_dir / "celery-beat-schedule"),
            ],
            cwd=ROOT,
            env=worker_env(settings, env),
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait for the worker's 'ready.' line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.output():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"the Celery worker did not start:\n{self.output()}")

    def output(self) -> str:
        """Everything the worker printed so far."""
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once (no chance to requeue anything)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.handle.close()

    def stop(self) -> None:
        """Stop the worker (warm shutdown, then SIGKILL after 20 s)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.handle.close()
