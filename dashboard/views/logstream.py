"""Live worker logs for the browser: the local runtime's log stream, relayed as server-sent events.

    /endpoints/<id>/metrics/logs/stream?env=&worker=

The runtime serves `GET /control/endpoints/<id>/logs?follow=1` (its last lines first, stopped
workers' included, then each new line, with a keep-alive comment every 15 s) to holders of its
token; the browser never gets that token, so the dashboard relays the stream to the logged-in
user. `static/logstream.js` appends the lines to the page and keeps them after a worker stops.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
from quart import Blueprint, Response, request
from werkzeug.exceptions import Conflict

from dashboard.context import state
from dashboard.views.metrics import RuntimeUnavailableError, metrics_context, runtime_headers

logger = logging.getLogger("dashboard.metrics")
blueprint = Blueprint("logstream", __name__)


async def _relay(url: str, worker: str, headers: dict[str, str]) -> AsyncIterator[bytes]:
    # runs after the view returned (no app context): everything it needs is passed in
    params = {"follow": "1", **({"worker": worker} if worker else {})}
    timeout = httpx.Timeout(10, read=60)  # the runtime's keep-alive comes every 15 s
    try:
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", url, params=params, headers=headers) as response,
        ):
            if response.status_code != 200:
                yield f"event: problem\ndata: the runtime answered {response.status_code}\n\n".encode()
                return
            async for chunk in response.aiter_bytes():
                yield chunk
    except httpx.TransportError as error:
        logger.info("worker log stream ended", extra={"url": url, "error": str(error)})
        yield b"event: problem\ndata: the local runtime stopped answering; reconnecting\n\n"


@blueprint.get("/endpoints/<int:endpoint_id>/metrics/logs/stream")
async def stream_logs(endpoint_id: int) -> Response:
    """Server-sent events: the endpoint's worker log lines as the runtime records them."""
    context = await metrics_context(endpoint_id)
    if context["problem"] is not None:
        raise Conflict(f"no live worker logs: {context['problem']}")
    try:
        headers = runtime_headers()
    except RuntimeUnavailableError as error:
        raise Conflict(str(error)) from None
    worker = request.args.get("worker", "").strip()[:64]
    url = f"{state().settings.runtime_url}/control/endpoints/{context['current'].external_id}/logs"
    response = Response(_relay(url, worker, headers), content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.timeout = None
    return response
