"""One control plane, seen from the dashboard: a real runtime, a real Celery worker (with beat), the
real `podroute` CLI. A CLI deploy appears in the dashboard within a sync interval and the dashboard
acts on it; a dashboard deploy of the same target lands on the same provider endpoint and shows in
`podroute deploy list`; an out-of-band scale shows as drift until "apply stored config"; orphans
are listed and deleted while unmarked endpoints are never touched; a deployed config cannot be
deleted until "undeploy all, then delete" has confirmed every endpoint gone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from dashboard.configs import desired_config
from dashboard.models import Build, Deployment, Endpoint, OrphanEndpoint
from dashboard.worker.builds import build_result
from podroute.deploy.model import Target, endpoint_name
from podroute.project import project_name
from tests.integration.dashboard import test_dashboard_deploys as deploys
from tests.integration.dashboard.test_dashboard_deploys import (
    build,
    deploy,
    import_lab,
    named,
    poll,
    provider,
    rows,
    target,
)
from tests.runtime_support import deploy as cli_deploy
from tests.runtime_support import run_cli

runtime = deploys.runtime
lab_project = deploys.lab_project
settings = deploys.settings
worker = deploys.worker


async def until(predicate: Any, limit_s: float, what: str) -> None:
    """Poll `predicate()` (sync) without blocking the app's event loop."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {limit_s}s waiting for {what}")


def serving(settings: Any, environment: str) -> Deployment | None:
    ready = [r for r in rows(settings) if r.environment == environment and r.status in ("ready", "deleted")]
    return ready[-1] if ready and ready[-1].status == "ready" else None


async def test_cli_and_dashboard_share_one_record_with_drift_and_lifecycle(web, settings, worker, runtime):
    project = settings.project_dir
    interval = settings.sync_interval_s
    endpoint_id = await import_lab(web)

    # A CLI deploy: within one sync interval (plus the cycle's own time) the dashboard records it.
    entry = cli_deploy(project, runtime, "staging")
    await until(lambda: serving(settings, "staging") is not None, interval * 4 + 5, "the sync to record it")
    recorded = serving(settings, "staging")
    assert recorded.external_id == entry["id"] and recorded.release == 1
    assert recorded.created_by.startswith("cli:") and recorded.action == "deploy"
    page = await web.text(f"/endpoints/{endpoint_id}")
    assert entry["id"] in page and "release 1" in page and recorded.created_by in page

    # The dashboard deploys the same target to staging: the same provider endpoint, a second release.
    await build(web, endpoint_id)
    panel = await deploy(web, endpoint_id, "staging")
    assert 'data-status="ready"' in panel, panel
    second = serving(settings, "staging")
    staging_name = endpoint_name(target(settings, "staging"))
    assert second.external_id == entry["id"] and second.release == 2
    assert named(runtime, staging_name) == [entry["id"]]
    with provider(runtime) as runtime_provider:
        assert [r.number for r in runtime_provider.status(entry["id"]).releases] == [1, 2]

    # ... and `podroute deploy list` shows the dashboard's release.
    listed = run_cli(["deploy", "list"], project)
    assert listed.returncode == 0, listed.stderr
    assert (
        entry["id"] in listed.stdout and "release #2" in listed.stdout and "dashboard:alice" in listed.stdout
    )

    # Out of band, `podroute scale` changes workersMax: drift within a sync interval, field by field.
    scaled = run_cli(["scale", "lab/lab", "--env", "staging", "--max", "2"], project)
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    await until(
        lambda: [f["name"] for f in serving(settings, "staging").observed.get("drift", [])] == ["workersMax"],
        interval * 4 + 5,
        "drift to show",
    )
    page = await web.text(f"/endpoints/{endpoint_id}")
    assert 'data-drift-field="workersMax"' in page and "Apply stored config" in page
    response = await web.post(f"/endpoints/{endpoint_id}/environments/staging/drift/apply", htmx=True)
    assert response.status_code == 200, await response.get_data(as_text=True)
    await poll(web, f"/endpoints/{endpoint_id}/environments/staging")
    with provider(runtime) as runtime_provider:
        assert (
            runtime_provider.status(entry["id"]).serving["workersMax"]
            == second.config["fields"]["workersMax"]
        )
    await until(lambda: not serving(settings, "staging").observed.get("drift"), interval * 4 + 5, "no drift")
    assert 'data-drift-field="workersMax"' not in await web.text(f"/endpoints/{endpoint_id}")
    assert [r.action for r in rows(settings) if r.environment == "staging"] == ["deploy", "deploy", "apply"]

    # Out of band again (workersMax 1): "adopt serving config" makes the serving workersMax the
    # stored (and the provider's recorded) value; the history gets its own entry; the drift ends.
    scaled = run_cli(["scale", "lab/lab", "--env", "staging", "--max", "1"], project)
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    await until(
        lambda: [f["name"] for f in serving(settings, "staging").observed.get("drift", [])] == ["workersMax"],
        interval * 4 + 5,
        "the second drift to show",
    )
    assert 'data-adoptable="yes"' in await web.text(f"/endpoints/{endpoint_id}")
    response = await web.post(f"/endpoints/{endpoint_id}/environments/staging/drift/adopt", htmx=True)
    assert response.status_code == 200, await response.get_data(as_text=True)
    await poll(web, f"/endpoints/{endpoint_id}/environments/staging")
    [stored] = _all(settings, Endpoint)
    assert stored.workers_max == 1 and serving(settings, "staging").config["fields"]["workersMax"] == 1
    with provider(runtime) as runtime_provider:
        assert runtime_provider.status(entry["id"]).overrides["workersMax"] == 1
    await until(lambda: not serving(settings, "staging").observed.get("drift"), interval * 4 + 5, "no drift")
    assert [r.action for r in rows(settings) if r.environment == "staging"][-1] == "adopt"

    # Roll back to the CLI's release from the dashboard: release 1 serves again.
    response = await web.post(f"/deployments/{recorded.id}/rollback", htmx=True)
    assert response.status_code == 200
    assert 'data-status="ready"' in await poll(web, f"/endpoints/{endpoint_id}/environments/staging")
    with provider(runtime) as runtime_provider:
        assert runtime_provider.status(entry["id"]).release.number == 1

    # An orphan (marked for this project, for code no config describes) is listed and deleted;
    # an endpoint without the marker is never listed and survives.
    built = build_result(rows(settings, Build)[-1])
    ghost = Target(project_name(project), "production", "ghost", "ghost")
    with provider(runtime) as runtime_provider:
        orphan = runtime_provider.create(
            ghost,
            built,
            desired_config({"fields": {}, "env": {}}, built.manifest["resource"]),
            deployed_by="cli:someone",
        )
    control = httpx.AsyncClient(
        base_url=f"{runtime.url}/control", headers={"Authorization": f"Bearer {runtime.token}"}, timeout=30
    )
    unmarked = await control.post("/endpoints", json={"build": built.sha256, "name": "not-podroutes"})
    assert unmarked.status_code == 201, unmarked.text
    unmarked_id = unmarked.json()["id"]
    await until(lambda: _orphans(settings) == [orphan.id], interval * 4 + 5, "the orphan to be listed")
    page = await web.text("/orphans")
    assert orphan.id in page and unmarked_id not in page
    [orphan_row] = [o for o in _all(settings, OrphanEndpoint)]
    response = await web.post(f"/orphans/{orphan_row.id}/delete", {"confirm": "yes"})
    assert response.status_code == 303
    await until(lambda: _orphans(settings) == [], 30, "the orphan to be deleted")
    with provider(runtime) as runtime_provider:
        remaining = {e.id for e in runtime_provider.list_endpoints()}
    assert orphan.id not in remaining and entry["id"] in remaining
    assert (await control.get(f"/endpoints/{unmarked_id}")).status_code == 200  # untouched

    # Deleting the deployed config is refused with the list; "undeploy all, then delete" leaves
    # nothing on the runtime and only then deletes the config; the audit log says it is gone.
    refused = await web.post(f"/endpoints/{endpoint_id}/delete", {"confirm": "yes"})
    body = await refused.get_data(as_text=True)
    assert refused.status_code == 409 and 'data-live="staging"' in body and entry["id"] in body
    assert "Undeploy all, then delete" in await web.text(f"/endpoints/{endpoint_id}/delete")
    response = await web.post(f"/endpoints/{endpoint_id}/undeploy-all-then-delete", {"confirm": "yes"})
    assert response.status_code == 303
    await until(lambda: _all(settings, Endpoint) == [], 60, "the config to be deleted")
    assert named(runtime, staging_name) == []
    with provider(runtime) as runtime_provider:
        assert [e.id for e in runtime_provider.list_endpoints(project_name(project))] == []
    audit = await web.text("/audit")
    assert f'data-gone="{endpoint_id}"' in audit and "delete-requested" in audit
    gone = await web.get(f"/endpoints/{endpoint_id}")
    assert gone.status_code == 404 and "alice deleted it" in await gone.get_data(as_text=True)
    assert (await control.get(f"/endpoints/{unmarked_id}")).status_code == 200  # still untouched
    await control.delete(f"/endpoints/{unmarked_id}")
    await control.aclose()


def _all(settings: Any, model: Any) -> list[Any]:
    return rows(settings, model)


def _orphans(settings: Any) -> list[str]:
    return [o.external_id for o in _all(settings, OrphanEndpoint)]
