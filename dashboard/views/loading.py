"""Loading rows for views: a missing one is a 404 that says so."""

from __future__ import annotations

from dashboard.app import transaction
from dashboard.htmx import GoneError
from dashboard.models import Endpoint
from dashboard.queries import get_endpoint


async def load_endpoint(endpoint_id: int) -> Endpoint:
    """The endpoint with this id, or 404 saying it does not exist (286 to an htmx widget, so its
    polling stops)."""
    async with transaction() as db:
        endpoint = await get_endpoint(db, endpoint_id)
    if endpoint is None:
        raise GoneError(f"endpoint {endpoint_id} does not exist (it may have been deleted)")
    return endpoint
