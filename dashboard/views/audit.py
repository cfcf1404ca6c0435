"""The audit log: who changed what, newest first."""

from __future__ import annotations

from quart import Blueprint, render_template, request

from dashboard.context import transaction
from dashboard.queries import existing_endpoint_ids, list_audit_events

blueprint = Blueprint("audit", __name__, url_prefix="/audit")

PAGE_SIZE = 50


@blueprint.get("")
async def index() -> str:
    """One page of audit events (`?before=ID` for older ones)."""
    raw = request.args.get("before", "")
    before = int(raw) if raw.isdigit() and len(raw) < 12 else None
    async with transaction() as db:
        events = await list_audit_events(db, limit=PAGE_SIZE + 1, before_id=before)
        targets = {e.target_id for e in events if e.target_type == "endpoint" and e.target_id is not None}
        existing = await existing_endpoint_ids(db, targets)
    older = events[PAGE_SIZE].id + 1 if len(events) > PAGE_SIZE else None
    return await render_template(
        "audit/index.html", events=events[:PAGE_SIZE], older=older, existing=existing
    )
