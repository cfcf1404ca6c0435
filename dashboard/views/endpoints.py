"""Endpoints: list with search and status, new/edit/delete, detail with routes and the try-it panel."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, flash, redirect, render_template, request
from werkzeug.exceptions import BadRequest, NotFound

from dashboard import htmx
from dashboard.configs import FIELD_LABELS, masked_env
from dashboard.context import current_user, state, transaction
from dashboard.discovery import DiscoveredResource
from dashboard.forms import EndpointForm, EnvRow, parse_endpoint_form
from dashboard.models import DEPLOYMENT_ACTIVE, Endpoint
from dashboard.operations import (
    NameTakenError,
    TargetTakenError,
    VersionConflictError,
    create_endpoint,
    delete_endpoint,
    update_endpoint,
)
from dashboard.queries import (
    ENDPOINT_STATUSES,
    environment_statuses,
    gateway_urls,
    get_endpoint,
    list_audit_events,
    list_endpoints,
    live_deployments,
)
from dashboard.tryit import HTTP_METHODS, AllowedTargets, TryItError, TryItRequest, send
from dashboard.views.loading import load_endpoint
from dashboard.views.panels import deploy_context
from dashboard.views.summary import code_of, config_context, status_context
from podroute.catalog import CPU_INSTANCE_IDS, DATA_CENTERS, GPU_ANY, GPU_POOLS
from podroute.project import service_names

logger = logging.getLogger("dashboard.endpoints")
blueprint = Blueprint("endpoints", __name__, url_prefix="/endpoints")

MAX_SEARCH = 100
PAGE_SIZE = 50
"""Endpoints per page of the list."""
LIST_POLL_BUSY_S = 2
"""How often the list refreshes its rows while an operation runs on one of them."""
LIST_POLL_IDLE_S = 10
"""How often it refreshes them otherwise (a deploy from the CLI or another tab shows up too)."""
MAX_TRY_FIELD = 2048
MAX_TRY_BODY = 256 * 1024


def _choices() -> dict[str, Any]:
    return {
        "gpu_pools": [
            (GPU_ANY, "any pool"),
            *((pool, ", ".join(types)) for pool, types in GPU_POOLS.items()),
        ],
        "cpu_instances": CPU_INSTANCE_IDS,
        "data_centers": DATA_CENTERS,
        "labels": FIELD_LABELS,
    }


async def _services() -> list[str]:
    return await asyncio.to_thread(service_names, state().settings.project_dir)


async def _render_form(form: EndpointForm, endpoint: Endpoint | None, status: int = 200) -> Response:
    template = "endpoints/_form.html" if htmx.is_partial() else "endpoints/form.html"
    body = await render_template(
        template, form=form, endpoint=endpoint, services=await _services(), **_choices()
    )
    return Response(body, status=status)


@blueprint.get("")
async def index() -> str:
    """The endpoints list; htmx searches get the rows fragment alone."""
    search = request.args.get("q", "").strip()[:MAX_SEARCH]
    status = request.args.get("status", "")
    status = status if status in ENDPOINT_STATUSES else ""
    raw_page = request.args.get("page", "1")
    page = int(raw_page) if raw_page.isdigit() and 0 < len(raw_page) < 6 and int(raw_page) > 0 else 1
    environments = state().settings.environments
    async with transaction() as db:
        rows = await list_endpoints(
            db, search, status, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE, environments=environments
        )
        statuses = await environment_statuses(db, [row.endpoint.id for row in rows[:PAGE_SIZE]])
    template = (
        "endpoints/_rows.html"
        if htmx.is_partial() and htmx.target() == "endpoint-rows"
        else "endpoints/index.html"
    )

    def page_url(number: int) -> str:
        return "/endpoints?" + urlencode(
            {k: v for k, v in (("q", search), ("status", status)) if v} | {"page": number}
        )

    busy = any(seen.status in DEPLOYMENT_ACTIVE for found in statuses.values() for seen in found.values())
    return await render_template(
        template,
        rows=rows[:PAGE_SIZE],
        env_statuses=statuses,
        environments=environments,
        poll_url=page_url(page),
        poll_s=LIST_POLL_BUSY_S if busy else LIST_POLL_IDLE_S,
        q=search,
        status=status,
        statuses=ENDPOINT_STATUSES,
        page=page,
        previous_url=page_url(page - 1) if page > 1 else "",
        next_url=page_url(page + 1) if len(rows) > PAGE_SIZE else "",
    )


@blueprint.get("/new")
async def new() -> Response:
    """A blank endpoint form with the library's defaults (`?compute=cpu` for CPU)."""
    compute = "cpu" if request.args.get("compute") == "cpu" else "gpu"
    return await _render_form(EndpointForm.blank(compute), None)


@blueprint.post("")
async def create() -> Response:
    """Validate and store a new endpoint; inline errors with 422 when invalid."""
    form, draft = parse_endpoint_form(await request.form, services=await _services())
    if draft is None:
        return await _render_form(form, None, 422)
    try:
        async with transaction() as db:
            endpoint = await create_endpoint(db, current_user(), draft)
    except NameTakenError as error:
        form.add_error("name", str(error))
        return await _render_form(form, None, 422)
    except TargetTakenError as error:
        form.add_error("resource", str(error))
        return await _render_form(form, None, 422)
    logger.info("endpoint created", extra={"endpoint": endpoint.name, "by": current_user().username})
    await flash(f"Created endpoint {endpoint.name}.", "success")
    return _after_save(f"/endpoints/{endpoint.id}")


def _after_save(location: str) -> Response:
    if htmx.is_htmx():
        return htmx.redirect(location)
    return redirect(location, 303)  # type: ignore[return-value]


@blueprint.get("/<int:endpoint_id>/edit")
async def edit(endpoint_id: int) -> Response:
    """The edit form; secret values are not in it."""
    endpoint = await load_endpoint(endpoint_id)
    return await _render_form(EndpointForm.from_endpoint(endpoint), endpoint)


@blueprint.post("/<int:endpoint_id>")
async def update(endpoint_id: int) -> Response:
    """Validate and apply an edit; 422 with inline errors, 409 when someone saved in between."""
    data = await request.form
    services = await _services()
    async with transaction() as db:
        endpoint = await get_endpoint(db, endpoint_id)
        if endpoint is None:
            raise NotFound(f"endpoint {endpoint_id} does not exist (it may have been deleted)")
        form, draft = parse_endpoint_form(data, {var.key: var for var in endpoint.env_vars}, services)
        if draft is None:
            return await _render_form(form, endpoint, 422)
        try:
            changes = await update_endpoint(db, current_user(), endpoint, draft, form.version)
        except VersionConflictError as error:
            form.form_errors.append(str(error))
            return await _render_form(form, endpoint, 409)
        except NameTakenError as error:
            form.add_error("name", str(error))
            return await _render_form(form, endpoint, 422)
        except TargetTakenError as error:
            form.add_error("resource", str(error))
            return await _render_form(form, endpoint, 422)
    logger.info(
        "endpoint updated",
        extra={"endpoint": endpoint.name, "fields": sorted(changes), "by": current_user().username},
    )
    await flash(f"Saved endpoint {endpoint.name}." if changes else "Nothing changed.", "success")
    return _after_save(f"/endpoints/{endpoint.id}")


@blueprint.get("/env-row")
async def env_row() -> str:
    """One empty environment row (the form's 'Add variable' button appends it)."""
    raw = request.args.get("index", "0")
    index = int(raw) if raw.isdigit() and int(raw) < 100 else 99
    return await render_template("endpoints/_env_row.html", row=EnvRow(), index=index, add_next=index + 1)


def _default_base_url(endpoint: Endpoint) -> str:
    template = state().settings.try_it_base_url
    return (
        template.replace("{service}", endpoint.service).rstrip("/")
        if endpoint.service
        else template.replace("/{service}", "").replace("{service}", "")
    )


def _example_body(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    return json.dumps(_example(schema), indent=2)


def _example(schema: dict[str, Any], depth: int = 0) -> Any:
    if "default" in schema:
        return schema["default"]
    if schema.get("examples"):
        return schema["examples"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        return {name: _example(sub, depth + 1) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return []
    choices = {"string": "", "integer": 0, "number": 0, "boolean": False}
    if isinstance(kind, str):
        return choices.get(kind)
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return _example(option, depth + 1)
    return None


def _try_defaults(endpoint: Endpoint, code: DiscoveredResource | None, route_index: int) -> dict[str, str]:
    routes = code.routes if code else []
    route = routes[route_index] if 0 <= route_index < len(routes) else (routes[0] if routes else None)
    return {
        "base_url": _default_base_url(endpoint),
        "method": route.method if route else "GET",
        "path": route.path if route else "/",
        "query": "",
        "body": _example_body(route.body_schema) if route and route.method not in ("GET", "DELETE") else "",
    }


async def _detail_context(endpoint: Endpoint, route_index: int = 0) -> dict[str, Any]:
    code, code_error = await code_of(endpoint)
    async with transaction() as db:
        events = await list_audit_events(db, limit=10, target_id=endpoint.id)
    return {
        "env": masked_env(endpoint),
        "code": code,
        **await status_context(endpoint),
        **await config_context(endpoint, code),
        "code_error": code_error,
        "events": events,
        "try": _try_defaults(endpoint, code, route_index),
        "methods": HTTP_METHODS,
        "result": None,
        "try_error": None,
        **await deploy_context(endpoint),
    }


def _route_index() -> int:
    raw = request.args.get("route", "0")
    return int(raw) if raw.isdigit() and len(raw) < 4 else 0


@blueprint.get("/<int:endpoint_id>")
async def detail(endpoint_id: int) -> str:
    """The endpoint's config, its routes (from the code's OpenAPI) and the try-it panel."""
    endpoint = await load_endpoint(endpoint_id)
    return await render_template("endpoints/detail.html", **await _detail_context(endpoint, _route_index()))


@blueprint.get("/<int:endpoint_id>/try")
async def try_panel(endpoint_id: int) -> str:
    """The try-it panel, pre-filled for one route (`?route=N`)."""
    endpoint = await load_endpoint(endpoint_id)
    context = await _detail_context(endpoint, _route_index())
    template = "endpoints/_tryit.html" if htmx.is_partial() else "endpoints/detail.html"
    return await render_template(template, **context)


def _try_request(form: Any) -> TryItRequest:
    fields = {
        name: str(form.get(name, "")) for name in ("base_url", "method", "path", "query", "body", "token")
    }
    for name, value in fields.items():
        limit = MAX_TRY_BODY if name == "body" else MAX_TRY_FIELD
        if len(value) > limit:
            raise TryItError(f"the {name.replace('_', ' ')} is longer than {limit} characters")
    return TryItRequest(
        base_url=fields["base_url"],
        method=fields["method"],
        path=fields["path"].strip(),
        query=fields["query"],
        body=fields["body"],
        bearer_token=fields["token"].strip(),
    )


async def _allowed_targets(endpoint: Endpoint) -> AllowedTargets:
    settings = state().settings
    async with transaction() as db:
        gateways = await gateway_urls(db, endpoint.id)
    dashboard_itself = [request.host_url, f"http://localhost:{settings.port}"]
    return AllowedTargets.of(
        [_default_base_url(endpoint), *gateways], settings.try_it_hosts, dashboard_itself
    )


@blueprint.post("/<int:endpoint_id>/try")
async def try_send(endpoint_id: int) -> Response:
    """Send the try-it request from the server and show status, headers, body and latency."""
    endpoint = await load_endpoint(endpoint_id)
    form = await request.form
    result, error, status = None, None, 200
    try:
        tried = _try_request(form)
        result = await send(tried, await _allowed_targets(endpoint))
    except TryItError as problem:
        error, status = str(problem), 422
        tried = None
    if htmx.is_partial():
        body = await render_template("endpoints/_tryit_result.html", result=result, try_error=error)
        return Response(body, status=status)
    context = await _detail_context(endpoint)
    if tried is not None:
        context["try"] = {
            "base_url": tried.base_url,
            "method": tried.method,
            "path": tried.path,
            "query": tried.query,
            "body": tried.body,
        }
    context.update(result=result, try_error=error)
    return Response(await render_template("endpoints/detail.html", **context), status=status)


@blueprint.get("/<int:endpoint_id>/delete")
async def confirm_delete(endpoint_id: int) -> str:
    """Ask before deleting; with live deployments, list them and offer "undeploy all, then delete"."""
    endpoint = await load_endpoint(endpoint_id)
    async with transaction() as db:
        live = await live_deployments(db, endpoint.id)
    return await render_template("endpoints/delete.html", endpoint=endpoint, live=live, refused=False)


@blueprint.post("/<int:endpoint_id>/delete")
async def delete(endpoint_id: int) -> Response:
    """Delete after confirmation (`confirm=yes`); 409 with the list while it is deployed anywhere."""
    form = await request.form
    if form.get("confirm") != "yes":
        raise BadRequest("confirm the deletion on the confirmation page first")
    endpoint = await load_endpoint(endpoint_id)
    name = endpoint.name
    async with transaction() as db:
        live = await live_deployments(db, endpoint.id)
        if not live:
            await delete_endpoint(db, current_user(), endpoint)
    if live:
        body = await render_template("endpoints/delete.html", endpoint=endpoint, live=live, refused=True)
        return Response(body, status=409)
    logger.info("endpoint deleted", extra={"endpoint": name, "by": current_user().username})
    await flash(f"Deleted endpoint {name}.", "success")
    return _after_save("/endpoints")
