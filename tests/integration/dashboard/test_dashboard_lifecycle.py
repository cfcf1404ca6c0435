"""Lifecycle rules through the web app (no worker needed: the rows say what serves).

- after a rollback the panel shows what serves and the draft's diff, and Deploy asks before
  bringing the draft back;
- ids are never reused and audit links of a deleted endpoint say it is gone;
- a scaling change saved while the task queue is down is kept, is its own history entry, and the
  page says it applies once the queue is back.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from dashboard.app import create_app
from dashboard.db import create_sync_sessions
from dashboard.models import Build, Deployment, Endpoint
from dashboard.snapshots import config_snapshot


def _endpoint_id(location: str) -> int:
    found = re.search(r"/endpoints/(\d+)", location)
    assert found, location
    return int(found.group(1))


def serve(settings: Any, endpoint_id: int, config: dict[str, Any], **values: Any) -> int:
    """Add a ready row of `endpoint_id` in production (what a finished deploy leaves)."""
    with create_sync_sessions(settings.url).begin() as session:
        row = Deployment(
            endpoint_id=endpoint_id,
            environment="production",
            status="ready",
            external_id="ep-1",
            url="http://runtime/ep-1",
            config=config,
            created_by="alice",
            **values,
        )
        session.add(row)
        session.flush()
        return row.id


def snapshot(settings: Any, endpoint_id: int) -> dict[str, Any]:
    """What a deploy of the endpoint's stored config would snapshot now."""
    query = select(Endpoint).where(Endpoint.id == endpoint_id).options(selectinload(Endpoint.env_vars))
    with create_sync_sessions(settings.url)() as session:
        endpoint = session.scalar(query)
        assert endpoint is not None
        return config_snapshot(endpoint)


async def test_rollback_shows_what_serves_and_deploy_asks_before_the_draft_returns(
    web, settings, endpoint_form
):
    created = await web.post("/endpoints", endpoint_form(name="rolled"))
    endpoint_id = _endpoint_id(created.headers["Location"])
    with create_sync_sessions(settings.url).begin() as session:
        build = Build(endpoint_id=endpoint_id, status="succeeded", artifact_hash="a" * 64, directory="/x")
        session.add(build)
        session.flush()
        build_id = build.id
    first = snapshot(settings, endpoint_id)
    one = serve(settings, endpoint_id, first, build_id=build_id, release=1, build_hash="a" * 64)
    # The draft changes (a new variable, an execution timeout) and is deployed as #2 ...
    edit = endpoint_form(
        name="rolled", executionTimeoutMs="30000", **{"env-2-key": "NEW", "env-2-value": "yes"}
    )
    edit["version"] = "1"
    assert (await web.post(f"/endpoints/{endpoint_id}", edit)).status_code == 303
    serve(settings, endpoint_id, snapshot(settings, endpoint_id), build_id=build_id, release=2)
    # ... then production is rolled back to #1 (the worker restores #1's whole config).
    serve(settings, endpoint_id, first, build_id=build_id, release=1, action="rollback", rollback_of_id=one)

    page = await web.text(f"/endpoints/{endpoint_id}")
    banner = page.split('data-draft-differs="production"', 1)[1].split("</div>", 1)[0]
    assert f"Serving #{one}'s config; your draft differs" in banner
    assert 'data-field="executionTimeoutMs"' in banner and 'data-field="env.NEW"' in banner

    asked = await web.post(f"/endpoints/{endpoint_id}/environments/production/deploy", htmx=True)
    body = await asked.get_data(as_text=True)
    assert asked.status_code == 409 and 'data-confirm-draft="production"' in body
    assert 'data-field="executionTimeoutMs"' in body and "Deploy the draft to production" in body
    with create_sync_sessions(settings.url)() as session:
        assert session.query(Deployment).filter(Deployment.status == "queued").count() == 0

    confirmed = await web.post(
        f"/endpoints/{endpoint_id}/environments/production/deploy", {"confirm_draft": "yes"}, htmx=True
    )
    assert confirmed.status_code == 200
    with create_sync_sessions(settings.url)() as session:
        queued = session.query(Deployment).filter(Deployment.status == "queued").one()
        assert queued.config["fields"]["executionTimeoutMs"] == 30000 and "NEW" in queued.config["env"]
        past = session.query(Deployment).filter(Deployment.id == one).one()
        assert past.config == first  # snapshots never change


async def test_ids_are_never_reused_and_audit_links_say_what_is_gone(web, endpoint_form):
    first = await web.post("/endpoints", endpoint_form(name="reuse-a"))
    first_id = _endpoint_id(first.headers["Location"])
    await web.refresh_csrf(f"/endpoints/{first_id}")
    assert (await web.post(f"/endpoints/{first_id}/delete", {"confirm": "yes"})).status_code == 303
    second = await web.post("/endpoints", endpoint_form(name="reuse-b"))
    second_id = _endpoint_id(second.headers["Location"])
    assert second_id != first_id
    gone = await web.get(f"/endpoints/{first_id}")
    assert gone.status_code == 404 and "does not exist: alice deleted it (reuse-a)" in await gone.get_data(
        as_text=True
    )
    recent = await web.text(f"/endpoints/{second_id}")
    assert "reuse-a" not in recent  # no inherited "Recent changes"
    audit = await web.text("/audit")
    assert f'<a href="/endpoints/{second_id}">reuse-b</a>' in audit
    assert f'data-gone="{first_id}"' in audit and f'href="/endpoints/{first_id}"' not in audit


async def test_scaling_saved_while_the_queue_is_down_is_kept_as_its_own_entry(
    settings, add_test_user, make_web, endpoint_form
):
    down = dataclasses.replace(settings, broker_url="redis://127.0.0.1:9/0")  # nothing listens there
    app = create_app(down)
    async with app.test_app() as test_app:
        await add_test_user(down)
        web = make_web(test_app.test_client())
        assert (await web.login()).status_code == 303
        created = await web.post("/endpoints", endpoint_form(name="scaled"))
        endpoint_id = _endpoint_id(created.headers["Location"])
        before = snapshot(down, endpoint_id)
        live = serve(down, endpoint_id, before, release=1, build_hash="c" * 64)
        response = await web.post(
            f"/endpoints/{endpoint_id}/scaling",
            {"workersMin": "0", "workersMax": "3", "idleTimeout": "60", "scalerValue": "4"},
            htmx=True,
        )
        body = await response.get_data(as_text=True)
        assert (
            response.status_code == 200 and "Scaling saved; it will apply when the task queue is back" in body
        )
        with create_sync_sessions(down.url)() as session:
            rows = session.query(Deployment).order_by(Deployment.id).all()
            assert [(r.action, r.status) for r in rows] == [("deploy", "ready"), ("scale", "queued")]
            assert rows[0].id == live and rows[0].config == before  # the serving snapshot is untouched
            assert rows[1].config["fields"]["workersMax"] == 3 and rows[1].external_id == "ep-1"
            assert session.get(Endpoint, endpoint_id).workers_max == 3
