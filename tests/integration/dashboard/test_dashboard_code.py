"""Import from code, the routes table from the OpenAPI, and the try-it panel against a live Hypercorn."""

from __future__ import annotations

import os
import shutil
import time
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from dashboard.app import create_app
from tests.support.dashboard import live_server, load_demo_app, write_demo_project


async def import_all(web) -> str:
    page = await web.text("/import")
    fingerprint = page.split('name="fingerprint" value="', 1)[1].split('"', 1)[0]
    items = [part.split('"', 1)[0] for part in page.split('name="item" value="')[1:]]
    response = await web.post("/import", {"item": items, "fingerprint": fingerprint})
    assert response.status_code == 303, await response.get_data(as_text=True)
    return await web.text("/endpoints")


async def test_preview_lists_discovered_resources_and_broken_services(web):
    page = await web.text("/import")
    assert "demo-cpu" in page and "demo-gpu" in page
    assert "CpuLiveLoadBalancer" in page and "LiveLoadBalancer" in page
    assert page.count(">create<") == 2
    assert 'Service <span class="mono">broken</span> could not be imported' in page
    assert "this service is broken on purpose" in page


async def test_import_creates_configs_then_reports_them_unchanged(web):
    listing = await import_all(web)
    assert "demo-cpu" in listing and "demo-gpu" in listing
    assert "Import: created demo-cpu, demo-gpu" in listing
    again = await web.text("/import")
    assert again.count(">unchanged") == 2 and 'name="item"' not in again
    audit = await web.text("/audit")
    assert ">import<" in audit and audit.count(">create<") == 2


async def test_import_shows_what_would_change_and_applies_it(web, tmp_path, make_settings, settings):
    project = write_demo_project(tmp_path / "project", broken=False)
    app = create_app(make_settings(tmp_path, project))
    async with app.test_app() as test_app:
        web.client = test_app.test_client()
        await web.login()
        await import_all(web)
        endpoint_py = project / "services" / "demo" / "endpoint.py"
        source = endpoint_py.read_text().replace("workersMax=3", "workersMax=5")
        endpoint_py.write_text(source)
        os.utime(endpoint_py, ns=(time.time_ns(), time.time_ns() + 10**9))
        preview = await web.text("/import")
        assert ">update demo-cpu<" in preview
        assert '<span class="mono">workersMax</span>: 3 → 5' in preview
        listing = await import_all(web)
        assert "Import: updated demo-cpu" in listing


async def test_import_with_a_stale_preview_is_refused(web):
    page = await web.text("/import")
    response = await web.post("/import", {"item": ["demo/demo-cpu"], "fingerprint": "stale"})
    assert response.status_code == 409
    assert "the code changed since this preview" in await response.get_data(as_text=True)
    assert "demo-cpu" in page and "No endpoints yet" in await web.text("/endpoints")


async def test_import_keeps_dashboard_secrets_and_names(web, endpoint_form):
    form = endpoint_form(name="renamed-gpu", resource="demo-gpu", gpus=["ADA_24"], workersMax="2")
    created = await web.post("/endpoints", form)
    assert created.status_code == 303
    preview = await web.text("/import")
    assert ">unchanged renamed-gpu<" in preview
    await import_all(web)
    detail = await web.text(created.headers["Location"])
    assert "API_TOKEN" in detail and "renamed-gpu" in detail


async def test_project_without_services_says_so(web, tmp_path, make_settings):
    app = create_app(make_settings(tmp_path, tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    async with app.test_app() as test_app:
        web.client = test_app.test_client()
        await web.login()
        assert "No resources found" in await web.text("/import")


async def test_detail_shows_routes_with_parameters_and_body_schema(web):
    await import_all(web)
    listing = await web.text("/endpoints")
    cpu_id = listing.split('">demo-cpu</a>')[0].rsplit('href="/endpoints/', 1)[1]
    page = await web.text(f"/endpoints/{cpu_id}")
    assert '<td class="mono">/echo</td>' in page and '<td class="mono">/health</td>' in page
    assert "&#34;text&#34;" in page and "&#34;times&#34;" in page  # Item's schema, resolved from $ref
    assert "http://localhost:8888/demo" in page
    gpu_id = listing.split('">demo-gpu</a>')[0].rsplit('href="/endpoints/', 1)[1]
    gpu = await web.text(f"/endpoints/{gpu_id}")
    assert 'item_id</span> <span class="hint">path, integer, required' in gpu
    assert 'verbose</span> <span class="hint">query, boolean' in gpu


async def test_detail_explains_when_the_code_is_missing(web, endpoint_form):
    created = await web.post("/endpoints", endpoint_form(service="demo", resource="nothing"))
    page = await web.text(created.headers["Location"])
    assert "no resource &#39;nothing&#39; is declared in service &#39;demo&#39;" in page


async def test_try_panel_fragment_is_prefilled_for_a_route(web):
    await import_all(web)
    listing = await web.text("/endpoints")
    cpu_id = listing.split('">demo-cpu</a>')[0].rsplit('href="/endpoints/', 1)[1]
    response = await web.get(f"/endpoints/{cpu_id}/try?route=1", **{"HX-Request": "true"})
    body = await response.get_data(as_text=True)
    assert body.lstrip().startswith('<section class="panel" id="try-it">')
    assert 'value="/echo"' in body and "<option selected>POST</option>" in body
    assert "&#34;text&#34;: &#34;&#34;" in body  # an example body from the schema


@pytest.fixture
async def demo_server(demo_project):
    async with live_server(load_demo_app(demo_project)) as url:
        yield url


@asynccontextmanager
async def dashboard_calling(web, settings, base_url):
    """The same logged-in user on a dashboard whose try-it base URL (dev server) is `base_url`."""
    app = create_app(replace(settings, try_it_base_url=f"{base_url}/{{service}}"))
    async with app.test_app() as test_app:
        web.client = test_app.test_client()
        await web.login()
        yield web


async def test_try_it_sends_the_request_and_shows_the_response(web, settings, demo_server):
    async with dashboard_calling(web, settings, demo_server):
        await _try_echo(web, demo_server)


async def _try_echo(web, demo_server):
    await import_all(web)
    listing = await web.text("/endpoints")
    cpu_id = listing.split('">demo-cpu</a>')[0].rsplit('href="/endpoints/', 1)[1]
    form = {"base_url": demo_server, "method": "POST", "path": "/echo", "body": '{"text": "ab", "times": 2}'}
    response = await web.post(f"/endpoints/{cpu_id}/try", form, htmx=True)
    assert response.status_code == 200
    body = await response.get_data(as_text=True)
    assert "200 OK" in body and " ms</span>" in body
    assert "&#34;text&#34;: &#34;abab&#34;" in body
    assert "x-request-id" in body.lower()


async def test_try_it_without_htmx_renders_the_whole_page(web, settings, demo_server):
    async with dashboard_calling(web, settings, demo_server):
        await _try_without_htmx(web, demo_server)


async def _try_without_htmx(web, demo_server):
    await import_all(web)
    listing = await web.text("/endpoints")
    cpu_id = listing.split('">demo-cpu</a>')[0].rsplit('href="/endpoints/', 1)[1]
    form = {
        "base_url": demo_server,
        "method": "POST",
        "path": "/echo",
        "body": '{"text": 1}',
        "token": "tok-123",
    }
    response = await web.post(f"/endpoints/{cpu_id}/try", form)
    page = await response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in page
    assert "422 Unprocessable" in page
    assert "tok-123" not in page


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://example.com", "is not allowed"),
        ("ftp://127.0.0.1", "must start with http"),
        ("http://user:pw@127.0.0.1:1", "bearer token field"),
        ("http://127.0.0.1:9", "is not allowed"),  # loopback, but not the configured dev server
        ("http://127.0.0.1:1", "no response from"),  # the configured dev server, not running
    ],
)
async def test_try_it_refuses_bad_targets_with_422(web, settings, endpoint_form, base_url, message):
    async with dashboard_calling(web, settings, "http://localhost:1"):
        created = await web.post("/endpoints", endpoint_form())
        response = await web.post(
            f"{created.headers['Location']}/try", {"base_url": base_url, "method": "GET", "path": "/"}
        )
    assert response.status_code == 422
    assert message in await response.get_data(as_text=True)


async def test_discovery_does_not_pass_dashboard_secrets_to_user_code(
    web, tmp_path, make_settings, monkeypatch
):
    project = write_demo_project(tmp_path / "spy", broken=False)
    spy = project / "services" / "demo" / "endpoint.py"
    spy.write_text(
        "import os\n"
        "leaked = sorted(k for k in os.environ if k.startswith('DASHBOARD_') or k == 'DATABASE_URL')\n"
        "if leaked:\n    raise RuntimeError(f'leaked {leaked}')\n" + spy.read_text()
    )
    monkeypatch.setenv("DASHBOARD_SECRET_KEY", "should-not-reach-user-code")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///nowhere")
    app = create_app(make_settings(tmp_path, project))
    async with app.test_app() as test_app:
        web.client = test_app.test_client()
        await web.login()
        page = await web.text("/import")
    assert "leaked" not in page and "demo-cpu" in page
    shutil.rmtree(project)


def source_of(page: str, name: str) -> str:
    """The code/override badge next to one value of the Configuration panel."""
    badge = page.split(f'data-source-of="{name}"', 1)[1].split("</span>", 1)[0]
    return badge.rsplit(">", 1)[1]


async def test_each_config_value_says_whether_it_comes_from_code_or_an_override(web, endpoint_form):
    form = endpoint_form(name="tuned-gpu", resource="demo-gpu", gpus=["ADA_24"], workersMax="2")
    created = await web.post("/endpoints", form)
    assert created.status_code == 303
    page = await web.text(created.headers["Location"])
    # demo-gpu declares gpus=["ADA_24"], workersMax=2 and no env: the form's env values are overrides.
    assert source_of(page, "gpus") == "code" and source_of(page, "workersMax") == "code"
    assert source_of(page, "env.MODE") == "override" and source_of(page, "env.API_TOKEN") == "override"
    endpoint_id = created.headers["Location"].rsplit("/", 1)[1]
    scaled = await web.post(
        f"/endpoints/{endpoint_id}/scaling",
        {"workersMin": "0", "workersMax": "5", "idleTimeout": "60", "scalerValue": "4"},
    )
    assert scaled.status_code == 303
    page = await web.text(created.headers["Location"])
    assert source_of(page, "workersMax") == "override" and source_of(page, "workersMin") == "code"
    assert source_of(page, "gpus") == "code"
