"""What the deploy widgets of the endpoint page share: environment check, enqueueing, panel
contexts and rendering, the answer to htmx or to a plain form post."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from quart import Response, flash, redirect, render_template
from werkzeug.exceptions import Conflict, NotFound

from dashboard import htmx
from dashboard.configs import FIELD_LABELS
from dashboard.context import state, transaction
from dashboard.drift import Adoption, plan_adoption
from dashboard.models import Build, Deployment, Endpoint
from dashboard.queries import (
    active_deployment,
    current_deployment,
    get_deployment,
    latest_build,
    list_deployments,
)
from dashboard.releases import ReleaseConflictError, deployable_build
from dashboard.scaling import ScalingForm
from dashboard.snapshots import draft_changes, release_diff, restored_by_rollback
from dashboard.views.summary import render_summary
from dashboard.worker.builds import build_result
from dashboard.worker.celery_app import send
from podroute.providers.base import DeployError
from podroute.providers.runpod.config import image_instructions

logger = logging.getLogger("dashboard.deployments")

STOP_POLLING = 286
"""The status that tells htmx to stop polling an element (its task has finished)."""


STATUS_CHANGED = "status-changed"
"""The htmx event (an `HX-Trigger` header) saying a build ended or operations were queued: the
environment panels, which listen for it on `body`, refresh themselves."""


@dataclass(frozen=True)
class Notice:
    """The result of an action, shown in the card of the action (`kind`: success, warning, error)."""

    kind: str
    text: str


def check_environment(name: str) -> str:
    """The environment name, or 404 listing the environments the dashboard has."""
    if name not in state().settings.environments:
        known = ", ".join(state().settings.environments)
        raise NotFound(f"there is no environment {name!r}; the dashboard has: {known}")
    return name


QUEUE_DOWN = (
    "The task queue did not answer; the task stays queued and is sent again once the Celery "
    "worker and its broker are back."
)


async def enqueue(action: str, row_id: int, *, warn: bool = True) -> bool:
    """Send the task; if the broker is down the row stays queued and the status sync resends it.

    Returns False when the queue did not answer. With `warn`, a plain form post gets a flash
    message on the page it is redirected to; an htmx widget shows `queue_notice` in its own card.
    """
    try:
        await asyncio.to_thread(send, state().celery, action, row_id)
    except Exception:
        logger.exception(
            "enqueueing failed; the status sync will resend it", extra={"action": action, "id": row_id}
        )
        if warn and not htmx.is_htmx():
            await flash(QUEUE_DOWN, "warning")
        return False
    return True


def queue_notice(sent: bool) -> Notice | None:
    """What a card says next to its action when the task queue did not answer."""
    return None if sent else Notice("warning", QUEUE_DOWN)


async def environment_context(
    endpoint: Endpoint, environment: str, notice: Notice | None = None
) -> dict[str, Any]:
    """What one environment's panel shows: current release, running operation, history, why Deploy
    cannot work now (it is disabled then), and `notice`, the result of the action just taken."""
    provider = state().settings.provider_of(environment)
    async with transaction() as db:
        current = await current_deployment(db, endpoint.id, environment)
        running = await active_deployment(db, endpoint.id, environment)
        history = await list_deployments(db, endpoint.id, environment)
        build = await latest_build(db, endpoint.id, succeeded=True)
        latest = history[0] if history else None
    return {
        "endpoint": endpoint,
        "environment": environment,
        "provider": provider,
        "deploy_blocked": _deploy_blocked(build, environment, provider, running),
        "notice": notice,
        "current": current,
        "running": running,
        "latest": latest,
        "history": history,
        "changes_of": _history_changes(history),
        "draft_changes": draft_changes(current, endpoint) if current is not None else {},
        "restored": current is not None and restored_by_rollback(current),
        "adoption": _adoption(current),
        "example_path": _example_path(current),
    }


def _deploy_blocked(build: Build | None, environment: str, provider: str, running: Deployment | None) -> str:
    """Why Deploy cannot work now ('' when it can): the same checks `queue_deploy` makes."""
    if running is not None:
        return f"{running.action} #{running.id} is running in {environment}; wait for it to finish"
    try:
        deployable_build(build, environment, provider)
    except ReleaseConflictError as error:
        return str(error)
    return ""


def _adoption(current: Deployment | None) -> Adoption | None:
    """What "adopt serving config" would take from the drift the sync saw (shown per field)."""
    drift = (current.observed or {}).get("drift") if current is not None else None
    if current is None or not drift:
        return None
    return plan_adoption(current.config, drift, current.observed.get("release"))


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


async def render_panel(
    endpoint: Endpoint, environment: str, status: int | None = None, notice: Notice | None = None
) -> Response:
    """One environment's panel; 286 to a polling htmx widget once nothing runs there.

    To htmx it also brings the header's status badges, and once the operation has ended the
    Configuration list (adopting a drift or scaling changes it), as out-of-band swaps.
    """
    context = await environment_context(endpoint, environment, notice)
    body = await render_template("deployments/_environment.html", **context, env=context)
    if status is None:
        status = 200 if context["running"] is not None or not htmx.is_htmx() else STOP_POLLING
    if htmx.is_htmx():
        body += await render_summary(endpoint, config=context["running"] is None)
    return Response(body, status=status)


def page_or(fragment: Response, endpoint: Endpoint, anchor: str) -> Response:
    """htmx gets the widget; a plain form post goes back to the endpoint page (303)."""
    if htmx.is_htmx():
        return fragment
    return redirect(f"/endpoints/{endpoint.id}#{anchor}", 303)  # type: ignore[return-value]


def conflict(error: ReleaseConflictError) -> Conflict:
    """The 409 that shows the conflict's message to the user."""
    return Conflict(str(error))


async def load_deployment(deployment_id: int) -> Deployment:
    """The deployment row with this id, or 404 saying it does not exist."""
    async with transaction() as db:
        row = await get_deployment(db, deployment_id)
    if row is None:
        raise NotFound(f"deployment {deployment_id} does not exist")
    return row
