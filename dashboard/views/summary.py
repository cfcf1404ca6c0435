"""The endpoint page's summary parts that other widgets refresh: the header's status badges (one
per environment) and the Configuration list. A widget whose action changes a status or the stored
config appends them to its answer as htmx out-of-band swaps, so no place keeps an old value."""

from __future__ import annotations

from typing import Any

from quart import render_template

from dashboard.configs import FIELD_LABELS, config_sources
from dashboard.context import state, transaction
from dashboard.discovery import DiscoveredResource, DiscoveryError
from dashboard.models import Endpoint
from dashboard.queries import environment_statuses


async def code_of(endpoint: Endpoint) -> tuple[DiscoveredResource | None, str | None]:
    """The endpoint's resource as the code declares it, or None and why it cannot be read."""
    try:
        discovery = await state().discovery.get()
    except DiscoveryError as error:
        return None, str(error)
    found = discovery.find(endpoint.service, endpoint.resource)
    if found is not None:
        return found, None
    failed = next((e for e in discovery.errors if e.service == endpoint.service), None)
    if failed is not None:
        return None, f"service {failed.service!r} failed to import: {failed.message}"
    return None, f"no resource {endpoint.resource!r} is declared in service {endpoint.service!r}"


async def status_context(endpoint: Endpoint) -> dict[str, Any]:
    """What the header's badges show: each environment's newest operation (absent: never deployed)."""
    async with transaction() as db:
        statuses = await environment_statuses(db, [endpoint.id])
    return {
        "status_environments": state().settings.environments,
        "header_statuses": statuses.get(endpoint.id, {}),
    }


async def config_context(endpoint: Endpoint, code: DiscoveredResource | None = None) -> dict[str, Any]:
    """What the Configuration list shows, with where each value comes from (read from the code
    unless `code` is given)."""
    code_error = None
    if code is None:
        code, code_error = await code_of(endpoint)
    return {
        "endpoint": endpoint,
        "sources": config_sources(endpoint, code.config if code is not None else None),
        "code_error": code_error,
        "labels": FIELD_LABELS,
    }


async def render_summary(endpoint: Endpoint, *, config: bool = False) -> str:
    """The header badges (and with `config`, the Configuration list) as out-of-band swaps."""
    body = await render_template("endpoints/_statuses.html", **await status_context(endpoint), oob=True)
    if config:
        body += await render_template("endpoints/_config.html", **await config_context(endpoint), oob=True)
    return body
