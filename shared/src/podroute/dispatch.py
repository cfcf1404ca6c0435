"""The lean path: `@remote` routes and the health path dispatched in front of Quart.

`LeanDispatch` serves `@remote` routes the same way in the dev server, `podroute serve` and the
runtime's workers: `create_app` installs it around Quart's `app.asgi_app`, and the worker app of
`podroute serve` (`podroute.worker_app`) is built on it. For a registered (method, path) it reads
the body (with the size limit), binds and validates the arguments straight from the bytes, calls
the function and writes JSON (orjson), an SSE stream or a returned Quart `Response`, with
problem+json errors and `X-Request-ID` - without Quart's request and response objects, context or
Werkzeug routing. Everything else (lifespan, `/docs`, `/openapi.json`, `/execute`, plain Quart
routes, 404) goes to its `Fallback`, Quart, unchanged; a wrong method on a known path is answered
405 with an `Allow` that also lists the fallback's routes on that path. This module imports no
web framework: a worker answers its routes without ever loading Quart.
WebSocket routes (method WEBSOCKET) are served from `websocket` scopes by
`podroute.socket_serving`; a plain GET to one is answered 426 Upgrade Required.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import re
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from podroute.binding import Binder, BodyStream
from podroute.errors import PROBLEM_CONTENT_TYPE, HTTPError
from podroute.registry import WEBSOCKET
from podroute.responses import JSON_CONTENT_TYPE, encode_json, sse_frames
from podroute.router import Match, Router
from podroute.socket_serving import SocketEndpoint, refuse_handshake, serve_socket
from podroute.state import BoundRoute, PodRouteState, StartupState, not_ready_error

if TYPE_CHECKING:
    from quart import Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Fallback(Protocol):
    """What the lean path hands everything else to: Quart (`podroute.quart_fallback`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a connection the lean path does not."""

    def methods_for(self, path: str) -> set[str]:
        """The HTTP methods the fallback's own routes take on `path` (for 405's `Allow`)."""

    def has_socket(self, path: str) -> bool:
        """Whether the fallback has a WebSocket route at `path`."""

    def request(self, scope: Scope, body: bytes) -> Any:
        """A `quart.Request` for `scope` with `body` already read, for routes that take one."""


REQUEST_ID_HEADER = "X-Request-ID"
logger = logging.getLogger("podroute.app")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ID_PREFIX = uuid.uuid4().hex[:16]
_id_counter = itertools.count(1)
_Found = Match["Endpoint | Health | SocketEndpoint"]
_RID = b"x-request-id"
_LAST_EVENT_ID = b"last-event-id"
_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"
_JSON_HEADER = (_CONTENT_TYPE, JSON_CONTENT_TYPE.encode())
_PROBLEM_HEADER = (_CONTENT_TYPE, PROBLEM_CONTENT_TYPE.encode())
_SSE_HEADERS = [
    (_CONTENT_TYPE, b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_LAST_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": False}


def new_request_id() -> str:
    """A new request id: a random per-process prefix plus a counter (unique, no system call)."""
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


def choose_request_id(sent: str | None) -> str:
    """The client's `X-Request-ID` when it is sane, else a new one."""
    if sent is not None and _SANE_REQUEST_ID.match(sent):
        return sent
    return new_request_id()


@dataclass(frozen=True)
class Endpoint:
    """One `@remote` route as the lean path serves it."""

    function: Callable[..., Any]
    binder: Binder
    state: StartupState
    is_async: bool
    is_stream: bool
    reads_body: bool
    bound: BoundRoute
    takes_outside_args: bool
    """Whether the route has `Startup[T]` or `LastEventId` parameters (most routes have neither)."""

    @classmethod
    def of(cls, bound: BoundRoute) -> Endpoint:
        """The endpoint serving `bound`."""
        function = bound.route.function
        return cls(
            function=function,
            binder=bound.binder,
            state=bound.state,
            is_async=inspect.iscoroutinefunction(function),
            is_stream=inspect.isasyncgenfunction(function),
            reads_body=not bound.binder.uses_query,
            bound=bound,
            takes_outside_args=bool(bound.startup_args) or bound.binder.last_event_param is not None,
        )

    def add_outside_args(self, kwargs: dict[str, Any], head: _RequestHead) -> None:
        """Add the `Startup[T]` values and `LastEventId` to the bound arguments."""
        if self.bound.startup_args:
            kwargs.update(self.bound.startup_kwargs())
        if self.binder.last_event_param is not None:
            kwargs[self.binder.last_event_param] = head.last_event_id


@dataclass(frozen=True)
class Health:
    """The health path (`/ping` by default): 204 while starting, 200 ready, 503 failed."""

    state: PodRouteState


async def call_route(function: Callable[..., Any], kwargs: dict[str, Any], is_async: bool) -> Any:
    """Run a route function (a sync one in a thread); its ValueError becomes a 400."""
    try:
        if is_async:
            return await function(**kwargs)
        return await asyncio.to_thread(function, **kwargs)
    except ValueError as error:
        raise HTTPError(400, str(error) or "the input was rejected by the route") from error


class _RequestHead:
    """The few request headers the lean path reads, found in one pass."""

    __slots__ = ("content_length", "content_type", "last_event_id", "request_id")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        sent_id: str | None = None
        self.content_type: str | None = None
        self.content_length: int | None = None
        self.last_event_id: str | None = None
        for name, value in headers:
            if name == _CONTENT_TYPE:
                self.content_type = value.decode("latin-1")
            elif name == _RID:
                sent_id = value.decode("latin-1")
            elif name == _CONTENT_LENGTH and value.isdigit():
                self.content_length = int(value)
            elif name == _LAST_EVENT_ID:
                self.last_event_id = value.decode("latin-1")
        self.request_id = choose_request_id(sent_id)


def _encode_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _send_bytes(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    head_only: bool,
) -> None:
    headers.append((_CONTENT_LENGTH, str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head_only else body, "more_body": False})


async def send_problem(
    send: Send, error: HTTPError, rid: str, head_only: bool = False, extra: dict[str, str] | None = None
) -> None:
    """Answer `error` as problem+json, with its headers and `X-Request-ID`."""
    headers = [_PROBLEM_HEADER, (_RID, rid.encode())]
    headers += _encode_headers({**error.headers, **(extra or {})})
    await _send_bytes(send, error.status, headers, orjson.dumps(error.to_problem(rid)), head_only)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_stream(send: Send, frames: AsyncIterator[bytes]) -> None:
    async for frame in frames:
        await send({"type": "http.response.body", "body": frame, "more_body": True})
    await send(_LAST_BODY)


def _is_quart_response(value: Any) -> bool:
    """Whether a route returned a Quart `Response` (it must have imported Quart to make one)."""
    module = sys.modules.get("quart.wrappers.response")
    return module is not None and isinstance(value, module.Response)


class LeanDispatch:
    """ASGI app serving `@remote` routes and the health path itself, the rest by its fallback."""

    def __init__(self, state: PodRouteState, fallback: Fallback) -> None:
        self.fallback = fallback
        self.max_body = state.settings.max_body_bytes
        self.body_timeout = state.settings.body_timeout
        self.max_message = state.settings.max_message_bytes
        self.router: Router[Endpoint | Health | SocketEndpoint] = Router()
        for bound in state.routes:
            handler = SocketEndpoint(bound) if bound.route.is_websocket else Endpoint.of(bound)
            self.router.add(bound.route.method, bound.full_path, handler)
        self.router.add("GET", state.settings.health_path, Health(state))
        self.router.compile()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection: ours if the router knows it, else the fallback's."""
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._serve_socket(scope, receive, send)
                return
            await self.fallback(scope, receive, send)
            return
        method = scope["method"]
        found = self.router.resolve("GET" if method == "HEAD" else method, scope["path"])
        if found is None:
            await self._not_routed(scope, receive, send)
            return
        handler = found.handler
        if isinstance(handler, SocketEndpoint):  # an HTTP request whose method is literally WEBSOCKET
            await self._not_routed(scope, receive, send)
            return
        head = _RequestHead(scope["headers"])
        if isinstance(handler, Health):
            await self._serve_health(handler.state, head.request_id, send, method == "HEAD")
            return
        await self._serve(handler, found, scope, receive, send, head)

    async def _serve_socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.router.resolve(WEBSOCKET, scope["path"])
        rid = _RequestHead(scope["headers"]).request_id
        if found is None or not isinstance(found.handler, SocketEndpoint):
            if self.fallback.has_socket(scope["path"]):
                await self.fallback(scope, receive, send)
                return
            if (await receive())["type"] == "websocket.connect":
                detail = f"no WebSocket route matches {scope['path']}; see /docs for the routes"
                await refuse_handshake(scope, send, HTTPError(404, detail), rid)
            return
        await serve_socket(found.handler, found.params, scope, receive, send, rid, self.max_message)

    async def _serve(
        self, endpoint: Endpoint, found: _Found, scope: Scope, receive: Receive,
        send: Send, head: _RequestHead,
    ) -> None:  # fmt: skip
        rid = head.request_id
        head_only = scope["method"] == "HEAD"
        try:
            if endpoint.state.status != "ready":
                raise not_ready_error(endpoint.state)
            stream = endpoint.binder.open_stream(head.content_type) if endpoint.reads_body else None
            body = await self._read_body(receive, head, stream) if endpoint.reads_body else b""
            kwargs = endpoint.binder.bind_parts(
                found.params,
                scope["query_string"],
                body,
                head.content_type,
                lambda: self.fallback.request(scope, body),
                None if stream is None else stream.result(),
            )
            if endpoint.takes_outside_args:
                endpoint.add_outside_args(kwargs, head)
            if endpoint.is_stream:
                await self._stream(endpoint.function(**kwargs), rid, receive, send)
                return
            result = await call_route(endpoint.function, kwargs, endpoint.is_async)
            if _is_quart_response(result):
                await self._send_quart_response(result, rid, send, head_only)
                return
            if inspect.isasyncgen(result):
                await self._stream(result, rid, receive, send)
                return
            payload = encode_json(result)
        except HTTPError as error:
            await send_problem(send, error, rid, head_only)
            return
        except Exception as error:
            await self._send_unexpected(error, scope, rid, send, head_only)
            return
        await _send_bytes(send, 200, [_JSON_HEADER, (_RID, rid.encode())], payload, head_only)

    async def _read_body(self, receive: Receive, head: _RequestHead, stream: BodyStream | None) -> bytes:
        """The whole body; each chunk also goes to `stream` (parsing while the rest arrives)."""
        if head.content_length is not None and head.content_length > self.max_body:
            raise self._too_large()
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > self.max_body:
                raise self._too_large()
            if stream is not None:
                stream.feed(body)
            return body
        if stream is not None:
            stream.feed(body)
        chunks = [body]
        size = len(body)
        try:
            async with asyncio.timeout(self.body_timeout):
                while message.get("more_body", False):
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise HTTPError(400, "the client disconnected before sending the whole body")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        raise self._too_large()
                    chunks.append(chunk)
                    if stream is not None:
                        stream.feed(chunk)
        except TimeoutError:
            raise HTTPError(
                408, f"the request body did not arrive within {self.body_timeout:g} s; send it faster"
            ) from None
        return b"".join(chunks)

    def _too_large(self) -> HTTPError:
        return HTTPError(
            413, f"the request body is larger than the {self.max_body}-byte limit; send less data"
        )

    async def _stream(self, items: AsyncIterator[Any], rid: str, receive: Receive, send: Send) -> None:
        headers = [*_SSE_HEADERS, (_RID, rid.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        sender = asyncio.ensure_future(_send_stream(send, sse_frames(items, rid)))
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait((sender, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, watcher):
                task.cancel()
            await asyncio.gather(sender, watcher, return_exceptions=True)
            await items.aclose()  # type: ignore[attr-defined]

    async def _send_quart_response(self, response: Response, rid: str, send: Send, head_only: bool) -> None:
        response.headers.setdefault(REQUEST_ID_HEADER, rid)
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        if not head_only:
            async with response.response as body:
                async for data in body:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        await send(_LAST_BODY)

    async def _send_unexpected(
        self, error: Exception, scope: Scope, rid: str, send: Send, head_only: bool
    ) -> None:
        logger.error(
            "unhandled error in %s %s", scope["method"], scope["path"], exc_info=error,
            extra={"request_id": rid},
        )  # fmt: skip
        detail = f"an internal error occurred; quote request id {rid} when reporting it"
        await send_problem(send, HTTPError(500, detail), rid, head_only)

    async def _serve_health(self, state: PodRouteState, rid: str, send: Send, head_only: bool) -> None:
        status = state.status
        if status == "ready":
            headers = [_JSON_HEADER, (_RID, rid.encode())]
            await _send_bytes(send, 200, headers, b'{"status":"healthy"}', head_only)
            return
        if status == "starting":
            headers = [(_CONTENT_TYPE, b"text/html; charset=utf-8"), (_RID, rid.encode())]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send(_LAST_BODY)
            return
        errors = "; ".join(s.error for s in state.startup if s.error)
        problem = HTTPError(503, "startup failed: " + errors, title="Unhealthy")
        await send_problem(send, problem, rid, head_only)

    async def _not_routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        ours = self.router.methods_for(path)
        if not ours:
            await self.fallback(scope, receive, send)
            return
        theirs = self.fallback.methods_for(path)
        if method in theirs:
            await self.fallback(scope, receive, send)
            return
        rid = _RequestHead(scope["headers"]).request_id
        if WEBSOCKET in ours and method in ("GET", "HEAD"):
            await send_problem(send, _upgrade_required(path), rid, head_only=method == "HEAD")
            return
        http = {"GET" if m == WEBSOCKET else m for m in ours}
        allowed = http | theirs | ({"HEAD"} if "GET" in http else set())
        allow = ", ".join(sorted(allowed))
        detail = f"{method} is not allowed on {path}; allowed: {allow}"
        if WEBSOCKET in ours:
            detail += " (GET with Upgrade: websocket opens the WebSocket)"
        error = HTTPError(405, detail, headers={"Allow": allow})
        await send_problem(send, error, rid)


def _upgrade_required(path: str) -> HTTPError:
    return HTTPError(
        426,
        f"{path} is a WebSocket route; open a WebSocket (GET with Connection: Upgrade and "
        "Upgrade: websocket), e.g. with EndpointClient.websocket()",
        headers={"Upgrade": "websocket"},
    )
