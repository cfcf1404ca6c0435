"""Builds of an endpoint: queue one, poll its panel, store the image reference pushed for it."""

from __future__ import annotations

import logging

from quart import Blueprint, Response, render_template, request
from werkzeug.exceptions import NotFound

from dashboard import htmx
from dashboard.context import current_user, transaction
from dashboard.images import ImageError
from dashboard.models import Endpoint
from dashboard.queries import get_build, latest_build
from dashboard.releases import ReleaseConflictError, queue_build, set_build_image
from dashboard.views.loading import load_endpoint
from dashboard.views.panels import (
    STATUS_CHANGED,
    STOP_POLLING,
    Notice,
    build_context,
    conflict,
    enqueue,
    page_or,
    queue_notice,
)

logger = logging.getLogger("dashboard.deployments")
blueprint = Blueprint("builds", __name__)


async def _build_panel(
    endpoint: Endpoint, status: int | None = None, notice: Notice | None = None
) -> Response:
    async with transaction() as db:
        build = await latest_build(db, endpoint.id)
    body = await render_template(
        "deployments/_build.html", endpoint=endpoint, notice=notice, **build_context(endpoint, build)
    )
    response = Response(body, status=status)
    if status is None:
        running = build is not None and build.active
        response.status_code = 200 if running or not htmx.is_htmx() else STOP_POLLING
        if not running and htmx.is_htmx():
            response.headers["HX-Trigger"] = STATUS_CHANGED  # Deploy may be possible now
    return response


@blueprint.post("/endpoints/<int:endpoint_id>/builds")
async def build(endpoint_id: int) -> Response:
    """Queue a build of the endpoint's service; answers the build panel (polling while it runs)."""
    endpoint = await load_endpoint(endpoint_id)
    try:
        async with transaction() as db:
            row = await queue_build(db, current_user(), endpoint)
    except ReleaseConflictError as error:
        raise conflict(error) from None
    sent = await enqueue("build", row.id)
    logger.info("build queued", extra={"endpoint": endpoint.name, "build": row.id})
    return page_or(await _build_panel(endpoint, 200, queue_notice(sent)), endpoint, "deploy")


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
        raise conflict(error) from None
    except ImageError as error:
        async with transaction() as db:
            build = await get_build(db, build_id)
        context = build_context(endpoint, build, str(error))
        body = await render_template("deployments/_build.html", endpoint=endpoint, **context)
        return Response(body, status=422)
    logger.info("build image set", extra={"endpoint": endpoint.name, "build": build_id, "image": image})
    return page_or(await _build_panel(endpoint, 200), endpoint, "deploy")
