"""Build, deploy, scale, roll back and undeploy through the dashboard, run by a real Celery worker
against a real `podroute runtime`: embedded SQLite broker by default, then Redis, then a worker
SIGKILLed mid-deploy whose deployment still finishes exactly once."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from dashboard.configs import desired_config
from dashboard.db import create_sync_sessions
from dashboard.models import Build, Deployment
from dashboard.worker.builds import build_result
from podroute.deploy.model import Target, endpoint_name
from podroute.project import project_name
from podroute.providers.local import LocalRuntimeProvider
from tests.integration.dashboard.celery_support import CeleryWorker, worker_env
from tests.runtime_support import Runtime, make_lab_project, runtime_process
from tests.support.dashboard import strict

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """One real local runtime for the module."""
    with runtime_process(tmp_path_factory.mktemp("runtime")) as running:
        yield running


@pytest.fixture
def lab_project(tmp_path: Path) -> Path:
    """A fresh copy of the lab service per test (tests change its code)."""
    return make_lab_project(tmp_path / "project")


@pytest.fixture
def settings(tmp_path, migrated_sqlite, lab_project, runtime, make_settings):
    """Dashboard settings wired to the runtime, with short leases and a fast status sync."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(migrated_sqlite, data / "dashboard.sqlite3")
    return make_settings(
        data,
        lab_project,
        runtime_url=runtime.url,
        runtime_token_file=runtime.data_dir / "token",
        sync_interval_s=0.5,
        lease_s=3.0,
        deploy_timeout_s=60.0,
        celery_queue=f"dashboard-test-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
def worker(settings, tmp_path) -> Iterator[CeleryWorker]:
    """A real Celery worker (with beat) for these settings."""
    started = CeleryWorker(settings, tmp_path / "worker.log")
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


async def import_lab(web) -> int:
    page = await web.text("/import")
    fingerprint = page.split('name="fingerprint" value="', 1)[1].split('"', 1)[0]
    response = await web.post("/import", {"item": ["lab/lab"], "fingerprint": fingerprint})
    assert response.status_code == 303, await response.get_data(as_text=True)
    listing = await web.text("/endpoints")
    return int(re.search(r'href="/endpoints/(\d+)"', listing).group(1))


async def poll(web, path: str, limit_s: float = 90) -> str:
    """GET an htmx widget until it answers 286 (its task ended); return its last HTML."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        response = await web.get(path, **{"HX-Request": "true"})
        if response.status_code == 286:
            return str(await response.get_data(as_text=True))
        assert response.status_code == 200, response.status_code
        await asyncio.sleep(0.3)
    raise AssertionError(f"{path} still running after {limit_s}s")


async def build(web, endpoint_id: int) -> str:
    response = await web.post(f"/endpoints/{endpoint_id}/builds", htmx=True)
    assert response.status_code == 200, await response.get_data(as_text=True)
    html = await poll(web, f"/endpoints/{endpoint_id}/builds/latest")
    assert 'data-build-status="succeeded"' in html, html
    return html


async def deploy(web, endpoint_id: int, environment: str = "production") -> str:
    response = await web.post(f"/endpoints/{endpoint_id}/environments/{environment}/deploy", htmx=True)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await poll(web, f"/endpoints/{endpoint_id}/environments/{environment}")


def rows(settings, model: Any = Deployment) -> list[Any]:
    with create_sync_sessions(settings.url)() as session:
        return list(session.query(model).order_by(model.id))


def provider(runtime: Runtime) -> LocalRuntimeProvider:
    return LocalRuntimeProvider(runtime.url, runtime.token)


def target(settings, environment: str) -> Target:
    """The control plane's target of the lab service in an environment."""
    return Target(project_name(settings.project_dir), environment, "lab", "lab")


def named(runtime: Runtime, name: str) -> list[str]:
    """Ids of the runtime's endpoints called `name` (the one naming rule makes it one at most)."""
    with provider(runtime) as runtime_provider:
        return [e.id for e in runtime_provider.list_endpoints() if e.name == name]


def health(row: Deployment, runtime: Runtime | None = None) -> dict[str, Any]:
    """GET /health through the gateway with the endpoint's key, which the runtime gives back."""
    key = row.api_key
    if runtime is not None:
        with provider(runtime) as runtime_provider:
            key = runtime_provider.api_key(row.external_id)
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.get(f"{row.url}/health", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_embedded_broker_pipeline_build_deploy_scale_rollback_undeploy(web, settings, worker, runtime):
    assert settings.celery_broker_url.startswith("sqla+sqlite:///") and settings.uses_embedded_broker
    assert not any(key in worker_env(settings) for key in ("REDIS_URL", "CELERY_BROKER_URL"))
    endpoint_id = await import_lab(web)
    name = endpoint_name(target(settings, "production"))
    await build(web, endpoint_id)

    # An endpoint left by a crashed attempt (same name and marker, never recorded) is resumed: the
    # rollout finds it by name and marker and lands on it, so there is still exactly one.
    built = build_result(rows(settings, Build)[-1])
    with provider(runtime) as runtime_provider:
        runtime_provider.upload(built)
        left = runtime_provider.create(
            target(settings, "production"),
            built,
            desired_config({"fields": {}, "env": {}}, built.manifest["resource"]),
            deployed_by="dashboard:crashed",
        )
    panel = await deploy(web, endpoint_id)
    assert 'data-status="ready"' in panel and "rolling endpoint" in panel
    first = rows(settings)[-1]
    assert named(runtime, name) == [first.external_id] == [left.id]
    assert health(first, runtime)["version"] == 1
    assert first.api_key == ""  # no tool stores endpoint keys any more: the runtime gives them back

    # Scaling applies to the live endpoint at once and is audited.
    response = await web.post(
        f"/endpoints/{endpoint_id}/scaling",
        {"workersMin": "0", "workersMax": "2", "idleTimeout": "2", "scalerValue": "1"},
        htmx=True,
    )
    assert response.status_code == 200 and "Scaling saved" in await response.get_data(as_text=True)
    wait_until(lambda: provider(runtime).status(first.external_id).serving["workersMax"] == 2, 30, "scale")
    assert ">scale<" in await web.text("/audit")
    bad = await web.post(
        f"/endpoints/{endpoint_id}/scaling",
        {"workersMin": "3", "workersMax": "1", "idleTimeout": "2", "scalerValue": "1"},
        htmx=True,
    )
    assert bad.status_code == 422 and "must not exceed" in await bad.get_data(as_text=True)

    # A second release with changed code, then a rollback to the first without a rebuild.
    endpoint_py = settings.project_dir / "services" / "lab" / "endpoint.py"
    endpoint_py.write_text(endpoint_py.read_text().replace("VERSION = 1", "VERSION = 2"))
    await build(web, endpoint_id)
    await deploy(web, endpoint_id)
    second = rows(settings)[-1]
    assert second.external_id == first.external_id and health(second, runtime)["version"] == 2
    diff = await web.text(f"/deployments/{first.id}/diff")
    old_hash, new_hash = (b.artifact_hash[:12] for b in rows(settings, Build))
    assert old_hash != new_hash and old_hash in diff and new_hash in diff
    builds_before = len(rows(settings, Build))
    response = await web.post(f"/deployments/{first.id}/rollback", htmx=True)
    assert response.status_code == 200
    panel = await poll(web, f"/endpoints/{endpoint_id}/environments/production")
    assert 'data-status="ready"' in panel and "rollback to #" in panel
    assert len(rows(settings, Build)) == builds_before
    wait_until(lambda: health(rows(settings)[-1], runtime)["version"] == 1, 30, "the old release to serve")

    # Undeploy asks first, then leaves nothing running.
    assert "Undeploy lab from production?" in await web.text(
        f"/endpoints/{endpoint_id}/environments/production/undeploy"
    )
    response = await web.post(
        f"/endpoints/{endpoint_id}/environments/production/undeploy", {"confirm": "yes"}
    )
    assert response.status_code == 303
    panel = await poll(web, f"/endpoints/{endpoint_id}/environments/production")
    assert 'data-status="deleted"' in panel
    assert named(runtime, name) == []
    assert [(r.action, r.status) for r in rows(settings)] == [
        ("deploy", "ready"),
        ("scale", "ready"),
        ("deploy", "ready"),
        ("rollback", "ready"),
        ("undeploy", "deleted"),
    ]


async def test_deploy_is_refused_without_a_build_and_state_changes_need_csrf(web, settings, worker):
    endpoint_id = await import_lab(web)
    response = await web.post(f"/endpoints/{endpoint_id}/environments/staging/deploy", htmx=True)
    assert response.status_code == 409 and "press Build first" in await response.get_data(as_text=True)
    forged = await web.post(f"/endpoints/{endpoint_id}/builds", htmx=True, csrf=False)
    assert forged.status_code == 403 and rows(settings, Build) == []
    assert (await web.get(f"/endpoints/{endpoint_id}/environments/qa")).status_code == 404


def _redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        message = f"Redis is not reachable at {REDIS_URL} ({error})"
        if strict():
            pytest.fail(f"{message}; PODROUTE_STRICT_TESTS=1 requires it", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def redis_settings(settings):
    _redis_or_skip()
    import dataclasses

    return dataclasses.replace(settings, broker_url=REDIS_URL)


@pytest.fixture
async def redis_web(redis_settings, add_test_user, make_web):
    from dashboard.app import create_app

    app = create_app(redis_settings)
    async with app.test_app() as test_app:
        await add_test_user(redis_settings)
        client = make_web(test_app.test_client())
        assert (await client.login()).status_code == 303
        yield client


async def test_redis_broker_pipeline(redis_web, redis_settings, tmp_path, runtime):
    assert not redis_settings.uses_embedded_broker
    started = CeleryWorker(redis_settings, tmp_path / "redis-worker.log")
    try:
        started.wait_ready()
        assert "Connected to redis://" in started.output()
        endpoint_id = await import_lab(redis_web)
        await build(redis_web, endpoint_id)
        panel = await deploy(redis_web, endpoint_id, "staging")
        assert 'data-status="ready"' in panel
        row = rows(redis_settings)[-1]
        assert health(row, runtime)["status"] == "healthy"
        await redis_web.post(f"/endpoints/{endpoint_id}/environments/staging/undeploy", {"confirm": "yes"})
        assert 'data-status="deleted"' in await poll(
            redis_web, f"/endpoints/{endpoint_id}/environments/staging"
        )
        assert named(runtime, endpoint_name(target(redis_settings, "staging"))) == []
    finally:
        started.stop()


async def test_worker_killed_mid_deploy_is_redelivered_and_finishes_once(web, settings, tmp_path, runtime):
    first_worker = CeleryWorker(settings, tmp_path / "worker-1.log")
    first_worker.wait_ready()
    try:
        endpoint_id = await import_lab(web)
        await build(web, endpoint_id)
        # Slow the lab's startup so the deploy is caught waiting for /ping.
        edit = await web.text(f"/endpoints/{endpoint_id}")
        assert "lab" in edit
        with create_sync_sessions(settings.url).begin() as session:
            from dashboard.models import EnvVar

            session.add(EnvVar(endpoint_id=endpoint_id, key="LAB_STARTUP_S", value="4", secret=False))
        response = await web.post(f"/endpoints/{endpoint_id}/environments/production/deploy", htmx=True)
        assert response.status_code == 200
        wait_until(lambda: rows(settings)[-1].step == "wait", 60, "the deploy to wait for /ping")
    finally:
        first_worker.kill()
    killed = rows(settings)[-1]
    assert killed.status == "deploying" and killed.external_id
    second_worker = CeleryWorker(settings, tmp_path / "worker-2.log")
    try:
        second_worker.wait_ready()
        panel = await poll(web, f"/endpoints/{endpoint_id}/environments/production", limit_s=90)
    finally:
        second_worker.stop()
    done = rows(settings)[-1]
    assert done.id == killed.id and done.status == "ready", done.log
    assert done.attempts == 2 and "resum" in panel
    assert named(runtime, endpoint_name(target(settings, "production"))) == [killed.external_id]
    assert health(done, runtime)["status"] == "healthy"
    provider(runtime).delete(done.external_id)


def test_the_periodic_sync_is_quiet_when_nothing_changes(worker):
    """Issue #10 item 13: six sync cycles with nothing to do leave no INFO line per task."""
    time.sleep(3.0)  # the fixture's beat sends the sync every 0.5 s
    lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
    per_task = [
        entry
        for entry in lines
        if entry.get("logger") in ("celery.beat", "celery.worker.strategy", "celery.app.trace")
        and entry["level"] == "INFO"
    ]
    assert per_task == [], per_task[:3]
    assert any("ready" in entry["msg"] for entry in lines), lines[-5:]
