"""Feedback where the user looks, badges that say what happened, and a layout that fits, in real
Chromium against the live dashboard (no Celery worker here: queued tasks stay queued).

- an action's result appears in its card, in the viewport, not in the message area at the top;
- Deploy without a successful build is disabled and says why;
- badges: an undeployed environment is a grey "undeployed", a failed deploy is red and its bar
  stops where it failed, the list shows each environment's status;
- layout: a 63-character name truncates with a tooltip, the audit table fits at 1366 px, nothing
  scrolls sideways at 390 px, history rows keep their borders and aligned buttons, try-it wraps.

Rows a worker would write (a finished or failed deployment) are written straight into the served
database, as the worker writes them; everything else goes through the browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dashboard.db import create_sync_sessions
from dashboard.models import Build, Deployment, utc_now
from tests.e2e.dashboard.test_dashboard_browser import log_in

pytestmark = pytest.mark.e2e

LONG_NAME = "e2e-" + "very-long-endpoint-name-" * 2 + "x" * 11  # 63 characters


def _create(page: Any, name: str, resource: str) -> tuple[str, int]:
    page.goto("/endpoints/new?compute=cpu")
    page.fill("input[name=name]", name)
    page.fill("input[name=service]", "demo")
    page.fill("input[name=resource]", resource)
    page.click("button:has-text('Create endpoint')")
    page.wait_for_url(re.compile(r"/endpoints/\d+$"))
    return page.url, int(page.url.rsplit("/", 1)[1])


def _delete(page: Any, url: str, name: str) -> None:
    page.goto(url + "/delete")
    page.click(f"button:has-text('Delete {name}')")
    page.wait_for_url(re.compile(r"/endpoints$"))


@pytest.fixture
def database(dashboard_data: Path) -> Iterator[Any]:
    """Sessions on the served dashboard's SQLite database."""
    sessions = create_sync_sessions(f"sqlite:///{dashboard_data / 'dashboard.sqlite3'}")
    yield sessions
    sessions.kw["bind"].dispose()


def _add_rows(database: Any, endpoint_id: int, *rows: dict[str, Any]) -> list[int]:
    """Deployment rows as the worker leaves them (oldest first), on one successful build."""
    with database.begin() as session:
        build = Build(
            endpoint_id=endpoint_id, status="succeeded", artifact_hash="a" * 64, directory="/nonexistent"
        )
        session.add(build)
        session.flush()
        added = []
        for index, fields in enumerate(rows):
            row = Deployment(
                endpoint_id=endpoint_id,
                build_id=build.id,
                build_hash="a" * 64,
                created_by="admin",
                created_at=utc_now() - timedelta(minutes=len(rows) - index),
                config={"fields": {"workersMin": 0, "workersMax": 1}, "env": {}},
                **fields,
            )
            session.add(row)
            session.flush()
            added.append(row.id)
        return added


def _in_viewport(page: Any, locator: Any) -> bool:
    box = locator.bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def _no_sideways_scroll(page: Any) -> tuple[int, int]:
    width: tuple[int, int] = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    return width


def test_deploy_without_a_build_is_disabled_and_its_refusal_shows_in_its_card(page):
    from playwright.sync_api import expect

    log_in(page)
    url, _ = _create(page, "e2e-unbuilt", "e2e-unbuilt")
    production = page.locator("#env-production")
    deploy = production.locator("button:has-text('Deploy to production')")
    expect(deploy).to_be_disabled()
    reason = production.locator(".blocked")
    expect(reason).to_have_text(
        "Deploy is not possible now: there is no successful build yet: press Build first."
    )
    assert deploy.get_attribute("aria-describedby") == reason.get_attribute("id")

    # A page older than the state it shows (the button still enabled): the server's 409 lands in
    # the card, where the user clicked, not in the message area at the top of the page.
    deploy.evaluate("button => { button.disabled = false; }")
    deploy.scroll_into_view_if_needed()
    deploy.click()
    feedback = production.locator("#feedback-env-production .message.error")
    expect(feedback).to_have_text("there is no successful build yet: press Build first")
    assert _in_viewport(page, feedback)
    messages = page.locator("#messages").bounding_box()
    assert messages["y"] + messages["height"] <= 0  # the top of the page is out of sight
    expect(page.locator("#messages")).not_to_contain_text("no successful build")
    card = production.bounding_box()
    box = feedback.bounding_box()
    assert card["y"] <= box["y"] and box["y"] + box["height"] <= card["y"] + card["height"]
    _delete(page, url, "e2e-unbuilt")


def test_a_build_refused_because_another_tab_started_one_shows_in_the_build_card(page):
    from playwright.sync_api import expect

    log_in(page)
    url, _ = _create(page, "e2e-two-tabs", "e2e-two-tabs")
    other = page.context.new_page()
    other.goto(url)
    other.click("#build-panel button:has-text('Build')")
    expect(other.locator("#build-panel [data-build-status]")).to_have_text(re.compile("queued"))
    other.close()

    build = page.locator("#build-panel button:has-text('Build')")
    build.scroll_into_view_if_needed()
    build.click()
    feedback = page.locator("#feedback-build .message.error")
    expect(feedback).to_have_text(re.compile(r"^build #\d+ is still running; wait for it to finish$"))
    assert _in_viewport(page, feedback)
    expect(page.locator("#messages")).not_to_contain_text("still running")
    _delete(page, url, "e2e-two-tabs")


def test_badges_say_what_happened_in_each_environment(page, database):
    from playwright.sync_api import expect

    log_in(page)
    url, endpoint_id = _create(page, "e2e-badges", "e2e-badges")
    _add_rows(
        database,
        endpoint_id,
        {"environment": "production", "action": "deploy", "status": "ready", "progress": 100},
        {"environment": "production", "action": "undeploy", "status": "deleted", "progress": 100},
        {"environment": "staging", "action": "deploy", "status": "failed", "progress": 35, "step": "failed"},
    )
    staged_url, staged_id = _create(page, "e2e-staged", "e2e-staged")
    _add_rows(
        database,
        staged_id,
        {
            "environment": "staging",
            "action": "deploy",
            "status": "ready",
            "progress": 100,
            "external_id": "e2e-staged-ep",
            "url": "http://127.0.0.1:9/e2e-staged-ep",
        },
    )

    page.goto(url)
    header = page.locator("#endpoint-statuses")
    production_badge = header.locator("[data-environment=production]")
    expect(production_badge).to_have_text("production undeployed")
    expect(header.locator("[data-environment=staging]")).to_have_text("staging failed")
    green = "rgb(18, 122, 62)"
    red = "rgb(180, 35, 24)"
    assert production_badge.evaluate("e => getComputedStyle(e).color") != green
    assert "badge-neutral" in (production_badge.get_attribute("class") or "")

    undeployed = page.locator("#env-production .deployment-status")
    expect(undeployed).to_have_text("undeployed")
    assert undeployed.evaluate("e => getComputedStyle(e).color") != green

    failed = page.locator("#env-staging .deployment-status")
    expect(failed).to_have_text("failed")
    assert failed.evaluate("e => getComputedStyle(e).color") == red
    bar = page.locator("#env-staging progress")
    assert bar.evaluate("e => e.value") == 35  # stopped where it failed, not a full bar
    assert bar.evaluate("e => getComputedStyle(e).accentColor") == red
    assert "progress-danger" in (bar.get_attribute("class") or "")  # drawn red, see style.css

    # The list: one status per environment, not one for both.
    page.goto("/endpoints?q=e2e-staged")
    row = page.locator("#endpoint-rows tr", has_text="e2e-staged")
    expect(row.locator("[data-environment=staging]")).to_have_text("staging ready")
    expect(row.locator("[data-environment=production]")).to_have_text("production not deployed")
    page.goto("/endpoints?q=e2e-badges")
    row = page.locator("#endpoint-rows tr", has_text="e2e-badges")
    expect(row.locator("[data-environment=production]")).to_have_text("production undeployed")
    expect(row.locator("[data-environment=staging]")).to_have_text("staging failed")
    # Filtering by a status finds endpoints where some environment has it.
    page.goto("/endpoints?q=e2e-&status=ready")
    expect(page.locator("#endpoint-rows tbody tr")).to_have_count(1)
    expect(page.locator("#endpoint-rows tbody")).to_contain_text("e2e-staged")
    _delete_rows(database, endpoint_id, staged_id)
    _delete(page, url, "e2e-badges")
    _delete(page, staged_url, "e2e-staged")


def _delete_rows(database: Any, *endpoint_ids: int) -> None:
    """Remove the rows written above, so the configs can be deleted (nothing serves them)."""
    with database.begin() as session:
        for endpoint_id in endpoint_ids:
            session.query(Deployment).filter(Deployment.endpoint_id == endpoint_id).delete()


def test_layout_fits_at_1366_and_390_pixels(page, database, demo_service, artifacts):
    from playwright.sync_api import expect

    log_in(page)
    assert len(LONG_NAME) == 63
    url, endpoint_id = _create(page, LONG_NAME, "e2e-long")
    first, _ = _add_rows(
        database,
        endpoint_id,
        {"environment": "production", "action": "deploy", "status": "ready", "progress": 100},
        {"environment": "production", "action": "deploy", "status": "ready", "progress": 100},
    )
    with database.begin() as session:
        for row in session.query(Deployment).filter(Deployment.endpoint_id == endpoint_id):
            row.external_id, row.url = f"e2e-long-{row.id}", f"http://127.0.0.1:9/e2e-long-{row.id}"
    page.set_viewport_size({"width": 1366, "height": 900})

    # The list: the long name is cut with an ellipsis, the whole name is its tooltip.
    page.goto("/endpoints")
    cell = page.locator("#endpoint-rows td.col-name .truncate", has_text=LONG_NAME[:20])
    assert cell.get_attribute("title") == LONG_NAME
    assert cell.evaluate("e => e.scrollWidth > e.clientWidth")  # cut
    assert cell.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"
    scroll, width = _no_sideways_scroll(page)
    assert scroll <= width
    table = page.locator("#endpoint-rows table").bounding_box()
    assert table["x"] + table["width"] <= width
    page.screenshot(path=str(artifacts / "ux-list-1366.png"), full_page=True)

    # The endpoint page: the title truncates too, history rows keep their borders and buttons line up.
    page.goto(url)
    title = page.locator("h1.title .truncate")
    assert title.get_attribute("title") == LONG_NAME
    scroll, width = _no_sideways_scroll(page)
    assert scroll <= width
    row = page.locator(f"#env-production tr[data-deployment='{first}']")
    displays = row.locator("td").evaluate_all("cells => cells.map(c => getComputedStyle(c).display)")
    assert set(displays) == {"table-cell"}
    borders = row.locator("td").evaluate_all("cells => cells.map(c => c.getBoundingClientRect().bottom)")
    assert max(borders) - min(borders) < 1  # every cell reaches the row's bottom border
    diff = row.locator("a:has-text('Diff')").bounding_box()
    roll_back = row.locator("button:has-text('Roll back to')").bounding_box()
    assert abs(diff["y"] - roll_back["y"]) < 2 and abs(diff["height"] - roll_back["height"]) < 2

    # Try-it: a long one-line answer wraps inside the panel.
    page.fill("#try-it input[name=base_url]", demo_service)
    page.select_option("#try-it select[name=method]", "POST")
    page.fill("#try-it input[name=path]", "/echo")
    page.fill("#try-it textarea[name=body]", '{"text": "wrap", "times": 400}')
    page.click("button:has-text('Send request')")
    body = page.locator("#try-result pre.body")
    expect(body).to_contain_text("wrapwrap")
    assert body.evaluate("e => e.scrollWidth <= e.clientWidth")
    page.screenshot(path=str(artifacts / "ux-endpoint-1366.png"), full_page=True)

    # The audit log: dates on one line, changes wrapped, the table within the window.
    page.goto("/audit")
    scroll, width = _no_sideways_scroll(page)
    assert scroll <= width
    audit = page.locator("table.audit").bounding_box()
    assert audit["x"] + audit["width"] <= width
    lines_of = "e => { const r = document.createRange(); r.selectNodeContents(e); return r.getClientRects().length; }"  # noqa: E501
    for cell in page.locator("table.audit tbody td.col-time").all()[:10]:
        assert cell.evaluate("e => e.scrollWidth <= e.clientWidth")
        assert cell.evaluate(lines_of) == 1  # the date on one line
    for cell in page.locator("table.audit tbody td.col-changes").all()[:10]:
        assert cell.evaluate("e => e.scrollWidth <= e.clientWidth")  # long changes wrap
    page.screenshot(path=str(artifacts / "ux-audit-1366.png"), full_page=True)

    # A phone: nothing scrolls sideways, every nav link is on screen.
    page.set_viewport_size({"width": 390, "height": 844})
    for path, shot in (
        ("/endpoints", "ux-list-390.png"),
        (url, "ux-endpoint-390.png"),
        ("/audit", "ux-audit-390.png"),
    ):
        page.goto(path)
        scroll, width = _no_sideways_scroll(page)
        assert scroll <= width, (path, scroll, width)
        for link in page.locator("header nav a").all():
            box = link.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (path, link.inner_text())
        page.screenshot(path=str(artifacts / shot), full_page=True)

    _delete_rows(database, endpoint_id)
    _delete(page, url, LONG_NAME)
