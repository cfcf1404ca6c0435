"""The dashboard in real headless Chromium against a live Hypercorn: log in, create with inline errors,
edit, import from code, try a route, search, delete. Screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "e2e-admin-password"
SECRET_VALUE = "hunter2-e2e-secret"


def log_in(page):
    page.goto("/endpoints")
    assert "/login?next=/endpoints" in page.url
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(re.compile(r"/endpoints$"))


def test_login_is_required_and_wrong_passwords_are_refused(page):
    from playwright.sync_api import expect

    page.goto("/audit")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "not the password")
    page.click("button:has-text('Log in')")
    expect(page.locator(".message.error")).to_have_text("wrong username or password")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(re.compile(r"/audit$"))
    expect(page.locator("h1")).to_have_text("Audit log")


def test_endpoint_lifecycle_in_the_browser(page, demo_service, artifacts):
    from playwright.sync_api import expect

    log_in(page)
    expect(page.locator("#endpoint-rows")).to_contain_text("No endpoints yet")

    # Create, first with workersMin > workersMax: the library's message appears beside the fields.
    page.click("text=New endpoint")
    page.fill("input[name=name]", "e2e-gpu")
    page.fill("input[name=service]", "demo")
    page.check("input[name=gpus][value=ADA_24]")
    page.fill("input[name=workersMin]", "3")
    page.fill("input[name=workersMax]", "1")
    page.fill("input[name='env-0-key']", "API_TOKEN")
    page.fill("input[name='env-0-value']", SECRET_VALUE)
    page.check("input[name='env-0-secret']")
    page.click("button:has-text('Create endpoint')")
    expect(page.locator("#error-workersMin")).to_contain_text(
        "Min workers (3) must not exceed Max workers (1)"
    )
    expect(page.locator("#error-workersMax")).to_be_visible()
    assert page.url.endswith("/endpoints/new")  # htmx swapped the form in place
    assert SECRET_VALUE not in page.content()

    page.fill("input[name=workersMin]", "0")
    page.fill("input[name=workersMax]", "2")
    page.fill("input[name='env-0-value']", SECRET_VALUE)  # secrets are never sent back: type it again
    page.click("button:has-text('Create endpoint')")
    page.wait_for_url(re.compile(r"/endpoints/\d+$"))
    expect(page.locator(".message.success")).to_contain_text("Created endpoint e2e-gpu.")
    expect(page.locator(".env-view")).to_contain_text("API_TOKEN")
    assert SECRET_VALUE not in page.content()
    gpu_url = page.url

    # Edit.
    page.click("a:has-text('Edit')")
    page.fill("input[name=workersMax]", "4")
    page.click("button:has-text('Save changes')")
    page.wait_for_url(gpu_url)
    expect(page.locator("dl.config [data-field=workersMin]")).to_have_text(re.compile(r"^\s*0\b"))
    expect(page.locator("dl.config [data-field=workersMax]")).to_have_text(re.compile(r"^\s*4\b"))

    # Import from code: the preview lists both resources, then they are created.
    page.click("nav >> text=Import from code")
    expect(page.locator("table.imports")).to_contain_text("demo-cpu")
    expect(page.locator("table.imports")).to_contain_text("demo-gpu")
    page.click("button:has-text('Import selected')")
    page.wait_for_url(re.compile(r"/endpoints$"))
    expect(page.locator(".message.success")).to_contain_text("Import: created demo-cpu, demo-gpu")
    expect(page.locator("#endpoint-rows tbody tr")).to_have_count(3)
    page.screenshot(path=str(artifacts / "endpoints.png"), full_page=True)

    # Search narrows the rows through htmx.
    page.fill("input[name=q]", "demo-g")
    expect(page.locator("#endpoint-rows tbody tr")).to_have_count(1)
    expect(page.locator("#endpoint-rows")).to_contain_text("demo-gpu")
    page.fill("input[name=q]", "")
    expect(page.locator("#endpoint-rows tbody tr")).to_have_count(3)

    # Try a route of demo-cpu against the live demo service.
    page.click("#endpoint-rows >> text=demo-cpu")
    expect(page.locator("table.routes")).to_contain_text("/echo")
    page.locator("table.routes tr", has_text="/echo").locator("text=Try").click()
    expect(page.locator("#try-it input[name=path]")).to_have_value("/echo")
    page.fill("#try-it input[name=base_url]", demo_service)
    page.fill("#try-it textarea[name=body]", '{"text": "hi", "times": 3}')
    page.click("button:has-text('Send request')")
    expect(page.locator("#try-result")).to_contain_text("200 OK")
    expect(page.locator("#try-result pre.body")).to_contain_text('"text": "hihihi"')
    expect(page.locator("#try-result .latency")).to_have_text(re.compile(r"^[\d.]+ ms$"))
    page.screenshot(path=str(artifacts / "endpoint-detail.png"), full_page=True)

    # Delete asks first.
    page.goto(gpu_url)
    page.click("a:has-text('Delete…')")
    expect(page.locator("h1")).to_contain_text("Delete e2e-gpu?")
    page.click("button:has-text('Delete e2e-gpu')")
    page.wait_for_url(re.compile(r"/endpoints$"))
    expect(page.locator(".message.success")).to_contain_text("Deleted endpoint e2e-gpu.")
    expect(page.locator("#endpoint-rows tbody tr")).to_have_count(2)

    # The audit log tells the story.
    page.click("nav >> text=Audit log")
    for action in ("login", "create", "update", "import", "delete"):
        expect(page.locator("table.audit")).to_contain_text(action)
    assert SECRET_VALUE not in page.content()
    assert (artifacts / "endpoints.png").stat().st_size > 10_000
    assert (artifacts / "endpoint-detail.png").stat().st_size > 10_000


def test_pages_reference_no_external_url(page):
    log_in(page)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for path in ("/endpoints", "/endpoints/new", "/import", "/audit"):
        page.goto(path)
    base = page.url.split("/endpoints")[0].split("/audit")[0]
    outside = [url for url in requested if not url.startswith(base.rsplit("/", 1)[0])]
    assert requested and outside == []
