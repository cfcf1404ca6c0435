"""Security probes against the dashboard on a real Hypercorn on loopback, as an attacker would send
them: open redirects after login, copied cookies after logout, password guessing from one address
while the real user logs in from another, secrets on disk, and try-it aimed at other local ports."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
import subprocess
import sys
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from quart import Quart

from dashboard.app import create_app
from tests.support.dashboard import live_server

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """An HTTP client from one loopback address that keeps cookies and the page's CSRF token."""

    def __init__(self, url: str, address: str = "127.0.0.1") -> None:
        self.client = httpx.AsyncClient(
            base_url=url, transport=httpx.AsyncHTTPTransport(local_address=address), timeout=30
        )
        self.csrf = ""

    async def page(self, path: str) -> httpx.Response:
        response = await self.client.get(path)
        found = _CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def post(self, path: str, form: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(path, data={**(form or {}), "csrf_token": self.csrf})

    async def login(
        self, username: str = "alice", password: str = PASSWORD, query: str = ""
    ) -> httpx.Response:
        await self.page("/login")
        response = await self.post(f"/login{query}", {"username": username, "password": password})
        if response.status_code == 303:
            await self.page("/account")
        return response

    async def is_logged_in(self) -> bool:
        return (await self.client.get("/endpoints")).status_code == 200

    async def close(self) -> None:
        await self.client.aclose()


@asynccontextmanager
async def serving(app: Quart):
    async with live_server(app) as url:
        browsers: list[Browser] = []

        def browser(address: str = "127.0.0.1") -> Browser:
            made = Browser(url, address)
            browsers.append(made)
            return made

        try:
            yield url, browser
        finally:
            for made in browsers:
                await made.close()


@pytest.fixture
async def live(settings, add_test_user):
    await add_test_user(settings)
    app = create_app(replace(settings, login_max_failures=2, login_delay_s=1.0))
    async with serving(app) as running:
        yield running


def cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_") and k != "DATABASE_URL"}
    env.update(DASHBOARD_DATA_DIR=str(settings.data_dir), DASHBOARD_SECRET_KEY=settings.secret_key)
    env.update({key: value for key, value in (settings_env_extra(settings)).items()})
    return subprocess.run(
        [sys.executable, "-m", "dashboard", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_env_extra(settings) -> dict[str, str]:
    return (
        {"DASHBOARD_OLD_SECRET_KEYS": ",".join(settings.old_secret_keys)} if settings.old_secret_keys else {}
    )


# --- 1. open redirect ------------------------------------------------------------------------------

OFF_SITE = [
    "/%09/evil.example",
    "/%0d/evil.example",
    "//evil.example/x",
    "/%2F%2Fevil.example",
    "/%252F%252Fevil.example",
    "/%5Cevil.example",
    "/%5C%5Cevil.example",
    "https://evil.example",
    "https%3A%2F%2Fevil.example",
    "javascript:alert(1)",
    "/endpoints%0d%0aSet-Cookie:x=1",
    "/%E2%80%A8evil",
    "evil.example",
]


@pytest.mark.parametrize("target", OFF_SITE)
async def test_login_never_redirects_off_site_nor_fails(live, target):
    _, browser = live
    client = browser()
    response = await client.login(query=f"?next={target}")
    assert response.status_code == 303
    assert response.headers["location"] == "/endpoints"
    assert "x=1" not in response.headers.get("set-cookie", "")


async def test_login_keeps_a_same_site_next(live):
    _, browser = live
    response = await browser().login(query="?next=/audit%3Fbefore%3D5")
    assert response.headers["location"] == "/audit?before=5"


# --- 2. revocable sessions -------------------------------------------------------------------------


async def test_a_cookie_copied_before_logout_stops_working(live):
    _, browser = live
    victim, thief = browser(), browser()
    assert (await victim.login()).status_code == 303
    thief.client.cookies.update(victim.client.cookies)
    assert await thief.is_logged_in()
    assert (await victim.post("/logout")).status_code == 303
    assert not await thief.is_logged_in()
    assert not await victim.is_logged_in()


async def test_a_password_change_ends_the_other_sessions_only(live):
    _, browser = live
    here, elsewhere = browser(), browser()
    await here.login()
    await elsewhere.login()
    wrong = await here.post(
        "/account/password",
        {"current_password": "nope", "new_password": "a new password", "repeat_password": "a new password"},
    )
    assert wrong.status_code == 422 and "current password is wrong" in wrong.text
    changed = await here.post(
        "/account/password",
        {"current_password": PASSWORD, "new_password": "a new password", "repeat_password": "a new password"},
    )
    assert changed.status_code == 303
    assert "1 other session(s) logged out" in (await here.page("/account")).text
    assert await here.is_logged_in()
    assert not await elsewhere.is_logged_in()
    assert (await browser().login(password=PASSWORD)).status_code == 401
    assert (await browser().login(password="a new password")).status_code == 303


async def test_log_out_everywhere_button_and_command(live, settings, add_test_user):
    _, browser = live
    await add_test_user(settings, "bob")
    alice, bob, alice_phone = browser(), browser(), browser()
    for client, name in ((alice, "alice"), (bob, "bob"), (alice_phone, "alice")):
        assert (await client.login(name)).status_code == 303
    page = await alice.page("/account")
    assert "Log out everywhere" in page.text and "3 open session(s) of every user" in page.text
    assert (await alice.post("/account/logout-everywhere")).status_code == 303
    assert not any([await c.is_logged_in() for c in (alice, bob, alice_phone)])
    assert ">logout-all<" in (await _audit(browser)).text

    for client, name in ((alice, "alice"), (bob, "bob")):
        assert (await client.login(name)).status_code == 303
    result = await asyncio.to_thread(cli, settings, "logout-all", "--user", "bob")
    assert result.returncode == 0 and "ended 1 session(s) of 'bob'" in result.stdout
    assert await alice.is_logged_in() and not await bob.is_logged_in()
    result = await asyncio.to_thread(cli, settings, "logout-all")
    assert result.returncode == 0 and "ended 2 session(s)" in result.stdout  # alice and the audit reader
    assert not await alice.is_logged_in()


async def _audit(browser) -> httpx.Response:
    reader = browser()
    await reader.login()
    return await reader.page("/audit")


# --- 3. throttling by (address, user) --------------------------------------------------------------


async def test_an_attacker_cannot_lock_the_real_user_out(live):
    _, browser = live
    attacker, user = browser("127.0.0.2"), browser("127.0.0.1")
    statuses = [(await attacker.login(password=f"guess {n}")).status_code for n in range(6)]
    assert statuses[:2] == [401, 401] and 429 in statuses
    assert (await attacker.login()).status_code == 429  # even the right password, from that address
    assert (await user.login()).status_code == 303  # the real user, from their own address
    assert await user.is_logged_in()


async def test_delays_grow_and_the_operator_clears_them(live, settings):
    _, browser = live
    attacker = browser("127.0.0.3")
    waits = []
    for _ in range(3):
        while (response := await attacker.login(password="wrong guess")).status_code == 429:
            waits.append(int(response.headers["retry-after"]))
            await asyncio.sleep(int(response.headers["retry-after"]) + 0.1)
        assert response.status_code == 401
    throttled = await attacker.login()
    assert throttled.status_code == 429 and "too many failed attempts" in throttled.text
    waits.append(int(throttled.headers["retry-after"]))
    assert waits[0] < waits[-1] <= settings.login_window_s  # 1 s, then 2 s, then 4 s
    result = await asyncio.to_thread(cli, settings, "clear-throttles")
    assert result.returncode == 0 and "cleared" in result.stdout
    assert (await attacker.login()).status_code == 303


# --- 4. secrets at rest ----------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_files_are_private_and_secrets_are_encrypted(tmp_path, settings, endpoint_form):
    data = tmp_path / "fresh" / ".podroute"
    fresh = replace(settings, data_dir=data)
    assert (await asyncio.to_thread(cli, fresh, "migrate")).returncode == 0
    assert _mode(data) == 0o700 and _mode(data / "dashboard.sqlite3") == 0o600
    created = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dashboard", "create-user", "alice", "--password-stdin"],
        cwd=ROOT,
        env={**os.environ, "DASHBOARD_DATA_DIR": str(data), "DASHBOARD_SECRET_KEY": settings.secret_key},
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    async with serving(create_app(fresh)) as (_, browser):
        client = browser()
        await client.login()
        await client.page("/endpoints/new")
        assert (await client.post("/endpoints", endpoint_form())).status_code == 303
    for name in os.listdir(data):
        if name.endswith(("sqlite3", "-wal", "-shm")):
            assert _mode(data / name) == 0o600, name
    raw = (data / "dashboard.sqlite3").read_bytes() + b"".join(
        p.read_bytes() for p in data.glob("dashboard.sqlite3-*")
    )
    assert b"s3cr3t-value-never-shown" not in raw
    with sqlite3.connect(data / "dashboard.sqlite3") as db:
        stored = dict(db.execute("SELECT key, value FROM endpoint_env_vars").fetchall())
    assert stored["API_TOKEN"].startswith("fernet:") and stored["MODE"].startswith("fernet:")


async def _store_secrets(settings) -> None:
    """An endpoint with a secret env value and a deployment holding an API key, via the ORM."""
    from dashboard.db import create_engine, create_sessions
    from dashboard.models import Deployment, Endpoint, EnvVar
    from dashboard.secrets_at_rest import install_key_ring

    install_key_ring(*settings.encryption_secrets)
    engine = create_engine(settings.url)
    try:
        async with create_sessions(engine).begin() as db:
            endpoint = Endpoint(name="keyed", compute="cpu")
            endpoint.env_vars = [EnvVar(key="TOKEN", value="env-secret-1", secret=True)]
            db.add(endpoint)
            await db.flush()
            db.add(Deployment(endpoint_id=endpoint.id, api_key="rpa_key_1", url="http://gw"))
    finally:
        await engine.dispose()


def _raw(settings) -> tuple[str, str]:
    with sqlite3.connect(settings.data_dir / "dashboard.sqlite3") as db:
        return (
            db.execute("SELECT api_key FROM deployments").fetchone()[0],
            db.execute("SELECT value FROM endpoint_env_vars").fetchone()[0],
        )


async def _read_back(settings) -> tuple[str, str]:
    from sqlalchemy import select

    from dashboard.db import create_engine, create_sessions
    from dashboard.models import Deployment, EnvVar
    from dashboard.secrets_at_rest import install_key_ring

    install_key_ring(*settings.encryption_secrets)
    engine = create_engine(settings.url)
    try:
        async with create_sessions(engine)() as db:
            return (await db.scalar(select(Deployment.api_key)), await db.scalar(select(EnvVar.value)))
    finally:
        await engine.dispose()


async def test_rotating_the_secret_keeps_stored_secrets_readable(settings):
    from dashboard.secrets_at_rest import SecretsKeyError

    await _store_secrets(settings)
    assert all(value.startswith("fernet:") for value in _raw(settings))
    assert "rpa_key_1" not in "".join(_raw(settings))
    rotated = replace(settings, secret_key="a-brand-new-secret-that-is-long-enough-too")
    with pytest.raises(SecretsKeyError, match="DASHBOARD_OLD_SECRET_KEYS"):
        await _read_back(rotated)  # never silently lost: a clear error that says the fix
    with_old = replace(rotated, old_secret_keys=(settings.secret_key,))
    assert await _read_back(with_old) == ("rpa_key_1", "env-secret-1")
    before = _raw(settings)
    result = await asyncio.to_thread(cli, with_old, "reencrypt")
    assert result.returncode == 0 and "re-encrypted 2 stored value(s)" in result.stdout
    assert _raw(settings) != before
    assert await _read_back(rotated) == ("rpa_key_1", "env-secret-1")  # the old secret is no longer needed


async def test_the_migration_encrypts_plain_values_and_the_downgrade_restores_them(tmp_path, settings):
    from alembic import command

    from dashboard.db import alembic_config
    from dashboard.secrets_at_rest import KeyRing

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    ring = KeyRing(settings.secret_key)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0004")
    with sqlite3.connect(tmp_path / "old.sqlite3") as db:
        db.execute(
            "INSERT INTO endpoints (id, name, compute, service, resource, image_name, gpus, gpu_count,"
            " min_cuda_version, instance_ids, workers_min, workers_max, idle_timeout, scaler_value,"
            " execution_timeout_ms, flashboot, locations, network_volume_id, version, created_at, updated_at)"
            " VALUES (1, 'old', 'cpu', '', '', '', '[]', 1, '12.8', '[]', 0, 1, 60, 4, 0, 1, '[]', '', 1,"
            " '2026-01-01', '2026-01-01')"
        )
        db.execute(
            "INSERT INTO endpoint_env_vars (endpoint_id, key, value, secret) VALUES (1, 'K', 'plain-v', 1)"
        )
        db.execute(
            "INSERT INTO deployments (endpoint_id, provider, status, external_id, url, error, created_by,"
            " created_at, updated_at, api_key) VALUES (1, 'local', 'ready', 'x', '', '', '', '2026-01-01',"
            " '2026-01-01', 'plain-key')"
        )
    await asyncio.to_thread(command.upgrade, alembic_config(url, ring), "head")
    with sqlite3.connect(tmp_path / "old.sqlite3") as db:
        key = db.execute("SELECT api_key FROM deployments").fetchone()[0]
        value = db.execute("SELECT value FROM endpoint_env_vars").fetchone()[0]
    assert key.startswith("fernet:") and ring.decrypt(key) == "plain-key"
    assert value.startswith("fernet:") and ring.decrypt(value) == "plain-v"
    await asyncio.to_thread(command.downgrade, alembic_config(url, ring), "0004")
    with sqlite3.connect(tmp_path / "old.sqlite3") as db:
        assert db.execute("SELECT api_key FROM deployments").fetchone()[0] == "plain-key"
        assert db.execute("SELECT value FROM endpoint_env_vars").fetchone()[0] == "plain-v"


# --- 5. try-it targets -----------------------------------------------------------------------------


def _echo_app(name: str) -> Quart:
    app = Quart(name)

    @app.get("/who")
    async def who() -> dict[str, str]:
        return {"server": name}

    return app


async def test_try_it_reaches_only_the_dev_server_and_the_endpoints_gateways(
    settings, add_test_user, endpoint_form
):
    await add_test_user(settings)
    async with (
        live_server(_echo_app("dev-server")) as dev,
        live_server(_echo_app("gateway")) as gateway,
        live_server(_echo_app("bystander")) as bystander,
    ):
        app = create_app(replace(settings, try_it_base_url=f"{dev}/{{service}}"))
        async with serving(app) as (dashboard, browser):
            client = browser()
            await client.login()
            await client.page("/endpoints/new")
            location = (await client.post("/endpoints", endpoint_form())).headers["location"]
            endpoint_id = int(location.rsplit("/", 1)[1])
            await _add_gateway(settings, endpoint_id, f"{gateway}/v1/lb")
            await client.page(location)

            async def try_it(base: str) -> httpx.Response:
                return await client.post(
                    f"{location}/try", {"base_url": base, "method": "GET", "path": "/who"}
                )

            assert '"server": "dev-server"' in (await try_it(dev)).text.replace("&#34;", '"')
            localhost_dev = dev.replace("127.0.0.1", "localhost")
            assert (await try_it(localhost_dev)).status_code == 200
            assert '"server": "gateway"' in (await try_it(gateway)).text.replace("&#34;", '"')
            for refused in (bystander, dashboard, dashboard.replace("127.0.0.1", "localhost")):
                response = await try_it(refused)
                assert response.status_code == 422 and "is not allowed" in response.text, refused
                assert "bystander" not in response.text


async def _add_gateway(settings, endpoint_id: int, url: str) -> None:
    from dashboard.db import create_engine, create_sessions
    from dashboard.models import Deployment

    engine = create_engine(settings.url)
    try:
        async with create_sessions(engine).begin() as db:
            db.add(Deployment(endpoint_id=endpoint_id, status="ready", url=url))
    finally:
        await engine.dispose()
