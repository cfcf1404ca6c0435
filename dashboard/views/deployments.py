"""Builds, deployments, scaling and undeploy of an endpoint, per environment.

Every POST writes its intent (a row), commits, then enqueues the Celery task and answers the
widget it changed. Widgets poll while their task runs and get HTTP 286 (htmx: stop polling) once
it has finished. API keys stay out of pages unless the user reveals one (audited).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from quart import Blueprint, Response, flash, redirect, render_template, request
from werkzeug.exceptions import BadRequest, Conflict, NotFound

from dashboard import htmx
from dashboard.app import current_user, state, transaction
from dashboard.configs import FIELD_LABELS
from dashboard.images import ImageError
from dashboard.models import Build, Deployment, Endpoint
from dashboard.queries import (
    active_deployment,
    add_audit_event,
    current_deployment,
    get_build,
    get_deployment,
    get_endpoint,
    latest_build,
    list_deployments,
)
from dashboard.releases import (
    SCALING_FIELDS,
    DraftDiffersError,
    ReleaseConflictError,
    ScalingForm,
    draft_changes,
    parse_scaling,
    queue_adopt_serving,
    queue_apply_stored,
    queue_build,
    queue_deploy,
    queue_rollback,
    queue_scaling,
    queue_undeploy,
    queue_undeploy_all_then_delete,
    release_diff,
    restored_by_rollback,
    set_build_image,
)
from dashboard.views.loading import load_endpoint
from dashboard.worker.builds import build_result
from dashboard.worker.celery_app import send
from dashboard.worker.context import dashboard_provider
from podroute.providers.base import DeployError
from podroute.providers.runpod.config import image_instructions

logger = logging.getLogger("dashboard.deployments")
blueprint = Blueprint("deployments", __name__)

STOP_POLLING = 286
"""The status that tells htmx to stop polling an element (its task has finished)."""


def _environment(name: str) -> str:
    if name not in state().settings.environments:
        known = ", ".join(state().settings.environments)
        raise NotFound(f"there is no environment {name!r}; the dashboard has: {known}")
    return name


QUEUE_DOWN = (
    "The task queue did not answer; the task stays queued and is sent again once the Celery "
    "worker and its broker are back."
)


async def _enqueue(action: str, row_id: int, *, warn: bool = True) -> bool:
    """Send the task; if the broker is down the row stays queued and the status sync resends it.

    Returns False when the queue did not answer (with `warn`, the page says so in a flash message).
    """
    try:
        await asyncio.to_thread(send, state().celery, action, row_id)
    except Exception:
        logger.exception(
            "enqueueing failed; the status sync will resend it", extra={"action": action, "id": row_id}
        )
        if warn:
            await flash(QUEUE_DOWN, "warning")
        return False
    return True


async def environment_context(endpoint: Endpoint, environment: str) -> dict[str, Any]:
    """What one environment's panel shows: current release, running operation, history."""
    async with transaction() as db:
        current = await current_deployment(db, endpoint.id, environment)
        running = await active_deployment(db, endpoint.id, environment)
        history = await list_deployments(db, endpoint.id, environment)
        latest = history[0] if history else None
    return {
        "endpoint": endpoint,
        "environment": environment,
        "provider": state().settings.provider_of(environment),
        "current": current,
        "running": running,
        "latest": latest,
        "history": history,
        "changes_of": _history_changes(history),
        "draft_changes": draft_changes(current, endpoint) if current is not None else {},
        "restored": current is not None and restored_by_rollback(current),
        "example_path": _example_path(current),
    }


def _history_changes(history: list[Deployment]) -> dict[int, dict[str, list[Any]]]:
    """Row id -> what it changed against the row before it (shown for scaling entries)."""
    return {
        row.id: release_diff(history[index + 1], row)
        for index, row in enumerate(history[:-1])
        if row.action == "scale"
    }


def _example_path(current: Deployment | None) -> str:
    routes = (current.build.manifest.get("routes", []) if current and current.build else []) or []
    gets = [r["path"] for r in routes if r.get("method") == "GET" and "{" not in r.get("path", "")]
    return gets[0] if gets else (routes[0]["path"] if routes else "/ping")


def build_context(endpoint: Endpoint, build: Build | None, image_error: str = "") -> dict[str, Any]:
    """What the build panel shows; for RunPod environments, the image commands and field too."""
    settings = state().settings
    runpod = [name for name in settings.environments if settings.provider_of(name) == "runpod"]
    instructions = ""
    if runpod and build is not None and build.status == "succeeded":
        try:
            instructions = image_instructions(build_result(build))
        except DeployError as error:
            instructions = f"  # {error}"
    return {
        "build": build,
        "runpod_environments": runpod,
        "image_instructions": instructions,
        "image_error": image_error,
        "docker_registry": settings.docker_registry,
    }


async def deploy_context(endpoint: Endpoint) -> dict[str, Any]:
    """The deploy section of the endpoint page: build panel, scaling, each environment."""
    async with transaction() as db:
        build = await latest_build(db, endpoint.id)
    return {
        **build_context(endpoint, build),
        "scaling": ScalingForm.of(endpoint),
        "scaling_saved": False,
        "environments": [await environment_context(endpoint, name) for name in state().settings.environments],
        "labels": FIELD_LABELS,
    }


async def _panel(endpoint: Endpoint, environment: str, status: int | None = None) -> Response:
    context = await environment_context(endpoint, environment)
    body = await render_template("deployments/_environment.html", **context, env=context)
    if status is None:
        status = 200 if context["running"] is not None or not htmx.is_htmx() else STOP_POLLING
    return Response(body, status=status)


def _page_or(fragment: Response, endpoint: Endpoint, anchor: str) -> Response:
    """htmx gets the widget; a plain form post goes back to the endpoint page (303)."""
    if htmx.is_htmx():
        return fragment
    return redirect(f"/endpoints/{endpoint.id}#{anchor}", 303)  # type: ignore[return-value]


def _conflict(error: ReleaseConflictError) -> Conflict:
    return Conflict(str(error))


# -- builds --------------------------------------------------------------------------------------------


async def _build_panel(endpoint: Endpoint, status: int | None = None) -> Response:
    async with transaction() as db:
        build = await latest_build(db, endpoint.id)
    body = await render_template(
        "deployments/_build.html", endpoint=endpoint, **build_context(endpoint, build)
    )
    if status is None:
        status = 200 if (build is not None and build.active) or not htmx.is_htmx() else STOP_POLLING
    return Response(body, status=status)


@blueprint.post("/endpoints/<int:endpoint_id>/builds")
async def build(endpoint_id: int) -> Response:
    """Queue a build of the endpoint's service; answers the build panel (polling while it runs)."""
    endpoint = await load_endpoint(endpoint_id)
    try:
        async with transaction() as db:
            row = await queue_build(db, current_user(), endpoint)
    except ReleaseConflictError as error:
        raise _conflict(error) from None
    await _enqueue("build", row.id)
    logger.info("build queued", extra={"endpoint": endpoint.name, "build": row.id})
    return _page_or(await _build_panel(endpoint, 200), endpoint, "deploy")


@blueprint.get("/endpoints/<int:endpoint_id>/builds/latest")
async def build_status(endpoint_id: int) -> Response:
    """The build panel; 286 once the build has finished."""
    return await _build_panel(await load_endpoint(endpoint_id))


@blueprint.post("/endpoints/<int:endpoint_id>/builds/<int:build_id>/image")
async def build_image(endpoint_id: int, build_id: int) -> Response:
    """Store the image reference the user pushed for a build (checked and audited)."""
    endpoint = await load_endpoint(endpoint_id)
    text = (await request.form).get("image", "")
    try:
        async with transaction() as db:
            build = await get_build(db, build_id)
            if build is None or build.endpoint_id != endpoint.id:
                raise NotFound(f"endpoint {endpoint.name} has no build #{build_id}")
            image = await set_build_image(db, current_user(), endpoint, build, text)
    except ReleaseConflictError as error:
        raise _conflict(error) from None
    except ImageError as error:
        async with transaction() as db:
            build = await get_build(db, build_id)
        context = build_context(endpoint, build, str(error))
        body = await render_template("deployments/_build.html", endpoint=endpoint, **context)
        return Response(body, status=422)
    logger.info("build image set", extra={"endpoint": endpoint.name, "build": build_id, "image": image})
    return _page_or(await _build_panel(endpoint, 200), endpoint, "deploy")


# -- environments ----------------------------------------------------------------------------------------


@blueprint.get("/endpoints/<int:endpoint_id>/environments/<environment>")
async def environment_status(endpoint_id: int, environment: str) -> Response:
    """One environment's panel: step, progress and log of the running task; 286 once it ends."""
    return await _panel(await load_endpoint(endpoint_id), _environment(environment))


@blueprint.post("/endpoints/<int:endpoint_id>/environments/<environment>/deploy")
async def deploy(endpoint_id: int, environment: str) -> Response:
    """Queue a deployment of the newest build with the current config.

    After a rollback whose config differs from the draft, it answers 409 with the diff and asks to
    confirm (`confirm_draft=yes`) before bringing the draft back.
    """
    endpoint = await load_endpoint(endpoint_id)
    provider = state().settings.provider_of(_environment(environment))
    confirm = (await request.form).get("confirm_draft") == "yes"
    try:
        async with transaction() as db:
            row = await queue_deploy(
                db, current_user(), endpoint, environment, provider, confirm_draft=confirm
            )
    except DraftDiffersError as error:
        return await _confirm_draft(endpoint, environment, error)
    except ReleaseConflictError as error:
        raise _conflict(error) from None
    await _enqueue("deploy", row.id)
    logger.info(
        "deployment queued", extra={"endpoint": endpoint.name, "deployment": row.id, "env": environment}
    )
    return _page_or(await _panel(endpoint, environment, 200), endpoint, f"env-{environment}")


async def _confirm_draft(endpoint: Endpoint, environment: str, error: DraftDiffersError) -> Response:
    context = await environment_context(endpoint, environment)
    template = "deployments/_environment.html" if htmx.is_htmx() else "deployments/confirm_deploy.html"
    body = await render_template(template, **context, env=context, confirm_draft=error)
    return Response(body, status=409)


@blueprint.post("/deployments/<int:deployment_id>/rollback")
async def rollback(deployment_id: int) -> Response:
    """Queue a rollback to this deployment's build and environment (no rebuild)."""
    target = await _deployment(deployment_id)
    endpoint = await load_endpoint(target.endpoint_id)
    try:
        async with transaction() as db:
            row = await queue_rollback(db, current_user(), endpoint, target)
    except ReleaseConflictError as error:
        raise _conflict(error) from None
    await _enqueue("rollback", row.id)
    logger.info("rollback queued", extra={"endpoint": endpoint.name, "deployment": row.id})
    return _page_or(await _panel(endpoint, target.environment, 200), endpoint, f"env-{target.environment}")


async def _deployment(deployment_id: int) -> Deployment:
    async with transaction() as db:
        row = await get_deployment(db, deployment_id)
    if row is None:
        raise NotFound(f"deployment {deployment_id} does not exist")
    return row


@blueprint.get("/deployments/<int:deployment_id>/diff")
async def diff(deployment_id: int) -> str:
    """How a release differs from the one serving its environment now (config and build)."""
    release = await _deployment(deployment_id)
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
    context = await environment_context(endpoint, _environment(environment))
    return await render_template("deployments/undeploy.html", **context)


@blueprint.post("/endpoints/<int:endpoint_id>/environments/<environment>/undeploy")
async def undeploy(endpoint_id: int, environment: str) -> Response:
    """Queue deleting the environment's endpoint (the form sends `confirm=yes`)."""
    endpoint = await load_endpoint(endpoint_id)
    _environment(environment)
    if (await request.form).get("confirm") != "yes":
        raise BadRequest("confirm the undeploy on its confirmation page first")
    try:
        async with transaction() as db:
            row = await queue_undeploy(db, current_user(), endpoint, environment)
    except ReleaseConflictError as error:
        raise _conflict(error) from None
    await _enqueue("undeploy", row.id)
    logger.info(
        "undeploy queued", extra={"endpoint": endpoint.name, "deployment": row.id, "env": environment}
    )
    await flash(f"Undeploying {endpoint.name} from {environment}.", "success")
    location = f"/endpoints/{endpoint.id}#env-{environment}"
    return htmx.redirect(location) if htmx.is_htmx() else redirect(location, 303)  # type: ignore[return-value]


@blueprint.get("/endpoints/<int:endpoint_id>/environments/<environment>/workers")
async def workers(endpoint_id: int, environment: str) -> Response:
    """Workers by state of the live endpoint (refreshed by the status sync); 286 when not live."""
    endpoint = await load_endpoint(endpoint_id)
    async with transaction() as db:
        current = await current_deployment(db, endpoint.id, _environment(environment))
    body = await render_template(
        "deployments/_workers.html", endpoint=endpoint, environment=environment, current=current
    )
    return Response(body, status=200 if current is not None else STOP_POLLING)


@blueprint.post("/endpoints/<int:endpoint_id>/environments/<environment>/key")
async def reveal_key(endpoint_id: int, environment: str) -> str:
    """Show the environment's API key in the client snippets (on request only; audited).

    The key is not stored here: the provider gives it back (the local runtime to a holder of its
    token; RunPod endpoints take the account key, which the snippets name instead).
    """
    endpoint = await load_endpoint(endpoint_id)
    async with transaction() as db:
        current = await current_deployment(db, endpoint.id, _environment(environment))
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


# -- scaling ----------------------------------------------------------------------------------------------


@blueprint.post("/endpoints/<int:endpoint_id>/environments/<environment>/drift/<choice>")
async def end_drift(endpoint_id: int, environment: str, choice: str) -> Response:
    """End a drift: `apply` serves the stored config again, `adopt` stores the serving one."""
    endpoint = await load_endpoint(endpoint_id)
    _environment(environment)
    queue = {"apply": queue_apply_stored, "adopt": queue_adopt_serving}.get(choice)
    if queue is None:
        raise NotFound("a drift ends with 'apply' (the stored config) or 'adopt' (the serving one)")
    try:
        async with transaction() as db:
            stored = await get_endpoint(db, endpoint.id)  # adopting changes the stored scaling
            if stored is None:
                raise NotFound(f"endpoint {endpoint_id} does not exist (it may have been deleted)")
            row = await queue(db, current_user(), stored, environment)
    except ReleaseConflictError as error:
        raise _conflict(error) from None
    await _enqueue("scale", row.id)
    logger.info(
        "drift action queued", extra={"endpoint": endpoint.name, "env": environment, "choice": choice}
    )
    return _page_or(await _panel(endpoint, environment, 200), endpoint, f"env-{environment}")


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
        raise _conflict(error) from None
    for row in rows:
        await _enqueue("undeploy", row.id)
    logger.info("undeploy all, then delete", extra={"endpoint": endpoint.name, "environments": len(rows)})
    await flash(
        f"Undeploying {endpoint.name} everywhere; its configuration is deleted once every provider "
        "endpoint is confirmed gone.",
        "success",
    )
    location = f"/endpoints/{endpoint.id}"
    return htmx.redirect(location) if htmx.is_htmx() else redirect(location, 303)  # type: ignore[return-value]


@blueprint.post("/endpoints/<int:endpoint_id>/scaling")
async def scale(endpoint_id: int) -> Response:
    """Validate and store scaling (the desired state), then queue it for every live environment.

    If the task queue is down the change stays saved and the sync applies it once it is back.
    """
    data = await request.form
    async with transaction() as db:
        endpoint = await get_endpoint(db, endpoint_id)
        if endpoint is None:
            raise NotFound(f"endpoint {endpoint_id} does not exist (it may have been deleted)")
        form, wanted = parse_scaling(endpoint, data)
        if wanted is None:
            body = await render_template(
                "deployments/_scaling.html",
                endpoint=endpoint,
                scaling=form,
                scaling_saved=False,
                labels=FIELD_LABELS,
            )
            return Response(body, status=422)
        plan = await queue_scaling(db, current_user(), endpoint, wanted, list(state().settings.environments))
    sent = [await _enqueue("scale", row.id, warn=False) for row in plan.rows]
    if plan.changes:
        logger.info("scaling changed", extra={"endpoint": endpoint.name, "fields": sorted(plan.changes)})
    body = await render_template(
        "deployments/_scaling.html",
        endpoint=endpoint,
        scaling=ScalingForm.of(endpoint),
        scaling_saved=bool(plan.changes),
        queue_down=not all(sent),
        busy=plan.busy,
        labels=FIELD_LABELS,
    )
    if not htmx.is_htmx():
        return redirect(f"/endpoints/{endpoint.id}", 303)  # type: ignore[return-value]
    return Response(body)


__all__ = ["SCALING_FIELDS", "blueprint", "deploy_context", "environment_context"]
