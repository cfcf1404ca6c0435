"""Deploying from the dashboard in real Chromium: a live dashboard, a real Celery worker (embedded
broker) and a real local runtime. Log in, import, build, deploy, call a route, scale under load,
roll back, undeploy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.settings import DashboardSettings
from tests.e2e.dashboard.processes import start, stop
from tests.integration.dashboard.celery_support import CeleryWorker, worker_env
from tests.runtime_support import Runtime, make_lab_project, runtime_process

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
ADMIN_PASSWORD = "e2e-admin-password"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Runtime, dashboard and Celery worker sharing one data dir; yields their addresses."""
    base = tmp_path_factory.mktemp("deploy-e2e")
    project = make_lab_project(base / "project")
    data = base / "data"
    data.mkdir()
    with runtime_process(base / "runtime") as runtime:
        settings = DashboardSettings(
            secret_key="e2e-secret-key-long-enough-for-production-use",
            data_dir=data,
            project_dir=project,
            runtime_url=runtime.url,
            runtime_token_file=runtime.data_dir / "token",
            sync_interval_s=10.0,  # the default: what a page shows live must not wait for the sync
            lease_s=5.0,
            deploy_timeout_s=60.0,
        )
        env = worker_env(settings)
        env.update(
            DASHBOARD_ENV="production",
            DASHBOARD_SECRET_KEY="e2e-secret-key-long-enough-for-production-use",
            DASHBOARD_SECURE_COOKIES="0",
            DASHBOARD_HOST="127.0.0.1",
            DASHBOARD_PORT="0",
            DASHBOARD_ADMIN_PASSWORD=ADMIN_PASSWORD,
        )
        subprocess.run(
            [sys.executable, "-m", "dashboard", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        dashboard, url = start([sys.executable, "-m", "dashboard"], env, data / "dashboard.log")
        worker = CeleryWorker(settings, data / "worker.log")
        try:
            worker.wait_ready()
            yield {"url": url, "runtime": runtime, "project": project}
        finally:
            worker.stop()
            stop(dashboard)


def _load(url: str, key: str, stop: threading.Event) -> None:
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            client.get(f"{url}/slow", params={"seconds": 1.5}, headers={"Authorization": f"Bearer {key}"})


def _wait_for_version(url: str, key: str, version: int) -> None:
    """Old-release workers drain after a rollout; wait until the gateway serves `version`."""
    deadline = time.monotonic() + 30
    seen = None
    while time.monotonic() < deadline:
        seen = httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
        if seen["version"] == version:
            return
        time.sleep(0.3)
    raise AssertionError(f"the endpoint still serves {seen} instead of version {version}")


def _wait_for_workers(runtime: Runtime, endpoint_id: str, count: int) -> float:
    """When (monotonic) the runtime itself reports `count` workers for the endpoint."""
    deadline = time.monotonic() + 60
    with runtime.provider() as provider:
        while time.monotonic() < deadline:
            if sum(provider.status(endpoint_id).workers.values()) == count:
                return time.monotonic()
            time.sleep(0.1)
    raise AssertionError(f"the runtime never reported {count} workers for {endpoint_id}")


def _log_in(page: Any) -> None:
    page.goto("/endpoints")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(re.compile(r"/endpoints$"))


def test_build_deploy_scale_roll_back_and_undeploy_in_the_browser(browser, stack, artifacts):
    from playwright.sync_api import expect

    runtime: Runtime = stack["runtime"]
    context = browser.new_context(base_url=stack["url"], viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(60_000)
    _log_in(page)

    page.click("nav >> text=Import from code")
    page.click("button:has-text('Import selected')")
    page.click("#endpoint-rows >> text=lab")
    page.evaluate("window.notReloaded = true")  # every check below happens without a reload
    production = page.locator("#env-production")
    deploy = production.locator("button:has-text('Deploy to production')")
    expect(deploy).to_be_disabled()
    expect(production.locator(".blocked")).to_contain_text("there is no successful build yet")
    page.click("#build-panel button:has-text('Build')")
    expect(page.locator("[data-build-status]")).to_have_attribute(
        "data-build-status", "succeeded", timeout=60_000
    )
    expect(deploy).to_be_enabled()  # the build panel told the environments (an htmx event)
    expect(production.locator(".blocked")).to_have_count(0)

    header = page.locator("#endpoint-statuses")
    expect(header.locator("[data-environment=production]")).to_have_text("production not deployed")
    deploy.click()
    expect(production.locator(".deployment-status")).to_have_text("ready", timeout=60_000)
    expect(header.locator("[data-environment=production]")).to_have_text("production ready")
    expect(header.locator("[data-environment=staging]")).to_have_text("staging not deployed")
    assert page.evaluate("window.notReloaded") is True
    endpoint_url = production.locator("code.endpoint-url").inner_text()
    assert "Bearer $PODROUTE_API_KEY" in production.locator("pre.snippet").first.inner_text()

    production.locator("button:has-text('Reveal API key')").click()
    key = production.locator("code.api-key").inner_text()
    assert key.startswith("prk_")

    # Call a route through the try-it panel with the revealed key.
    page.fill("#try-it input[name=base_url]", endpoint_url)
    page.fill("#try-it input[name=path]", "/health")
    page.select_option("#try-it select[name=method]", "GET")
    page.fill("#try-it input[name=token]", key)
    page.fill("#try-it textarea[name=body]", "")
    page.click("button:has-text('Send request')")
    expect(page.locator("#try-result")).to_contain_text("200 OK")
    expect(page.locator("#try-result pre.body")).to_contain_text('"status": "healthy"')

    # Scaling to 2 workers: the scale task reaches the runtime well before the 10 s sync would, the
    # Configuration panel shows it at once, and the worker panel (a live read of the runtime every
    # 2 s) within ~3 s of the runtime having them, all without a reload. Each wait is measured from
    # its own cause, so a slow Celery pick-up on a loaded machine is not blamed on the panel.
    page.fill("#scaling input[name=workersMin]", "2")
    page.fill("#scaling input[name=idleTimeout]", "2")
    started = time.monotonic()
    page.click("#scaling button:has-text('Apply scaling')")
    expect(page.locator("#config dd[data-field=workersMin]")).to_have_text(re.compile(r"^2\b"))
    up_at = _wait_for_workers(runtime, production.get_attribute("data-external-id") or "", 2)
    assert up_at - started < 10.0, f"the scaling reached the runtime only after {up_at - started:.1f} s"
    expect(production.locator(".worker-count")).to_have_text("2", timeout=3_500)
    expect(production.locator(".workers")).to_contain_text("workersMin=2")
    shown_after_s = time.monotonic() - up_at
    assert shown_after_s <= 3.5, shown_after_s
    # Back to 0: the idle workers leave after 2 s, long after the scaling task ended; the panel
    # shows it within ~3 s of the runtime reporting it (the sync would take up to 10 s).
    page.fill("#scaling input[name=workersMin]", "0")
    page.click("#scaling button:has-text('Apply scaling')")
    expect(page.locator("#config dd[data-field=workersMin]")).to_have_text(re.compile(r"^0\b"))
    gone_at = _wait_for_workers(runtime, production.get_attribute("data-external-id") or "", 0)
    expect(production.locator(".worker-count")).to_have_text("0", timeout=3_500)
    shown_after_s = time.monotonic() - gone_at
    assert shown_after_s <= 3.5, shown_after_s
    assert page.evaluate("window.notReloaded") is True

    # The list shows each environment's status.
    listing = context.new_page()
    listing.goto("/endpoints")
    row = listing.locator("#endpoint-rows tr", has_text="lab")
    expect(row.locator("[data-environment=production]")).to_have_text("production ready")
    expect(row.locator("[data-environment=staging]")).to_have_text("staging not deployed")
    listing.close()

    # workersMax 2 (the code says 3) with one request per worker: under load, the count follows.
    assert page.locator("#scaling input[name=workersMax]").input_value() == "3"
    page.fill("#scaling input[name=workersMax]", "2")
    page.fill("#scaling input[name=scalerValue]", "1")
    page.click("#scaling button:has-text('Apply scaling')")
    expect(page.locator(".scaling-saved")).to_be_visible()
    expect(production.locator(".workers")).to_contain_text("workersMax=2")  # live, not just stored
    stop = threading.Event()
    loaders = [threading.Thread(target=_load, args=(endpoint_url, key, stop)) for _ in range(3)]
    for thread in loaders:
        thread.start()
    try:
        expect(production.locator(".worker-count")).to_have_text("2", timeout=60_000)
    finally:
        stop.set()
        for thread in loaders:
            thread.join(60)
    page.screenshot(path=str(artifacts / "deploy-scaled.png"), full_page=True)
    assert (
        runtime.provider().status(production.get_attribute("data-external-id") or "").serving["workersMax"]
        == 2
    )

    # A second release, then one-click rollback to the first (no rebuild).
    endpoint_py = stack["project"] / "services" / "lab" / "endpoint.py"
    endpoint_py.write_text(endpoint_py.read_text().replace("VERSION = 1", "VERSION = 2"))
    page.click("#build-panel button:has-text('Build')")
    expect(page.locator("[data-build-status]")).to_have_text("build #2 succeeded", timeout=60_000)
    production.locator("button:has-text('Deploy to production')").click()
    # the panel's newest row is the new deploy (not the scaling row before it), and it is ready
    expect(production.locator(".status-panel p").first).to_contain_text(
        re.compile(r"ready\s+deploy #\d+"), timeout=60_000
    )
    _wait_for_version(endpoint_url, key, 2)
    production.locator("a:has-text('Diff')").first.click()
    expect(production.locator(".diff-view")).to_contain_text("build")
    production.locator("button:has-text('Roll back to')").click()
    expect(production.locator(".deployment-status")).to_have_text("ready", timeout=60_000)
    expect(production.locator(".status-panel")).to_contain_text("rollback")
    _wait_for_version(endpoint_url, key, 1)

    # Undeploy asks first and leaves nothing running.
    production.locator("a:has-text('Undeploy')").click()
    page.click("button:has-text('Undeploy from production')")
    expect(page.locator("#env-production .deployment-status")).to_have_text("undeployed", timeout=60_000)
    expect(page.locator("#endpoint-statuses [data-environment=production]")).to_have_text(
        "production undeployed"
    )
    assert runtime.provider()._call("GET", "/endpoints")["endpoints"] == []
    page.screenshot(path=str(artifacts / "deploy-undeployed.png"), full_page=True)
    context.close()
    assert errors == []
    assert os.path.getsize(artifacts / "deploy-scaled.png") > 10_000


def test_the_worker_needs_no_redis(stack):
    log = Path(stack["project"]).parent / "data" / "worker.log"
    assert "Connected to sqla+sqlite:///" in log.read_text() and "redis://" not in log.read_text()
