"""Feedback where the user looks, in real Chromium: every invalid field at once in the labels' words
with focus on the first one, a stale edit that says only that, a second config of one resource
refused beside its field, polling that stops when its endpoint is deleted, and a favicon."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.dashboard.test_dashboard_browser import log_in

pytestmark = pytest.mark.e2e


def _create(page, name: str, resource: str = "demo-cpu", compute: str = "cpu") -> str:
    page.goto(f"/endpoints/new?compute={compute}")
    page.fill("input[name=name]", name)
    page.fill("input[name=service]", "demo")
    page.fill("input[name=resource]", resource)
    page.click("button:has-text('Create endpoint')")
    page.wait_for_url(re.compile(r"/endpoints/\d+$"))
    return page.url


def _delete(page, url: str, name: str) -> None:
    page.goto(url + "/delete")
    page.click(f"button:has-text('Delete {name}')")
    page.wait_for_url(re.compile(r"/endpoints$"))


def test_validation_reports_every_field_in_the_labels_words_and_focuses_the_first(page):
    from playwright.sync_api import expect

    log_in(page)
    page.goto("/endpoints/new")
    assert page.get_attribute("input[name=name]", "maxlength") == "63"
    page.fill("input[name=name]", "e2e-invalid")
    page.fill("input[name=service]", "ghost")
    page.fill("input[name=imageName]", "Not An Image!")
    page.fill("input[name=gpuCount]", "1.5")
    page.fill("input[name=workersMin]", "3")
    page.fill("input[name=workersMax]", "1")
    page.click("button:has-text('Create endpoint')")
    summary = page.locator(".form-summary")
    expect(summary).to_have_text(
        "Please correct 5 fields: Service, Image, GPUs per worker, Min workers, Max workers."
    )
    expect(page.locator("input[name=service]")).to_be_focused()
    expect(page.locator("#error-service")).to_contain_text("there is no service 'ghost'")
    expect(page.locator("#error-imageName")).to_contain_text("is not an image reference")
    expect(page.locator("#error-gpuCount")).to_have_text("must be a whole number")
    expect(page.locator("#error-workersMin")).to_contain_text(
        "Min workers (3) must not exceed Max workers (1)"
    )
    errors = page.locator(".field-error").all_inner_texts()
    assert not any(
        "Input should" in e or re.search(r"\b(gpuCount|workersMin|workersMax)\b", e) for e in errors
    )
    assert page.url.endswith("/endpoints/new")


def test_a_stale_edit_says_only_that(page):
    from playwright.sync_api import expect

    log_in(page)
    url = _create(page, "e2e-stale", resource="e2e-stale")
    other = page.context.new_page()
    other.goto(url + "/edit")
    page.goto(url + "/edit")
    page.fill("input[name=workersMax]", "2")
    page.click("button:has-text('Save changes')")
    page.wait_for_url(url)
    other.fill("input[name=workersMax]", "3")
    other.click("button:has-text('Save changes')")
    expect(other.locator("#endpoint-form .message.error").first).to_contain_text(
        "someone else saved this endpoint"
    )
    expect(other.locator(".form-summary")).to_have_count(0)
    assert "correct the fields" not in other.content()
    other.close()
    _delete(page, url, "e2e-stale")


def test_a_second_config_of_one_resource_is_refused_beside_the_field(page):
    from playwright.sync_api import expect

    log_in(page)
    first = _create(page, "e2e-twin-a", resource="e2e-twin")
    page.goto("/endpoints/new?compute=cpu")
    page.fill("input[name=name]", "e2e-twin-b")
    page.fill("input[name=service]", "demo")
    page.fill("input[name=resource]", "e2e-twin")
    page.click("button:has-text('Create endpoint')")
    expect(page.locator("#error-resource")).to_contain_text(
        "demo/e2e-twin is already deployed by the endpoint config 'e2e-twin-a'"
    )
    expect(page.locator("input[name=resource]")).to_be_focused()
    _delete(page, first, "e2e-twin-a")


def test_polling_stops_when_its_endpoint_is_deleted(page):
    from playwright.sync_api import expect

    log_in(page)
    url = _create(page, "e2e-poll", resource="e2e-poll")
    polls: list[tuple[float, int]] = []
    page.on(
        "response",
        lambda response: (
            polls.append((time.monotonic(), response.status))
            if response.url.endswith("/builds/latest")
            else None
        ),
    )
    page.click("#build-panel button:has-text('Build')")  # no worker runs here: the build stays queued
    expect(page.locator("#build-panel [data-build-status]")).to_have_text(re.compile("queued"))
    page.wait_for_timeout(1500)
    assert polls and all(status == 200 for _, status in polls)

    other = page.context.new_page()
    _delete(other, url, "e2e-poll")
    other.close()
    expect(page.locator("main")).to_contain_text(re.compile(r"does not exist.*deleted"), timeout=5000)
    stopped_at = time.monotonic()
    assert polls[-1][1] == 286
    page.wait_for_timeout(3000)
    assert [at for at, _ in polls if at > stopped_at + 0.5] == []  # no request after the 286


def test_favicon_is_served(page):
    log_in(page)
    assert page.locator("link[rel=icon]").get_attribute("href") == "/favicon.ico"
    status, kind = page.evaluate(
        "fetch('/favicon.ico').then(r => [r.status, r.headers.get('content-type')])"
    )  # from the page itself (opening the icon as a page would be Chromium's image viewer)
    assert status == 200 and kind in ("image/vnd.microsoft.icon", "image/x-icon")
