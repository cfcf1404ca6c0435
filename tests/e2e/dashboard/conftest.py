"""E2E fixtures: the real `python -m dashboard` under Hypercorn on an ephemeral port, a demo service
under Hypercorn for the try-it panel, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.dashboard.processes import start, stop

ROOT = Path(__file__).resolve().parents[3]

from tests.support.dashboard import strict, write_demo_project  # noqa: E402

ADMIN_PASSWORD = "e2e-admin-password"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"


def _unavailable(message: str) -> None:
    if strict():
        pytest.fail(f"{message}; PODROUTE_STRICT_TESTS=1 requires it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project the dashboard imports from."""
    return write_demo_project(tmp_path_factory.mktemp("e2e-project"), broken=False)


@pytest.fixture(scope="session")
def demo_service(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo CPU resource served by Hypercorn; yields its base URL."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from hypercorn.asyncio import serve\n"
        "from hypercorn.config import Config\n"
        "from tests.support.dashboard import load_demo_app\n"
        "config = Config(); config.bind = ['127.0.0.1:0']\n"
        "asyncio.run(serve(load_demo_app(Path(sys.argv[1])), config))\n"
    )
    log = tmp_path_factory.mktemp("logs") / "demo-service.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process, url = start([sys.executable, "-c", script, str(project)], env, log)
    yield url
    stop(process)


@pytest.fixture(scope="session")
def dashboard_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served dashboard's data dir (its SQLite database is `dashboard.sqlite3` there)."""
    return tmp_path_factory.mktemp("e2e-data")


@pytest.fixture(scope="session")
def dashboard_url(project: Path, demo_service: str, dashboard_data: Path) -> Iterator[str]:
    """`python -m dashboard migrate` then `python -m dashboard` on a fresh data dir; yields its URL.
    Its try-it panel may call the demo service (standing in for the dev server)."""
    data_dir = dashboard_data
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_") and k != "DATABASE_URL"}
    env.update(
        DASHBOARD_ENV="production",
        DASHBOARD_SECRET_KEY="e2e-secret-key-long-enough-for-production-use",
        DASHBOARD_SECURE_COOKIES="0",
        DASHBOARD_DATA_DIR=str(data_dir),
        DASHBOARD_HOST="127.0.0.1",
        DASHBOARD_PORT="0",
        DASHBOARD_ADMIN_PASSWORD=ADMIN_PASSWORD,
        DASHBOARD_PROJECT_DIR=str(project),
        DASHBOARD_TRY_IT_URL=f"{demo_service}/{{service}}",
    )
    subprocess.run(
        [sys.executable, "-m", "dashboard", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    process, url = start([sys.executable, "-m", "dashboard"], env, data_dir / "dashboard.log")
    yield url
    stop(process)


@pytest.fixture
def page(browser: Any, dashboard_url: str) -> Iterator[Any]:
    """A fresh browser context; fails the test on any console error (a CSP violation included)."""
    context = browser.new_context(base_url=dashboard_url, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.set_default_timeout(10_000)
    yield opened
    context.close()
    # 4xx answers that the test provokes on purpose are logged by Chromium as failed resources.
    unexpected = [e for e in errors if "Failed to load resource" not in e]
    assert unexpected == [], unexpected


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
