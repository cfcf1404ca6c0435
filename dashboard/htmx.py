"""htmx helpers: one place decides whether a request gets a fragment or the full page."""

from __future__ import annotations

import json
import re

from quart import Quart, Response, request
from werkzeug.exceptions import NotFound

HTMX_CONFIG = {
    "includeIndicatorStyles": False,
    "allowEval": False,
    "allowScriptTags": False,
    "selfRequestsOnly": True,
    "historyCacheSize": 0,
    "refreshOnHistoryMiss": True,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "409", "swap": True, "error": False},
        {"code": "422", "swap": True, "error": False},
        {"code": "[45]..", "swap": True, "error": True},
    ],
}
"""htmx settings (a `<meta name="htmx-config">`): no eval or inline styles (the CSP forbids them),
no history snapshots in localStorage, and error responses are swapped: 409/422 re-render a form
with its inline errors (an expected outcome, not an htmx error); other errors come back retargeted
at the page's message area."""

HTMX_CONFIG_JSON = json.dumps(HTMX_CONFIG, separators=(",", ":"))

STOP_POLLING = 286
"""The status that makes htmx stop an `hx-trigger="every ..."` poll (the body is still swapped)."""


class GoneError(NotFound):
    """What a page or widget shows no longer exists: 404 for a page, `STOP_POLLING` for an htmx
    fragment request (a widget polling a deleted endpoint stops and says why)."""


def is_htmx() -> bool:
    """True for any request htmx made (including boosted and history-restore requests)."""
    return request.headers.get("HX-Request") == "true"


def is_partial() -> bool:
    """True when the response should be a fragment: an htmx request that is not boosted navigation
    or a history restore (those need the whole page)."""
    return (
        is_htmx()
        and request.headers.get("HX-History-Restore-Request") != "true"
        and request.headers.get("HX-Boosted") != "true"
    )


def target() -> str:
    """The id of the element htmx will swap (`HX-Target`), or ''."""
    return request.headers.get("HX-Target", "")


FEEDBACK_HEADER = "X-Feedback-Target"
"""Sent by an action's card (`hx-headers` on it): the `#feedback-...` element next to the action
where an error answer goes, instead of the page's message area at the top."""

_FEEDBACK_TARGET = re.compile(r"#feedback-[A-Za-z0-9_-]{1,80}")


def error_target() -> str:
    """Where an htmx error answer is swapped: the action's feedback element, else `#messages`."""
    wanted = request.headers.get(FEEDBACK_HEADER, "")
    return wanted if _FEEDBACK_TARGET.fullmatch(wanted) else "#messages"


def redirect(location: str) -> Response:
    """Make htmx load `location` as a full page (used after a successful form post)."""
    response = Response("", status=204)
    response.headers["HX-Redirect"] = location
    return response


def init_app(app: Quart) -> None:
    """Add `Vary: HX-Request` so caches keep fragments and full pages apart."""

    @app.after_request
    async def _vary(response: Response) -> Response:
        response.vary.add("HX-Request")
        return response
