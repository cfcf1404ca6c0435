"""`/docs` renders Swagger UI in a real browser from loopback alone, and its "try it" works."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from podroute import AppSettings, CpuLiveLoadBalancer, Registry, create_app, remote
from tests.helpers import hypercorn_server

api = CpuLiveLoadBalancer(name="docs-demo")

pytestmark = pytest.mark.e2e


def test_docs_render_every_route_with_no_external_request(
    registry: Registry, browser: Any, artifacts: Path
) -> None:
    @remote(api, method="GET", path="/greet")
    async def greet(name: str = "world") -> dict[str, str]:
        """Say hello."""
        return {"greeting": f"hello {name}"}

    @remote(api, method="POST", path="/shout")
    async def shout(text: str) -> dict[str, str]:
        """Upper-case some text."""
        return {"text": text.upper()}

    app = create_app(api, registry=registry, settings=AppSettings(title="Docs demo"))
    with hypercorn_server(app) as base:
        page = browser.new_page()
        hosts: set[str] = set()
        page.on("request", lambda request: hosts.add(urlparse(request.url).netloc))
        page.goto(f"{base}/docs")
        page.wait_for_selector("text=Say hello", timeout=15000)
        page.wait_for_selector("text=Upper-case some text")
        assert page.locator(".opblock").count() == 4  # greet, shout, /execute, /ping
        assert "Docs demo" in page.title()
        page.click("text=Say hello")
        page.click("button:has-text('Try it out')") if page.locator(
            "button:has-text('Try it out')"
        ).count() else None
        page.fill("input[placeholder='name']", "docs")
        page.click("button:has-text('Execute')")
        page.wait_for_selector("text=hello docs", timeout=15000)
        page.screenshot(path=str(artifacts / "podroute-docs.png"), full_page=True)
        page.close()
    assert hosts == {urlparse(base).netloc}, f"the docs page contacted other hosts: {hosts}"
