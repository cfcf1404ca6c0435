"""Deployments of an endpoint, per environment: deploy, roll back, diff, undeploy, workers, key.

Every POST writes its intent (a row), commits, then enqueues the Celery task and answers the
widget it changed. Widgets poll while their task runs and get HTTP 286 (htmx: stop polling) once
it has finished. API keys stay out of pages unless the user reveals one (audited).
"""

from __future__ import annotations

import asyncio
import logging

from quart import Blueprint, Response, flash, redirect, render_template, request
from werkzeug.exceptions import BadRequest, Conflict, NotFound

from dashboard import htmx
from dashboard.context import current_user, state, transaction
from dashboard.models import Endpoint
from dashboard.queries import add_audit_event, current_deployment, get_endpoint
from dashboard.releases import (
    DraftDiffersError,
    ReleaseConflictError,
    queue_deploy,
    queue_rollback,
    queue_undeploy,
    queue_undeploy_all_then_delete,
)
from dashboard.snapshots import release_diff
from dashboard.views.live import live_workers
from dashboard.views.loading import load_endpoint
from dashboard.views.panels import (
    STOP_POLLING,
    check_environment,
    conflict,
    enqueue,
    environment_context,
    load_deployment,
    page_or,
    queue_notice,
    render_panel,
)
from dashboard.views.summary import render_summary
from dashboard.worker.context import dashboard_provider
from podroute.providers.base import DeployError

logger = logging.getLogger("dashboard.deployments")
blueprint = Blueprint("deployments", __name__)


@blueprint.get("/endpoints/<int:endpoint_id>/environments/<environment>")
async def environment_status(endpoint_id: int, environment: str) -> Response:
    """One environment's panel: step, progress and log of the running task; 286 once it ends."""
    return await render_panel(await load_endpoint(endpoint_id), check_environment(environment))


@blueprint.post("/endpoints/<int:endpoint_id>/environments/<environment>/deploy")
async def deploy(endpoint_id: int, environment: str) -> Response:
    """Queue a deployment of the newest build with the current config.

    After a rollback whose config differs from the draft, it answers 409 with the diff and asks to
    confirm (`confirm_draft=yes`) before bringing the draft back.
    """
    endpoint = await load_endpoint(endpoint_id)
    provider = state().settings.provider_of(check_environment(environment))
    confirm = (await request.form).get("confirm_draft") == "yes"
    try:
        async with transaction() as db:
            row = await queue_deploy(
                db, current_user(), endpoint, environment, provider, confirm_draft=confirm
            )
    except DraftDiffersError as error:
        return await _confirm_draft(endpoint, environment, error)
    except ReleaseConflictError as error:
        raise conflict(error) from None
    sent = await enqueue("deploy", row.id)
    logger.info(
        "deployment queued", extra={"endpoint": endpoint.name, "deployment": row.id, "env": environment}
    )
    panel = await render_panel(endpoint, environment, 200, queue_notice(sent))
    return page_or(panel, endpoint, f"env-{environment}")


async def _confirm_draft(endpoint: Endpoint, environment: str, error: DraftDiffersError) -> Response:
    context = await environment_context(endpoint, environment)
    template = "deployments/_environment.html" if htmx.is_htmx() else "deployments/confirm_deploy.html"
    body = await render_template(template, **context, env=context, confirm_draft=error)
    return Response(body, status=409)


@blueprint.post("/deployments/<int:deployment_id>/rollback")
async def rollback(deployment_id: int) -> Response:
    """Queue a rollback to this deployment's build and environment (no rebuild)."""
    target = await load_deployment(deployment_id)
    endpoint = await load_endpoint(target.endpoint_id)
    try:
        async with transaction() as db:
            row = await queue_rollback(db, current_user(), endpoint, target)
    except ReleaseConflictError as error:
        raise conflict(error) from None
    sent = await enqueue("rollback", row.id)
    logger.info("rollback queued", extra={"endpoint": endpoint.name, "deployment": row.id})
    panel = await render_panel(endpoint, target.environment, 200, queue_notice(sent))
    return page_or(panel, endpoint, f"env-{target.environment}")


@blueprint.get("/deployments/<int:deployment_id>/diff")
async def diff(deployment_id: int) -> str:
    """How a release differs from the one serving its environment now (config and build)."""
    release = await load_deployment(deployment_id)
    endpoint = await load_endpoint(release.endpoint_id)
    async with transaction() as db:
        current = await current_deployment(db, endpoint.id, release.environment)
    changes = release_diff(release, current) if current is not None else None
    template = "deployments/_diff.html" if htmx.is_partial() else "deployments/diff.html"
    return await render_template(
        template, endpoint=endpoint, release=release, current=current, changes=changes
    )


@blueprint.get("/endpoints/<int:endpoint_id>/environments/<environment>/undeploy")
async def confirm_undeploy(endpoint_id: int, environment: str) -> str:
    """Ask before undeploying."""
    endpoint = await load_endpoint(endpoint_id)
    context = await environment_context(endpoint, check_environment(environment))
    return await render_template("deployments/undeploy.html", **context)


@blueprint.post("/endpoints/<int:endpoint_id>/environments/<environment>/undeploy")
async def undeploy(endpoint_id: int, environment: str) -> Response:
    """Queue deleting the environment's endpoint (the form sends `confirm=yes`)."""
    endpoint = await load_endpoint(endpoint_id)
    check_environment(environment)
    if (await request.form).get("confirm") != "yes":
        raise BadRequest("confirm the undeploy on its confirmation page first")
    try:
        async with transaction() as db:
            row = await queue_undeploy(db, current_user(), endpoint, environment)
    except ReleaseConflictError as error:
        raise conflict(error) from None
    await enqueue("undeploy", row.id)
    logger.info(
        "undeploy queued", extra={"endpoint": endpoint.name, "deployment": row.id, "env": environment}
    )
    await flash(f"Undeploying {endpoint.name} from {environment}.", "success")
    location = f"/endpoints/{endpoint.id}#env-{environment}"
    return htmx.redirect(location) if htmx.is_htmx() else redirect(location, 303)  # type: ignore[return-value]


@blueprint.get("/endpoints/<int:endpoint_id>/environments/<environment>/workers")
async def workers(endpoint_id: int, environment: str) -> Response:
    """Workers by state of the live endpoint, read from its provider now (a read at most a second
    old is shared); 286 when not live. The header's status badges come along (out of band)."""
    endpoint = await load_endpoint(endpoint_id)
    async with transaction() as db:
        current = await current_deployment(db, endpoint.id, check_environment(environment))
    live = await live_workers().observe(state().settings, current) if current is not None else None
    body = await render_template(
        "deployments/_workers.html", endpoint=endpoint, environment=environment, current=current, live=live
    )
    if htmx.is_htmx():
        body += await render_summary(endpoint)
    return Response(body, status=200 if current is not None else STOP_POLLING)


@blueprint.post("/endpoints/<int:endpoint_id>/environments/<environment>/key")
async def reveal_key(endpoint_id: int, environment: str) -> str:
    """Show the environment's API key in the client snippets (on request only; audited).

    The key is not stored here: the provider gives it back (the local runtime to a holder of its
    token; RunPod endpoints take the account key, which the snippets name instead).
    """
    endpoint = await load_endpoint(endpoint_id)
    async with transaction() as db:
        current = await current_deployment(db, endpoint.id, check_environment(environment))
        if current is None:
            raise NotFound(f"nothing is deployed in {environment}")
        await add_audit_event(
            db, current_user(), "reveal-key", endpoint, {"environment": [None, environment]}
        )
    try:
        api_key = current.api_key or await asyncio.to_thread(_provider_key, environment, current.external_id)
    except DeployError as error:
        raise Conflict(f"the provider did not give the key back: {error}") from None
    context = await environment_context(endpoint, environment)
    return await render_template("deployments/_snippets.html", env=context, api_key=api_key)


def _provider_key(environment: str, endpoint_id: str) -> str:
    with dashboard_provider(state().settings, environment) as provider:
        return str(provider.api_key(endpoint_id))


@blueprint.post("/endpoints/<int:endpoint_id>/undeploy-all-then-delete")
async def undeploy_all_then_delete(endpoint_id: int) -> Response:
    """Undeploy every environment; the worker deletes the config once all are confirmed gone."""
    endpoint = await load_endpoint(endpoint_id)
    if (await request.form).get("confirm") != "yes":
        raise BadRequest("confirm on the delete page first")
    try:
        async with transaction() as db:
            stored = await get_endpoint(db, endpoint.id)  # the mark is stored on the row
            if stored is None:
                raise NotFound(f"endpoint {endpoint_id} does not exist (it may have been deleted)")
            rows = await queue_undeploy_all_then_delete(db, current_user(), stored)
    except ReleaseConflictError as error:
        raise conflict(error) from None
    for row in rows:
        await enqueue("undeploy", row.id)
    logger.info("undeploy all, then delete", extra={"endpoint": endpoint.name, "environments": len(rows)})
    await flash(
        f"Undeploying {endpoint.name} everywhere; its configuration is deleted once every provider "
        "endpoint is confirmed gone.",
        "success",
    )
    location = f"/endpoints/{endpoint.id}"
    return htmx.redirect(location) if htmx.is_htmx() else redirect(location, 303)  # type: ignore[return-value]
