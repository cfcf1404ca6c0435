"""Scaling of an endpoint (the desired state, queued for every live environment) and ending a
drift ("apply stored config" / "adopt serving config")."""

from __future__ import annotations

import logging

from quart import Blueprint, Response, redirect, render_template, request
from werkzeug.exceptions import NotFound

from dashboard import htmx
from dashboard.configs import FIELD_LABELS
from dashboard.context import current_user, state, transaction
from dashboard.drift import queue_adopt_serving, queue_apply_stored
from dashboard.queries import get_endpoint
from dashboard.releases import ReleaseConflictError
from dashboard.scaling import ScalingForm, parse_scaling, queue_scaling
from dashboard.views.loading import load_endpoint
from dashboard.views.panels import (
    STATUS_CHANGED,
    check_environment,
    conflict,
    enqueue,
    page_or,
    queue_notice,
    render_panel,
)
from dashboard.views.summary import render_summary

logger = logging.getLogger("dashboard.deployments")
blueprint = Blueprint("scaling", __name__)


@blueprint.post("/endpoints/<int:endpoint_id>/environments/<environment>/drift/<choice>")
async def end_drift(endpoint_id: int, environment: str, choice: str) -> Response:
    """End a drift: `apply` serves the stored config again, `adopt` stores the serving one."""
    endpoint = await load_endpoint(endpoint_id)
    check_environment(environment)
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
        raise conflict(error) from None
    sent = await enqueue("scale", row.id)
    logger.info(
        "drift action queued", extra={"endpoint": endpoint.name, "env": environment, "choice": choice}
    )
    panel = await render_panel(endpoint, environment, 200, queue_notice(sent))
    return page_or(panel, endpoint, f"env-{environment}")


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
    sent = [await enqueue("scale", row.id, warn=False) for row in plan.rows]
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
    response = Response(body + await render_summary(endpoint, config=True))
    if plan.rows:
        response.headers["HX-Trigger"] = STATUS_CHANGED  # the live environments' panels follow it
    return response
