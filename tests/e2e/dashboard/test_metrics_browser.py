"""The metrics overview in a real Chromium: it updates its charts during traffic without a reload,
leads from a failed request to its worker's log lines, and streams worker log lines live (kept
after the worker stops). A real runtime serves the endpoint; the
dashboard reads its metrics through the runtime's control API."""

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
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from dashboard.models import Deployment, Endpoint
from tests.e2e.dashboard.processes import start, stop
from tests.integration.podroute.test_runtime_metrics import make_shop_project
from tests.runtime_support import deploy, runtime_process

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "metrics-e2e-admin-password"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A runtime serving the shop endpoint, and a dashboard whose endpoint row is deployed there."""
    project = make_shop_project(tmp_path / "project")
    with runtime_process(tmp_path / "runtime") as runtime:
        entry = deploy(project, runtime, key="shop/shop")
        data_dir = tmp_path / "dashboard"
        data_dir.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHBOARD_", "RUNPOD_"))}
        env.pop("DATABASE_URL", None)
        env.update(
            DASHBOARD_ENV="production",
            DASHBOARD_SECRET_KEY="metrics-e2e-secret-key-long-enough-for-production",
            DASHBOARD_SECURE_COOKIES="0",
            DASHBOARD_DATA_DIR=str(data_dir),
            DASHBOARD_HOST="127.0.0.1",
            DASHBOARD_PORT="0",
            DASHBOARD_ADMIN_PASSWORD=PASSWORD,
            DASHBOARD_PROJECT_DIR=str(project),
            PODROUTE_RUNTIME_URL=runtime.url,
            PODROUTE_RUNTIME_TOKEN=runtime.token,
        )
        subprocess.run([sys.executable, "-m", "dashboard", "migrate"], cwd=ROOT, env=env, check=True)
        engine = create_engine(f"sqlite:///{data_dir / 'dashboard.sqlite3'}")
        with Session(engine) as db, db.begin():
            endpoint = Endpoint(
                name="shop", service="shop", resource="shop", compute="cpu", instance_ids=["cpu3g-2-8"],
                workers_max=2, scaler_value=4, idle_timeout=2,
            )  # fmt: skip
            db.add(endpoint)
            db.flush()
            deployed = Deployment(
                endpoint_id=endpoint.id, provider="local", status="ready", environment="production",
                external_id=entry["id"], url=entry["url"],
            )  # fmt: skip
            db.add(deployed)
            endpoint_id = endpoint.id
        engine.dispose()
        process, url = start([sys.executable, "-m", "dashboard"], env, data_dir / "dashboard.log")
        try:
            yield {"dashboard": url, "endpoint_id": endpoint_id, **entry}
        finally:
            stop(process)


def _traffic(url: str, key: str, stop_at: threading.Event) -> None:
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        i = 1
        while not stop_at.is_set():
            client.get(f"{url}/users/{i}")
            client.get(f"{url}/slow")
            i += 1


def _number(page: Any, selector: str, attribute: str) -> float:
    return float(page.get_attribute(selector, attribute) or "0")


def _wait_until(predicate: Any, what: str, timeout_s: float = 20.0) -> None:
    # polled from Python: the dashboard's CSP forbids the eval that page.wait_for_function uses
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _logged_in(browser: Any, stack: dict[str, Any]) -> tuple[Any, Any, list[str]]:
    """A browser context and page logged in to the stack's dashboard, and the page's JS errors."""
    context = browser.new_context(base_url=stack["dashboard"], viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(20_000)
    page.goto("/endpoints")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(re.compile(r"/endpoints$"))
    return context, page, errors


def test_overview_charts_update_live_and_lead_to_worker_logs(browser: Any, stack: dict[str, Any]) -> None:
    context, page, errors = _logged_in(browser, stack)

    page.goto(f"/endpoints/{stack['endpoint_id']}")
    page.click("a:has-text('Metrics')")
    page.wait_for_selector("#metrics-totals")
    page.evaluate("window.__notReloaded = true")
    before = int(page.get_attribute("#metrics-totals", "data-requests") or "0")
    chart = "svg[data-chart='Requests and errors per minute'] text[data-series='requests']"
    total_before = float(page.get_attribute(chart, "data-total") or "0")

    stop_at = threading.Event()
    driver = threading.Thread(target=_traffic, args=(stack["url"], stack["api_key"], stop_at))
    driver.start()
    try:
        _wait_until(lambda: _number(page, "#metrics-totals", "data-requests") >= before + 20, "totals")
        _wait_until(lambda: _number(page, chart, "data-total") > total_before, "the requests chart")
        first_seen = _number(page, "#metrics-totals", "data-requests")
        _wait_until(lambda: _number(page, "#metrics-totals", "data-requests") > first_seen, "a later update")
    finally:
        stop_at.set()
        driver.join(30)
    assert page.evaluate("window.__notReloaded") is True  # updated in place, never reloaded
    assert page.locator("svg.chart polyline").count() >= 4
    routes = page.inner_text("#metrics-routes")
    assert "/users/{user_id}" in routes and "/slow" in routes
    assert "starting" in page.inner_text("#metrics-workers")
    assert "scale out" in page.inner_text("#metrics-decisions")

    # from a failed request to the worker's log lines carrying its request id
    httpx.get(f"{stack['url']}/crash", headers={"Authorization": f"Bearer {stack['api_key']}",
                                                 "X-Request-ID": "e2e-crash-1"})  # fmt: skip
    time.sleep(0.5)
    page.goto(f"/endpoints/{stack['endpoint_id']}/metrics/requests?status=5xx")
    page.click("a:has-text('e2e-crash-1')")
    page.wait_for_selector("#worker-log")
    assert "boom in the shop" in page.inner_text("#worker-log")
    context.close()
    # as in the other dashboard e2e tests: Chromium logs the missing favicon as a failed resource
    unexpected = [e for e in errors if "Failed to load resource" not in e]
    assert unexpected == [], unexpected


def test_live_worker_logs_stream_in_and_stay_after_the_worker_stops(
    browser: Any, stack: dict[str, Any]
) -> None:
    context, page, errors = _logged_in(browser, stack)
    page.goto(f"/endpoints/{stack['endpoint_id']}/metrics")
    page.wait_for_selector("#live-log")
    page.evaluate("window.__notReloaded = true")
    _wait_until(lambda: page.inner_text("#live-log-status") == "live", "the log stream to open")

    # a request that makes the worker log: its line appears without a reload
    headers = {"Authorization": f"Bearer {stack['api_key']}", "X-Request-ID": "e2e-live-1"}
    assert httpx.get(f"{stack['url']}/crash", headers=headers, timeout=60).status_code == 500
    _wait_until(lambda: "e2e-live-1" in page.inner_text("#live-log"), "the new log line")
    assert "boom in the shop" in page.inner_text("#live-log")
    assert page.evaluate("window.__notReloaded") is True

    # idleTimeout 2 s, workersMin 0: the worker stops; its lines stay, on the page and after a reload
    _wait_until(lambda: "stopped" in page.inner_text("#metrics-workers"), "the worker to stop", 40)
    assert "e2e-live-1" in page.inner_text("#live-log")
    page.reload()
    page.wait_for_selector("#live-log")
    _wait_until(lambda: "e2e-live-1" in page.inner_text("#live-log"), "the stopped worker's lines again")
    context.close()
    unexpected = [e for e in errors if "Failed to load resource" not in e]
    assert unexpected == [], unexpected
