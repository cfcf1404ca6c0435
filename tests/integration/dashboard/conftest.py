"""Fixtures for the dashboard's integration tests: a migrated SQLite file per test, the app with its
lifespan running, a logged-in client that sends CSRF tokens, and a scratch PostgreSQL database."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parents[3]

from alembic import command  # noqa: E402
from quart import Quart  # noqa: E402
from quart.testing import QuartClient  # noqa: E402

from dashboard.app import create_app  # noqa: E402
from dashboard.db import alembic_config, create_engine, create_sessions  # noqa: E402
from dashboard.queries import add_user  # noqa: E402
from dashboard.security import hash_password  # noqa: E402
from dashboard.settings import DashboardSettings  # noqa: E402
from tests.support.dashboard import (  # noqa: E402
    create_scratch_database,
    drop_scratch_database,
    postgres_admin_url,
    strict,
    write_demo_project,
)

PASSWORD = "correct horse battery"
SECRET_KEY = "integration-test-secret-key-that-is-long-enough"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Emit every dashboard log record, so a broken log call fails the test that makes it."""
    caplog.set_level(logging.DEBUG, logger="dashboard")


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per run; tests get copies."""
    path = tmp_path_factory.mktemp("template") / "dashboard.sqlite3"
    command.upgrade(alembic_config(f"sqlite:///{path}"), "head")
    return path


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with services/demo (two resources) and services/broken."""
    return write_demo_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A scratch PostgreSQL database for this run (skipped when unreachable, failed under strict)."""
    admin = postgres_admin_url()
    try:
        url = asyncio.run(create_scratch_database(admin))
    except (TimeoutError, OSError, Exception) as error:  # asyncpg raises several kinds
        message = f"PostgreSQL is not reachable at {admin} ({type(error).__name__}: {error})"
        if strict():
            pytest.fail(f"{message}; PODROUTE_STRICT_TESTS=1 requires it", pytrace=False)
        pytest.skip(f"{message}; set PODROUTE_TEST_POSTGRES_URL to test on PostgreSQL")
    yield url
    asyncio.run(drop_scratch_database(admin, url))


def make_settings(tmp_path: Path, project: Path, **overrides: Any) -> DashboardSettings:
    """Production-like settings on a data dir under tmp_path (cookies without Secure: plain http)."""
    values: dict[str, Any] = {
        "environment": "production",
        "secret_key": SECRET_KEY,
        "data_dir": tmp_path,
        "project_dir": project,
        "secure_cookies": False,
        "login_max_failures": 3,
    }
    values.update(overrides)
    return DashboardSettings(**values)


@pytest.fixture
def settings(tmp_path: Path, migrated_sqlite: Path, demo_project: Path) -> DashboardSettings:
    """Settings on a fresh copy of the migrated SQLite file."""
    shutil.copy(migrated_sqlite, tmp_path / "dashboard.sqlite3")
    return make_settings(tmp_path, demo_project)


@pytest.fixture
async def app(settings: DashboardSettings) -> AsyncIterator[Quart]:
    """The dashboard with its lifespan running (database open)."""
    application = create_app(settings)
    async with application.test_app() as test_app:
        yield test_app  # type: ignore[misc]


async def add_test_user(
    settings: DashboardSettings, username: str = "alice", password: str = PASSWORD
) -> None:
    """Create a user directly in the database."""
    engine = create_engine(settings.url)
    try:
        async with create_sessions(engine).begin() as session:
            await add_user(session, username, hash_password(password))
    finally:
        await engine.dispose()


class Web:
    """A test client that knows its CSRF token and can log in."""

    def __init__(self, client: QuartClient) -> None:
        self.client = client
        self.csrf = ""

    async def refresh_csrf(self, path: str = "/login") -> str:
        """Load a page and remember the CSRF token in its forms."""
        response = await self.client.get(path)
        found = _CSRF.search(await response.get_data(as_text=True))
        assert found, f"no CSRF token on {path}"
        self.csrf = found.group(1)
        return self.csrf

    async def login(self, username: str = "alice", password: str = PASSWORD) -> Any:
        """Log in through the form; afterwards, take the new session's token from a page."""
        await self.refresh_csrf("/login")
        response = await self.client.post(
            "/login", form={"username": username, "password": password, "csrf_token": self.csrf}
        )
        if response.status_code == 303:
            await self.refresh_csrf("/endpoints/new")
        return response

    async def post(
        self, path: str, form: dict[str, Any] | None = None, *, htmx: bool = False, csrf: bool = True
    ) -> Any:
        """POST a form with the CSRF token (unless `csrf=False`); `htmx=True` sends HX-Request."""
        data = dict(form or {})
        if csrf:
            data["csrf_token"] = self.csrf
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if htmx:
            headers["HX-Request"] = "true"
        return await self.client.post(path, data=urlencode(data, doseq=True).encode(), headers=headers)

    async def get(self, path: str, **headers: str) -> Any:
        """GET a page."""
        return await self.client.get(path, headers=headers)

    async def text(self, path: str) -> str:
        """GET a page (expecting 200) and return its HTML."""
        response = await self.client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        return str(await response.get_data(as_text=True))


@pytest.fixture
async def web(app: Quart, settings: DashboardSettings) -> Web:
    """A logged-in client (user alice)."""
    await add_test_user(settings)
    client = Web(app.test_client())
    response = await client.login()
    assert response.status_code == 303
    return client


@pytest.fixture
async def anonymous(app: Quart) -> Web:
    """A client with no session."""
    return Web(app.test_client())


def endpoint_form(**overrides: Any) -> dict[str, Any]:
    """A valid GPU endpoint form, with overrides."""
    form: dict[str, Any] = {
        "name": "text-api",
        "service": "demo",
        "resource": "demo-gpu",
        "compute": "gpu",
        "imageName": "",
        "gpus": ["ADA_24"],
        "gpuCount": "1",
        "minCudaVersion": "12.8",
        "workersMin": "0",
        "workersMax": "2",
        "idleTimeout": "60",
        "scalerValue": "4",
        "executionTimeoutMs": "0",
        "flashboot": "on",
        "networkVolumeId": "",
        "env-0-key": "MODE",
        "env-0-value": "fast",
        "env-1-key": "API_TOKEN",
        "env-1-value": "s3cr3t-value-never-shown",
        "env-1-secret": "on",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


@pytest.fixture(name="endpoint_form")
def _endpoint_form() -> Any:
    """The `endpoint_form(**overrides)` helper."""
    return endpoint_form


@pytest.fixture(name="make_settings")
def _make_settings() -> Any:
    """The `make_settings(tmp_path, project, **overrides)` helper."""
    return make_settings


@pytest.fixture(name="add_test_user")
def _add_test_user() -> Any:
    """The `add_test_user(settings, username, password)` helper."""
    return add_test_user


@pytest.fixture(name="make_web")
def _make_web() -> Any:
    """`make_web(client)`: wrap any test client in the CSRF-aware helper."""
    return Web
