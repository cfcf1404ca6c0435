"""Ports move together: FLASH_PORT, PODROUTE_RUNTIME_PORT and DASHBOARD_PORT are enough, and the
`nox -s dev` banner (tools/devstack.py) prints the addresses really in use, a moved dev server too."""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
from pathlib import Path

import pytest
from quart import Quart

from dashboard.app import create_app
from dashboard.settings import DashboardSettings
from tests.support.dashboard import live_server

ROOT = Path(__file__).resolve().parents[3]
SECRET = "integration-test-secret-key-that-is-long-enough"


def _devstack():
    spec = importlib.util.spec_from_file_location("devstack_under_test", ROOT / "tools" / "devstack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


def test_ports_alone_set_the_runtime_url_and_the_try_it_base():
    settings = DashboardSettings.from_env({"FLASH_PORT": "9123", "PODROUTE_RUNTIME_PORT": "9124"})
    assert settings.try_it_base_url == "http://localhost:9123/{service}"
    assert settings.runtime_url == "http://localhost:9124"
    explicit = DashboardSettings.from_env(
        {
            "FLASH_PORT": "9123",
            "PODROUTE_RUNTIME_PORT": "9124",
            "PODROUTE_RUNTIME_URL": "http://runtime.internal:7000",
            "DASHBOARD_TRY_IT_URL": "http://dev.internal:7001/{service}",
        }
    )
    assert explicit.runtime_url == "http://runtime.internal:7000"
    assert explicit.try_it_base_url == "http://dev.internal:7001/{service}"
    defaults = DashboardSettings.from_env({})
    assert defaults.try_it_base_url == "http://localhost:8888/{service}"
    assert defaults.runtime_url == "http://localhost:8800"


def test_the_banner_prints_the_ports_really_in_use(capsys):
    devstack = _devstack()
    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        env = devstack.stack_environment(
            {"FLASH_PORT": str(busy), "PODROUTE_RUNTIME_PORT": "9801", "DASHBOARD_PORT": "9802"}
        )
    moved = int(env["FLASH_PORT"])
    assert moved != busy
    assert f"port {busy} is in use; using {moved} instead" in capsys.readouterr().out
    shown = devstack.addresses(env)
    assert shown["dev"].startswith(f"http://localhost:{moved} ")
    assert shown["runtime"].startswith("http://localhost:9801 ")
    assert shown["dashboard"].startswith("http://localhost:9802 ")
    assert f"try-it calls http://localhost:{moved}/{{service}}" in shown["dashboard"]
    assert not any(re.search(r":(8888|8800|8080)\b", line) for line in shown.values())


def _dev_server() -> Quart:
    app = Quart("moved-dev-server")

    @app.get("/demo/health")
    async def health() -> dict[str, bool]:
        return {"moved": True}

    return app


@pytest.fixture
def occupied_port():
    with socket.socket() as taken:
        taken.bind(("localhost", 0))
        taken.listen()
        yield taken.getsockname()[1]


async def test_try_it_follows_a_dev_server_that_moved(
    tmp_path, migrated_sqlite, demo_project, add_test_user, make_web, endpoint_form, occupied_port
):
    env = _devstack().stack_environment(
        {
            "FLASH_PORT": str(occupied_port),
            "FLASH_HOST": "127.0.0.1",
            "DASHBOARD_SECRET_KEY": SECRET,
            "DASHBOARD_DATA_DIR": str(tmp_path),
            "DASHBOARD_PROJECT_DIR": str(demo_project),
            "DASHBOARD_SECURE_COOKIES": "0",
        }
    )
    moved = int(env["FLASH_PORT"])
    settings = DashboardSettings.from_env(env)
    shutil.copy(migrated_sqlite, tmp_path / "dashboard.sqlite3")
    await add_test_user(settings)
    server = socket.create_server(("127.0.0.1", moved))  # the dev server takes the port it was given
    async with live_server(_dev_server(), server), create_app(settings).test_app() as app:
        web = make_web(app.test_client())
        assert (await web.login()).status_code == 303
        location = (await web.post("/endpoints", endpoint_form(service="demo"))).headers["Location"]
        page = await web.text(location)
        assert f"http://127.0.0.1:{moved}/demo" in page
        tried = await web.post(
            f"{location}/try",
            {"base_url": f"http://127.0.0.1:{moved}/demo", "path": "/health", "method": "GET"},
        )
        assert tried.status_code == 200
        assert "&#34;moved&#34;: true" in await tried.get_data(as_text=True)
        old = await web.post(
            f"{location}/try",
            {"base_url": f"http://127.0.0.1:{occupied_port}/demo", "path": "/health", "method": "GET"},
        )
        assert old.status_code == 422
