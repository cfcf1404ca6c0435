"""Import from code: discover the project's resources and create or update configs from them."""

from __future__ import annotations

import logging

from quart import Blueprint, Response, flash, redirect, render_template, request

from dashboard import htmx
from dashboard.configs import FIELD_LABELS
from dashboard.context import current_user, state, transaction
from dashboard.discovery import Discovery, DiscoveryError
from dashboard.operations import NameTakenError, TargetTakenError, apply_import, plan_import

logger = logging.getLogger("dashboard.imports")
blueprint = Blueprint("imports", __name__, url_prefix="/import")


async def _render(
    discovery: Discovery | None, error: str | None, status: int = 200, notice: str = ""
) -> Response:
    items = []
    if discovery is not None:
        async with transaction() as db:
            items = await plan_import(db, discovery)
    body = await render_template(
        "imports/index.html",
        discovery=discovery,
        items=items,
        error=error,
        notice=notice,
        project_dir=state().settings.project_dir,
        labels=FIELD_LABELS,
    )
    return Response(body, status=status)


@blueprint.get("")
async def preview() -> Response:
    """What importing would create or change, per resource declared in the services."""
    try:
        discovery = await state().discovery.get()
    except DiscoveryError as error:
        return await _render(None, str(error), 502)
    return await _render(discovery, None)


@blueprint.post("")
async def apply() -> Response:
    """Create or update the chosen configs. If the code changed since the preview, show it again."""
    form = await request.form
    chosen = set(form.getlist("item"))
    try:
        discovery = await state().discovery.get()
    except DiscoveryError as error:
        return await _render(None, str(error), 502)
    if form.get("fingerprint") != discovery.fingerprint:
        return await _render(
            discovery, None, 409, "the code changed since this preview: review the changes again"
        )
    try:
        async with transaction() as db:
            items = [item for item in await plan_import(db, discovery) if item.key in chosen]
            outcome = await apply_import(db, current_user(), items)
    except (NameTakenError, TargetTakenError) as error:  # a config saved meanwhile: nothing imported
        return await _render(discovery, None, 409, f"nothing was imported: {error}")
    logger.info(
        "imported from code",
        extra={
            "created_endpoints": outcome.created,
            "updated_endpoints": outcome.updated,
            "by": current_user().username,
        },
    )
    parts = [
        f"created {', '.join(outcome.created)}" if outcome.created else "",
        f"updated {', '.join(outcome.updated)}" if outcome.updated else "",
    ]
    await flash("Import: " + ("; ".join(p for p in parts if p) or "nothing to change"), "success")
    if htmx.is_htmx():
        return htmx.redirect("/endpoints")
    return redirect("/endpoints", 303)  # type: ignore[return-value]
