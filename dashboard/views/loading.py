"""Loading rows for views: a missing one is a 404 that says so."""

from __future__ import annotations

from dashboard.context import transaction
from dashboard.htmx import GoneError
from dashboard.models import Endpoint, as_utc
from dashboard.queries import deletion_event, get_endpoint


async def load_endpoint(endpoint_id: int) -> Endpoint:
    """The endpoint with this id, or 404 saying it does not exist and who deleted it, if known
    (286 to an htmx widget, so its polling stops)."""
    async with transaction() as db:
        endpoint = await get_endpoint(db, endpoint_id)
        deleted = await deletion_event(db, endpoint_id) if endpoint is None else None
    if deleted is not None:
        when = as_utc(deleted.at).strftime("%Y-%m-%d %H:%M UTC")
        raise GoneError(
            f"endpoint {endpoint_id} does not exist: {deleted.username} deleted it "
            f"({deleted.target_name}) on {when}"
        )
    if endpoint is None:
        raise GoneError(f"endpoint {endpoint_id} does not exist (it may have been deleted)")
    return endpoint
