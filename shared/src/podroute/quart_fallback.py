"""Quart behind the lean path: `QuartFallback` and `install_dispatch`.

`podroute.dispatch.LeanDispatch` serves `@remote` routes itself and hands everything else to a
`Fallback`; this is the one over a Quart app: its own ASGI handling (`/docs`, `/openapi.json`,
`/execute`, plain Quart routes, 404), its URL map (for 405's `Allow` and WebSocket routes) and its
request class (for routes that take a `quart.Request`).
"""

from __future__ import annotations

from typing import Any, cast

from quart import Quart
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from podroute.dispatch import ASGIApp, LeanDispatch, Receive, Scope, Send
from podroute.state import PodRouteState


async def _no_push(path: str, headers: Headers) -> None:
    return None


class QuartFallback:
    """The `Fallback` over a Quart app's own ASGI handling."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self._asgi = cast(ASGIApp, app.asgi_app)  # Quart's own, whatever is installed in front later
        self._max_body = int(app.config["MAX_CONTENT_LENGTH"] or 0)
        self._body_timeout = int(app.config["BODY_TIMEOUT"] or 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let Quart serve the connection."""
        await self._asgi(scope, receive, send)

    def methods_for(self, path: str) -> set[str]:
        """The methods Quart's URL map takes on `path`."""
        adapter = self.app.url_map.bind("localhost")
        try:
            adapter.match(path, method="\x00")
        except MethodNotAllowed as error:
            return set(error.valid_methods or [])
        except (NotFound, RequestRedirect):
            return set()
        return set()

    def has_socket(self, path: str) -> bool:
        """Whether Quart has a WebSocket route at `path`."""
        adapter = self.app.url_map.bind("localhost", url_scheme="ws")
        try:
            adapter.match(path)
        except HTTPException:
            return False
        return True

    def request(self, scope: Scope, body: bytes) -> Any:
        """A Quart request for `scope`, its body already read."""
        headers = Headers()
        headers["Remote-Addr"] = (scope.get("client") or ["<local>"])[0]
        for name, value in scope["headers"]:
            headers.add(name.decode("latin1").title(), value.decode("latin1"))
        request = self.app.request_class(
            scope["method"], scope["scheme"], scope["path"], scope["query_string"], headers,
            scope.get("root_path", ""), scope["http_version"], max_content_length=self._max_body,
            body_timeout=self._body_timeout, send_push_promise=_no_push, scope=cast(Any, scope),
        )  # fmt: skip
        request.body.append(body)
        request.body.set_complete()
        return request


def install_dispatch(app: Quart, state: PodRouteState) -> LeanDispatch:
    """Put the lean path in front of `app`'s own ASGI handling; returns the dispatcher."""
    dispatch = LeanDispatch(state, QuartFallback(app))
    app.asgi_app = dispatch  # type: ignore[method-assign,assignment]
    return dispatch
