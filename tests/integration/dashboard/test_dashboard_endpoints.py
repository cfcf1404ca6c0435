"""Endpoint pages and fragments: list, search, create, edit, delete, inline errors, hostile input, secrets."""

from __future__ import annotations

import re

import pytest

from dashboard.db import create_engine, create_sessions
from dashboard.queries import list_audit_events, list_endpoints

SECRET = "s3cr3t-value-never-shown"


async def stored(settings):
    """(endpoint rows, audit events) straight from the database."""
    engine = create_engine(settings.url)
    try:
        async with create_sessions(engine)() as session:
            return await list_endpoints(session), await list_audit_events(session)
    finally:
        await engine.dispose()


async def create(web, endpoint_form, **overrides):
    response = await web.post("/endpoints", endpoint_form(**overrides))
    assert response.status_code == 303, await response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[1])


async def test_create_stores_the_config_and_audits_it(web, settings, endpoint_form):
    endpoint_id = await create(web, endpoint_form)
    rows, events = await stored(settings)
    [row] = rows
    assert (row.endpoint.id, row.endpoint.name, row.status) == (endpoint_id, "text-api", "not deployed")
    assert (row.endpoint.gpus, row.endpoint.workers_max, row.endpoint.flashboot) == (["ADA_24"], 2, True)
    create_event = next(e for e in events if e.action == "create")
    assert create_event.username == "alice" and create_event.target_name == "text-api"
    assert create_event.changes["env.API_TOKEN"] == [None, "***"]
    assert SECRET not in str(create_event.changes)


async def test_create_then_list_search_and_status_filter(web, endpoint_form):
    await create(web, endpoint_form)
    await create(
        web,
        endpoint_form,
        name="batch-cpu",
        resource="demo-cpu",  # one config per resource: demo-gpu is text-api's
        compute="cpu",
        instanceIds=["cpu3c-2-4"],
        locations=["EU-RO-1"],
    )
    page = await web.text("/endpoints")
    assert "text-api" in page and "batch-cpu" in page
    searched = await web.text("/endpoints?q=BATCH")
    assert "batch-cpu" in searched and "text-api" not in searched
    assert "No endpoint matches" in await web.text("/endpoints?status=ready")
    assert "text-api" in await web.text("/endpoints?status=not+deployed")


async def test_search_treats_like_wildcards_as_text(web, endpoint_form):
    await create(web, endpoint_form)
    assert "No endpoint matches" in await web.text("/endpoints?q=%25")
    assert "No endpoint matches" in await web.text("/endpoints?q=_")


async def test_htmx_search_returns_only_the_rows_fragment(web, endpoint_form):
    await create(web, endpoint_form)
    response = await web.get("/endpoints?q=text", **{"HX-Request": "true", "HX-Target": "endpoint-rows"})
    body = await response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="endpoint-rows"')
    assert "<html" not in body and "text-api" in body


async def test_new_form_shows_the_library_defaults(web):
    page = await web.text("/endpoints/new")
    assert 'name="idleTimeout" value="60"' in page
    assert 'name="scalerValue" value="4"' in page
    assert 'value="ANY" checked' in page
    cpu = await web.text("/endpoints/new?compute=cpu")
    assert 'value="cpu3g-2-8" checked' in cpu


async def test_workers_min_above_max_is_shown_beside_both_fields_and_nothing_is_stored(
    web, settings, endpoint_form
):
    response = await web.post("/endpoints", endpoint_form(workersMin="5", workersMax="1"))
    assert response.status_code == 422
    page = await response.get_data(as_text=True)
    expected = "Min workers (5) must not exceed Max workers (1): lower Min workers or raise Max workers"
    assert f'<p class="field-error" id="error-workersMin">{expected}</p>' in page
    assert f'<p class="field-error" id="error-workersMax">{expected}</p>' in page
    assert 'name="workersMin" value="5" aria-invalid="true"' in page
    assert (await stored(settings))[0] == []


async def test_htmx_create_with_errors_returns_the_form_fragment(web, endpoint_form):
    response = await web.post("/endpoints", endpoint_form(idleTimeout="0"), htmx=True)
    assert response.status_code == 422
    body = await response.get_data(as_text=True)
    assert body.lstrip().startswith('<form id="endpoint-form"') and "<html" not in body
    assert "must be between 1 and 3600 seconds, got 0" in body


async def test_htmx_create_success_redirects_with_hx_redirect(web, endpoint_form):
    response = await web.post("/endpoints", endpoint_form(), htmx=True)
    assert response.status_code == 204
    assert re.fullmatch(r"/endpoints/\d+", response.headers["HX-Redirect"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("workersMax", "many", "must be a whole number"),
        ("gpuCount", "9", "between 1 and 8"),
        ("gpus", ["NOT_A_POOL"], "unknown GPU pool"),
        ("locations", ["MARS-1"], "unknown or unavailable data center"),
        ("minCudaVersion", "twelve", "expected a version like"),
        ("workersMax", "99999999999999999999", "too large"),
        ("imageName", "x" * 501, "use at most 500"),
        ("service", "s" * 101, "use at most 100"),
        ("env-0-key", "1BAD", "invalid variable name"),
    ],
)
async def test_invalid_fields_get_inline_errors_and_change_nothing(
    web, settings, endpoint_form, field, value, message
):
    response = await web.post("/endpoints", endpoint_form(**{field: value}))
    assert response.status_code == 422
    page = await response.get_data(as_text=True)
    assert message in page
    assert 'class="field-error"' in page
    assert (await stored(settings))[0] == []


async def test_wrong_compute_kind_is_refused(web, settings, endpoint_form):
    response = await web.post("/endpoints", endpoint_form(compute="tpu"))
    assert response.status_code == 422
    assert "choose GPU or CPU" in await response.get_data(as_text=True)
    assert (await stored(settings))[0] == []


async def test_hostile_name_renders_as_text_and_is_refused(web, settings, endpoint_form):
    hostile = '<script>alert("x")</script>'
    response = await web.post("/endpoints", endpoint_form(name=hostile))
    assert response.status_code == 422
    page = await response.get_data(as_text=True)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "is not a safe name" in page
    assert (await stored(settings))[0] == []


async def test_hostile_text_in_free_fields_is_escaped_everywhere(web, endpoint_form):
    hostile = "<script>alert(1)</script>"
    refused = await web.post("/endpoints", endpoint_form(service=hostile[:40]))
    assert refused.status_code == 422
    assert "<script>alert" not in await refused.get_data(as_text=True)
    endpoint_id = await create(web, endpoint_form, resource=hostile[:40], **{"env-0-value": hostile})
    for path in ("/endpoints", f"/endpoints/{endpoint_id}", f"/endpoints/{endpoint_id}/edit", "/audit"):
        page = await web.text(path)
        assert "<script>alert" not in page, path
        assert "&lt;script&gt;" in page or "\\u003cscript\\u003e" in page, path


async def test_duplicate_name_is_an_inline_error(web, settings, endpoint_form):
    await create(web, endpoint_form)
    response = await web.post("/endpoints", endpoint_form(resource="other"))
    assert response.status_code == 422
    assert "an endpoint named &#39;text-api&#39; already exists" in await response.get_data(as_text=True)
    assert len((await stored(settings))[0]) == 1


async def test_missing_csrf_changes_nothing(web, settings, endpoint_form):
    response = await web.post("/endpoints", endpoint_form(), csrf=False)
    assert response.status_code == 403
    assert (await stored(settings))[0] == []


async def test_wrong_csrf_changes_nothing(web, settings, endpoint_form):
    response = await web.post("/endpoints", endpoint_form(csrf_token="x" * 43), csrf=False)
    assert response.status_code == 403
    assert (await stored(settings))[0] == []


async def test_csrf_in_the_htmx_header_is_accepted(web, endpoint_form):
    from urllib.parse import urlencode

    data = urlencode(endpoint_form(), doseq=True).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-CSRF-Token": web.csrf,
        "HX-Request": "true",
    }
    response = await web.client.post("/endpoints", data=data, headers=headers)
    assert response.status_code == 204


async def test_htmx_csrf_failure_is_retargeted_at_the_message_area(web, endpoint_form):
    response = await web.post("/endpoints", endpoint_form(), htmx=True, csrf=False)
    assert response.status_code == 403
    assert response.headers["HX-Retarget"] == "#messages"
    assert "security token" in await response.get_data(as_text=True)


async def test_oversized_request_is_413(web, settings, endpoint_form):
    response = await web.post("/endpoints", endpoint_form(imageName="x" * (2 * 1024 * 1024)))
    assert response.status_code == 413
    assert (await stored(settings))[0] == []


async def test_too_many_env_rows_are_refused(web, settings, endpoint_form):
    rows = {f"env-{i}-key": f"K{i}" for i in range(101)}
    response = await web.post("/endpoints", endpoint_form(**rows))
    assert response.status_code == 422
    assert "at most 100 variables" in await response.get_data(as_text=True)
    assert (await stored(settings))[0] == []


async def test_secret_values_never_reach_the_browser(web, endpoint_form):
    endpoint_id = await create(web, endpoint_form)
    for path in ("/endpoints", f"/endpoints/{endpoint_id}", f"/endpoints/{endpoint_id}/edit", "/audit"):
        assert SECRET not in await web.text(path), path
    detail = await web.text(f"/endpoints/{endpoint_id}")
    assert "API_TOKEN" in detail and "••••••" in detail
    assert "fast" in detail  # non-secret values are shown
    edit = await web.text(f"/endpoints/{endpoint_id}/edit")
    assert 'type="password" value=""' in edit and "(unchanged)" in edit


async def test_secret_is_not_echoed_when_the_form_has_errors(web, endpoint_form):
    response = await web.post("/endpoints", endpoint_form(workersMin="9"))
    assert response.status_code == 422
    assert SECRET not in await response.get_data(as_text=True)


async def test_edit_keeps_a_blank_secret_and_audits_changes_without_values(web, settings, endpoint_form):
    endpoint_id = await create(web, endpoint_form)
    response = await web.post(
        f"/endpoints/{endpoint_id}", endpoint_form(workersMax="5", version="1", **{"env-1-value": ""})
    )
    assert response.status_code == 303
    [row], events = await stored(settings)
    assert row.endpoint.workers_max == 5 and row.endpoint.version == 2
    update = next(e for e in events if e.action == "update")
    assert update.changes == {"workersMax": [2, 5]}
    edit = await web.text(f"/endpoints/{endpoint_id}/edit")
    assert 'name="version" value="2"' in edit


async def test_changing_a_secret_is_audited_masked(web, settings, endpoint_form):
    endpoint_id = await create(web, endpoint_form)
    await web.post(
        f"/endpoints/{endpoint_id}", endpoint_form(version="1", **{"env-1-value": "another-secret"})
    )
    _, events = await stored(settings)
    update = next(e for e in events if e.action == "update")
    assert update.changes == {"env.API_TOKEN": ["***", "*** (changed)"]}
    assert "another-secret" not in await web.text("/audit")


async def test_a_secret_cannot_be_made_visible_without_a_new_value(web, settings, endpoint_form):
    endpoint_id = await create(web, endpoint_form)
    form = endpoint_form(version="1", **{"env-1-value": ""})
    del form["env-1-secret"]
    response = await web.post(f"/endpoints/{endpoint_id}", form)
    assert response.status_code == 422
    assert "to make &#39;API_TOKEN&#39; non-secret, enter its new value" in await response.get_data(
        as_text=True
    )


async def test_stale_edit_gets_409_and_changes_nothing(web, settings, endpoint_form):
    endpoint_id = await create(web, endpoint_form)
    first = await web.post(f"/endpoints/{endpoint_id}", endpoint_form(workersMax="3", version="1"))
    assert first.status_code == 303
    stale = await web.post(f"/endpoints/{endpoint_id}", endpoint_form(workersMax="7", version="1"))
    assert stale.status_code == 409
    assert "someone else saved this endpoint" in await stale.get_data(as_text=True)
    assert (await stored(settings))[0][0].endpoint.workers_max == 3


async def test_removing_a_variable_by_clearing_its_name(web, settings, endpoint_form):
    endpoint_id = await create(web, endpoint_form)
    await web.post(
        f"/endpoints/{endpoint_id}", endpoint_form(version="1", **{"env-0-key": "", "env-0-value": ""})
    )
    page = await web.text(f"/endpoints/{endpoint_id}/edit")
    assert 'value="MODE"' not in page and 'value="API_TOKEN"' in page


async def test_switching_to_cpu_uses_cpu_rules(web, settings, endpoint_form):
    endpoint_id = await create(web, endpoint_form)
    response = await web.post(
        f"/endpoints/{endpoint_id}", endpoint_form(version="1", compute="cpu", instanceIds=["cpu3c-1-2"])
    )
    assert response.status_code == 303
    endpoint = (await stored(settings))[0][0].endpoint
    assert (endpoint.compute, endpoint.instance_ids) == ("cpu", ["cpu3c-1-2"])
    bad = await web.post(
        f"/endpoints/{endpoint_id}", endpoint_form(version="2", compute="cpu", locations=["US-CA-2"])
    )
    assert bad.status_code == 422
    assert "valid: EU-RO-1" in await bad.get_data(as_text=True)


async def test_missing_endpoint_is_404(web):
    assert (await web.get("/endpoints/999")).status_code == 404
    assert (await web.get("/endpoints/999/edit")).status_code == 404
    assert (await web.post("/endpoints/999/delete", {"confirm": "yes"})).status_code == 404


async def test_delete_asks_first_then_deletes(web, settings, endpoint_form):
    endpoint_id = await create(web, endpoint_form)
    confirm = await web.text(f"/endpoints/{endpoint_id}/delete")
    assert "cannot be undone" in confirm and 'name="confirm" value="yes"' in confirm
    refused = await web.post(f"/endpoints/{endpoint_id}/delete")
    assert refused.status_code == 400
    assert len((await stored(settings))[0]) == 1
    deleted = await web.post(f"/endpoints/{endpoint_id}/delete", {"confirm": "yes"})
    assert deleted.status_code == 303 and deleted.headers["Location"] == "/endpoints"
    rows, events = await stored(settings)
    assert rows == [] and events[0].action == "delete" and events[0].target_name == "text-api"
    assert "Deleted endpoint text-api." in await web.text("/endpoints")


async def test_env_row_fragment_brings_the_next_add_button(web):
    response = await web.get("/endpoints/env-row?index=4", **{"HX-Request": "true"})
    body = await response.get_data(as_text=True)
    assert 'name="env-4-key"' in body
    assert 'hx-swap-oob="true"' in body and "index=5" in body


async def test_audit_page_lists_changes_newest_first(web, endpoint_form):
    endpoint_id = await create(web, endpoint_form)
    await web.post(f"/endpoints/{endpoint_id}", endpoint_form(workersMax="4", version="1"))
    page = await web.text("/audit")
    assert page.index(">update<") < page.index(">create<") < page.index(">login<")
    assert "workersMax" in page and "alice" in page


async def test_wrong_method_is_405(web):
    response = await web.client.delete("/endpoints")
    assert response.status_code == 405
