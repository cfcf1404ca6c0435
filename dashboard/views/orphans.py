"""Orphans: provider endpoints carrying this project's marker that no record knows, with delete.

The periodic sync finds them (endpoints without the marker are never listed, so never touched);
deleting one queues a task that deletes it on its provider and confirms it is gone.
"""

from __future__ import annotations

import asyncio
import logging

from quart import Blueprint, Response, flash, redirect, render_template, request
from werkzeug.exceptions import BadRequest, Conflict, NotFound

from dashboard import htmx
from dashboard.context import current_user, state, transaction
from dashboard.queries import add_audit_event, get_orphan, list_orphans
from dashboard.worker.celery_app import send

logger = logging.getLogger("dashboard.orphans")
blueprint = Blueprint("orphans", __name__, url_prefix="/orphans")


@blueprint.get("")
async def index() -> str:
    """Every orphan the last sync found, per environment."""
    async with transaction() as db:
        orphans = await list_orphans(db)
    settings = state().settings
    return await render_template(
        "orphans/index.html", orphans=orphans, sync_interval_s=settings.sync_interval_s
    )


@blueprint.post("/<int:orphan_id>/delete")
async def delete(orphan_id: int) -> Response:
    """Queue deleting one orphan on its provider (the form sends `confirm=yes`)."""
    if (await request.form).get("confirm") != "yes":
        raise BadRequest("confirm the deletion on the Orphans page first")
    async with transaction() as db:
        orphan = await get_orphan(db, orphan_id)
        if orphan is None:
            raise NotFound(f"orphan {orphan_id} is not listed any more (deleted, or recorded since)")
        if orphan.delete_requested_at is not None:
            raise Conflict(f"endpoint {orphan.external_id} is already being deleted")
        orphan.mark_deleting()
        await add_audit_event(
            db,
            current_user(),
            "delete-orphan",
            None,
            {"environment": [None, orphan.environment], "endpoint": [orphan.external_id, None]},
            target_name=orphan.name or orphan.external_id,
        )
    try:
        await asyncio.to_thread(send, state().celery, "orphan", orphan_id)
    except Exception:
        logger.exception("enqueueing failed", extra={"orphan": orphan_id})
        await flash("The task queue did not answer; the deletion runs once it is back.", "warning")
    else:
        await flash(f"Deleting endpoint {orphan.external_id} from {orphan.environment}.", "success")
    logger.info("orphan delete queued", extra={"orphan": orphan.external_id, "env": orphan.environment})
    return htmx.redirect("/orphans") if htmx.is_htmx() else redirect("/orphans", 303)  # type: ignore[return-value]
