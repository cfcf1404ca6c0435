"""The dashboard's deploy pipeline against the fake RunPod (real Hypercorn on loopback), with Redis
as the Celery broker and a real worker process: build, paste the image, deploy, scale, deploy
again, roll back, undeploy, with injected 429s, 500s (one after the create was applied) and a
worker SIGKILLed mid-deploy. Every deployment ends in the right state, the fake holds exactly one
endpoint per environment throughout, and after undeploy no endpoint and no template is left.

The worker reaches the fake through the `RUNPOD_*` base-URL variables; the real RunPod is never
contacted (celery_support drops every RUNPOD_* variable of the calling environment)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dashboard.app import create_app
from dashboard.db import create_sync_sessions
from dashboard.models import Build, WorkerSample
from dashboard.settings import DashboardSettings
from podroute.deploy.model import endpoint_name
from tests.fake_runpod import API_KEY, FakeRunPod, fake_runpod_server
from tests.integration.dashboard.celery_support import CeleryWorker
from tests.integration.dashboard.test_dashboard_deploys import (
    REDIS_URL,
    _redis_or_skip,
    build,
    deploy,
    import_lab,
    poll,
    rows,
    target,
    wait_until,
)
from tests.runtime_support import make_lab_project

IMAGE_1 = "ghcr.io/acme/lab:v1"
IMAGE_2 = "registry.example.com:5000/acme/lab@sha256:" + "ab" * 32


@pytest.fixture
def runpod() -> Iterator[tuple[FakeRunPod, str]]:
    """The fake RunPod; a 1.5 s cold start keeps a deploy in its `wait` step long enough to kill."""
    with fake_runpod_server(FakeRunPod(cold_start_s=1.5, no_worker_timeout_s=1.0)) as served:
        yield served


def runpod_env(base: str) -> dict[str, str]:
    """What points `RunPodSettings.from_env()` in the worker at the fake (both APIs, both planes)."""
    return {
        "RUNPOD_API_BASE_URL": base,
        "RUNPOD_REST_V2_API_URL": f"{base}/v2",
        "RUNPOD_SERVERLESS_API_URL": f"{base}/dataplane/v2",
        "RUNPOD_ENDPOINT_BASE_URL": f"{base}/lb/{{id}}",
    }


@pytest.fixture
def rp_settings(tmp_path: Path, migrated_sqlite: Path, make_settings: Any) -> DashboardSettings:
    """Both environments on RunPod (the fake's key), Redis as the broker, short leases."""
    _redis_or_skip()
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(migrated_sqlite, data / "dashboard.sqlite3")
    settings: DashboardSettings = make_settings(
        data,
        make_lab_project(tmp_path / "project"),
        runtime_url="http://127.0.0.1:9",  # no local runtime: every environment is on RunPod
        runpod_api_key=API_KEY,
        providers=(("production", "runpod"), ("staging", "runpod")),
        broker_url=REDIS_URL,
        sync_interval_s=0.5,
        lease_s=3.0,
        deploy_timeout_s=60.0,
        celery_queue=f"dashboard-test-{uuid.uuid4().hex[:8]}",
    )
    return settings


@pytest.fixture
async def rp_web(rp_settings: DashboardSettings, add_test_user: Any, make_web: Any) -> AsyncIterator[Any]:
    """A logged-in client of the dashboard built from `rp_settings`."""
    app = create_app(rp_settings)
    async with app.test_app() as test_app:
        await add_test_user(rp_settings)
        client = make_web(test_app.test_client())
        assert (await client.login()).status_code == 303
        yield client


def own(fake: FakeRunPod, name: str) -> list[str]:
    """Ids of the fake's endpoints named `name`."""
    return [endpoint.id for endpoint in fake.lb_endpoints() if endpoint.name == name]


def templates_of(fake: FakeRunPod, prefix: str) -> list[str]:
    """Names of the fake's templates starting with `prefix`."""
    with fake._lock:
        return [t["name"] for t in fake.templates.values() if t["name"].startswith(prefix)]


async def set_image(web: Any, endpoint_id: int, build_id: int, image: str) -> tuple[int, str]:
    response = await web.post(
        f"/endpoints/{endpoint_id}/builds/{build_id}/image", {"image": image}, htmx=True
    )
    return response.status_code, str(await response.get_data(as_text=True))


async def test_runpod_pipeline_with_redis_injected_faults_and_a_killed_worker(
    rp_web: Any, rp_settings: DashboardSettings, runpod: tuple[FakeRunPod, str], tmp_path: Path
) -> None:
    web, settings = rp_web, rp_settings
    fake, base = runpod
    assert not settings.uses_embedded_broker
    worker = CeleryWorker(settings, tmp_path / "worker-1.log", runpod_env(base))
    logs = [worker]
    try:
        worker.wait_ready()
        assert "Connected to redis://" in worker.output()
        endpoint_id = await import_lab(web)

        # The build panel says exactly how to make the image, and deploying waits for one.
        panel = await build(web, endpoint_id)
        first_build = rows(settings, Build)[-1]
        assert "docker build --platform linux/amd64" in panel and "docker push" in panel
        assert first_build.artifact_hash[:12] in panel
        refused = await web.post(f"/endpoints/{endpoint_id}/environments/production/deploy", htmx=True)
        assert refused.status_code == 409
        assert "paste the image reference" in await refused.get_data(as_text=True)

        # The reference is checked, stored on the build and audited.
        status, html = await set_image(web, endpoint_id, first_build.id, "https://ghcr.io/acme/lab:v1")
        assert status == 422 and "not an image reference" in html
        status, html = await set_image(web, endpoint_id, first_build.id, "ghcr.io/acme/lab")
        assert status == 422 and "no tag or digest" in html
        status, html = await set_image(web, endpoint_id, first_build.id, f"  {IMAGE_1} ")
        assert status == 200 and f'data-build-image="{IMAGE_1}"' in html
        assert rows(settings, Build)[-1].image == IMAGE_1
        assert ">image<" in await web.text("/audit")

        # Deploy through 429s, 500s on reads, and a create whose answer is lost after it was applied.
        fake.inject("429", "POST /v2/templates", times=2)
        fake.inject("500", "POST /v2/serverless", after=True)
        fake.inject("500", "GET /v2/serverless", times=2)
        panel = await deploy(web, endpoint_id, "production")
        assert 'data-status="ready"' in panel, panel
        first = rows(settings)[-1]
        production = endpoint_name(target(settings, "production"))
        assert own(fake, production) == [first.external_id]
        assert fake.endpoints[first.external_id].image == IMAGE_1
        assert first.api_key == "" and API_KEY not in panel  # the account key is never stored or shown
        assert 'os.environ["RUNPOD_API_KEY"]' in panel and "Reveal API key" not in panel
        assert fake.faults == []  # every injected failure was met

        # Scaling applies to the live RunPod endpoint (through a 500 on the full-record update).
        fake.inject("500", "PATCH /v2/serverless", times=1)
        response = await web.post(
            f"/endpoints/{endpoint_id}/scaling",
            {"workersMin": "0", "workersMax": "2", "idleTimeout": "5", "scalerValue": "1"},
            htmx=True,
        )
        assert response.status_code == 200
        wait_until(lambda: fake.endpoints[first.external_id].config["workersMax"] == 2, 30, "scaling")

        # A second build and release on the same endpoint, then a rollback without a rebuild.
        endpoint_py = settings.project_dir / "services" / "lab" / "endpoint.py"
        endpoint_py.write_text(endpoint_py.read_text().replace("VERSION = 1", "VERSION = 2"))
        await build(web, endpoint_id)
        second_build = rows(settings, Build)[-1]
        assert second_build.id != first_build.id
        assert (await set_image(web, endpoint_id, second_build.id, IMAGE_2))[0] == 200
        fake.inject("429", "GET /v2/templates", times=2)
        assert 'data-status="ready"' in await deploy(web, endpoint_id, "production")
        second = rows(settings)[-1]
        assert second.external_id == first.external_id
        assert fake.endpoints[first.external_id].image == IMAGE_2
        assert fake.endpoints[first.external_id].config["workersMax"] == 2  # live scaling kept
        response = await web.post(f"/deployments/{first.id}/rollback", htmx=True)
        assert response.status_code == 200
        panel = await poll(web, f"/endpoints/{endpoint_id}/environments/production")
        assert 'data-status="ready"' in panel and "rollback to #" in panel
        assert fake.endpoints[first.external_id].image == IMAGE_1
        production = endpoint_name(target(settings, "production"))
        assert own(fake, production) == [first.external_id]
        assert len(rows(settings, Build)) == 2

        # Staging: the worker is SIGKILLed while the deploy waits for readiness; another finishes it.
        response = await web.post(f"/endpoints/{endpoint_id}/environments/staging/deploy", htmx=True)
        assert response.status_code == 200
        wait_until(lambda: rows(settings)[-1].step == "wait", 60, "the staging deploy to wait for /ping")
        worker.kill()
        killed = rows(settings)[-1]
        assert killed.status == "deploying" and killed.external_id
        worker = CeleryWorker(settings, tmp_path / "worker-2.log", runpod_env(base))
        logs.append(worker)
        worker.wait_ready()
        panel = await poll(web, f"/endpoints/{endpoint_id}/environments/staging", limit_s=90)
        done = rows(settings)[-1]
        assert done.id == killed.id and done.status == "ready", done.log
        assert done.attempts == 2 and "resum" in panel
        assert own(fake, endpoint_name(target(settings, "staging"))) == [killed.external_id]
        assert fake.endpoints[killed.external_id].image == IMAGE_2

        # Two environments, two endpoints: each was created once (the lost answer was adopted).
        assert fake.count("POST /v2/serverless") == 2
        assert len(fake.lb_endpoints()) == 2

        # Undeploy both, through a 429 on the delete and 500s on listing templates.
        fake.inject("429", "DELETE /v2/serverless", times=1)
        fake.inject("500", "GET /v2/templates", times=2)
        for environment in ("production", "staging"):
            response = await web.post(
                f"/endpoints/{endpoint_id}/environments/{environment}/undeploy", {"confirm": "yes"}
            )
            assert response.status_code == 303
            panel = await poll(web, f"/endpoints/{endpoint_id}/environments/{environment}")
            assert 'data-status="deleted"' in panel, panel
        prefix = production.removesuffix("-production-lab")
        assert fake.lb_endpoints() == [] and templates_of(fake, prefix) == []
        assert fake.unsafe_deletes == []  # scaled to zero before each delete
    finally:
        worker.stop()

    final = [(r.environment, r.action, r.status) for r in rows(settings)]
    assert final == [
        ("production", "deploy", "ready"),
        ("production", "scale", "ready"),
        ("production", "deploy", "ready"),
        ("production", "rollback", "ready"),
        ("staging", "deploy", "ready"),
        ("production", "undeploy", "deleted"),
        ("staging", "undeploy", "deleted"),
    ]
    assert len({r.external_id for r in rows(settings) if r.environment == "production"}) == 1
    assert [r.api_key for r in rows(settings)] == [""] * len(final)
    assert API_KEY.encode() not in (settings.data_dir / "dashboard.sqlite3").read_bytes()
    assert not any(API_KEY in started.output() for started in logs)


def samples_of(settings: DashboardSettings, external_id: str) -> list[WorkerSample]:
    """The worker samples the sync stored for a provider endpoint."""
    with create_sync_sessions(settings.url)() as session:
        query = select(WorkerSample).where(WorkerSample.external_id == external_id)
        return list(session.scalars(query.order_by(WorkerSample.id)))


async def test_runpod_over_graphql_with_faults_usage_samples_and_the_bill(
    rp_settings: DashboardSettings,
    runpod: tuple[FakeRunPod, str],
    tmp_path: Path,
    add_test_user: Any,
    make_web: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same pipeline over RunPod's GraphQL API (never REST), with injected 429s, 5xx and a lost
    create answer; the sync samples the health API's worker counts, and the metrics page puts the
    estimate from them next to the bill RunPod reports for the window."""
    fake, base = runpod
    settings = replace(rp_settings, runpod_api="graphql", usage_interval_s=0.5)
    for key, value in runpod_env(base).items():  # the web side reads prices and the bill too
        monkeypatch.setenv(key, value)
    app = create_app(settings)
    worker = CeleryWorker(settings, tmp_path / "worker-graphql.log", runpod_env(base))
    try:
        async with app.test_app() as test_app:
            await add_test_user(settings)
            web = make_web(test_app.test_client())
            assert (await web.login()).status_code == 303
            worker.wait_ready()
            endpoint_id = await import_lab(web)
            await build(web, endpoint_id)
            built = rows(settings, Build)[-1]
            assert (await set_image(web, endpoint_id, built.id, IMAGE_1))[0] == 200

            fake.inject("429", "graphql saveTemplate", times=2, retry_after="0")
            fake.inject("500", "graphql saveEndpoint", after=True)  # created, but the answer is lost
            fake.inject("500", "graphql endpoints", times=2)
            panel = await deploy(web, endpoint_id, "production")
            assert 'data-status="ready"' in panel, panel
            first = rows(settings)[-1]
            name = endpoint_name(target(settings, "production"))
            assert own(fake, name) == [first.external_id]
            assert fake.faults == []
            # the lost answer was found by listing: created once, over GraphQL only
            assert fake.count("graphql saveEndpoint") == 1 and fake.count("POST /v2/serverless") == 0
            assert not [call for call in fake.calls if call.startswith(("POST /v2", "PATCH /v2"))]

            # The sync samples the health API: workers over time, so a chart and an estimate.
            wait_until(lambda: len(samples_of(settings, first.external_id)) >= 2, 30, "two worker samples")
            stored = samples_of(settings, first.external_id)
            assert all(s.environment == "production" and "idle" in s.counts for s in stored)
            now = datetime.now(UTC)
            fake.billing_records.append(
                {
                    "serverlessId": first.external_id,
                    "startTime": (now - timedelta(minutes=10)).isoformat(timespec="seconds"),
                    "endTime": now.isoformat(timespec="seconds"),
                    "totalAmount": 0.0123,
                    "gpuAmount": 0.0,
                }
            )
            page = await web.text(f"/endpoints/{endpoint_id}/metrics/panel?env=production&window=15m")
            assert 'data-provider="runpod"' in page and "Workers (RunPod health API" in page
            assert 'data-billed="0.012300"' in page and "data-estimate=" in page, page
            assert "Not shown here: per-route metrics" in page
            assert fake.count("GET /v2/billing/serverless") == 1

            # Undeploy over GraphQL through a 500 on the delete: nothing is left on the account.
            fake.inject("500", "graphql deleteEndpoint", times=1)
            response = await web.post(
                f"/endpoints/{endpoint_id}/environments/production/undeploy", {"confirm": "yes"}
            )
            assert response.status_code == 303
            panel = await poll(web, f"/endpoints/{endpoint_id}/environments/production")
            assert 'data-status="deleted"' in panel, panel
            assert fake.lb_endpoints() == [] and templates_of(fake, name) == []
    finally:
        worker.stop()
