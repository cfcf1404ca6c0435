"""What every server `podroute` runs has in common: request limits and the access log.

`ServingGuard` is ASGI middleware that `run_app` puts around any app it serves (a worker, the dev
server, the runtime's gateway): it answers 414 for a request target longer than `max_url_bytes` and
431 for more than `max_header_count` header fields, the same on every server and for WebSocket
upgrades too, and writes the access log (`podroute.logs.AccessLog`; a WebSocket is one line when it
ends: 101 once accepted, the bytes it sent, how long it was open). An answer sent before the request
body was read in full (413, 408, an early error) says `Connection: close`: the server closes such a
connection rather than read the rest, and a client must not send its next request on it.

The total size of the request head is bounded earlier, while the server parses it: Hypercorn and
Granian by their own settings, uvicorn by `podroute.uvicorn_server`, so a huge header never
reaches memory in full.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from podroute.descriptors import DescriptorWatch
from podroute.dispatch import ASGIApp, Message, Receive, Scope, Send, choose_request_id, send_problem
from podroute.errors import HTTPError
from podroute.logs import AccessLog
from podroute.settings import ServerSettings
from podroute.socket_serving import refuse_handshake
from podroute.sockets import message_size

_CLOSE = (b"connection", b"close")


def _expects_body(scope: Scope) -> bool:
    """Whether the request announces a body (a non-zero Content-Length, or chunked)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return bool(value != b"0")
        if name == b"transfer-encoding":
            return True
    return False


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return choose_request_id(value.decode("latin-1"))
    return choose_request_id(None)


class ServingGuard:
    """ASGI middleware: URL and header limits, `Connection: close` after an unread body, access log."""

    def __init__(self, app: ASGIApp, settings: ServerSettings, access_log: AccessLog | None) -> None:
        self.app = app
        self.max_url = settings.max_url_bytes
        self.max_headers = settings.max_header_count
        self.log = access_log
        self._watchdog: asyncio.Future[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the limits, serve, and log the answer."""
        if scope["type"] == "websocket":
            await self._serve_socket(scope, receive, send)
            return
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        error = self._check(scope)
        if error is not None:
            await send_problem(send, error, _request_id(scope), extra={"Connection": "close"})
            return
        unread = _expects_body(scope)
        if self.log is None and not unread:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer = [0, 0]  # status, body bytes
        body_left = [unread]  # whether request body bytes may still be on the wire

        def tracked_send(message: Message) -> Awaitable[None]:
            # A plain function handing back the server's own awaitable: no coroutine of its own
            # per message (a measurable share of the access log's cost on a small request).
            if message["type"] == "http.response.body":
                answer[1] += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                answer[0] = message["status"]
                if body_left[0]:
                    message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            return send(message)

        app_receive = receive
        if unread:

            async def tracked_receive() -> Message:
                message = await receive()
                if not message.get("more_body", False):
                    body_left[0] = False
                return message

            app_receive = tracked_receive
        try:
            await self.app(scope, app_receive, tracked_send)
        finally:
            if self.log is not None:
                self.log.record(scope, answer[0], answer[1], time.perf_counter() - started)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Watch descriptors while serving; write the access log's last lines once the app has
        shut down (Granian's worker process exits without running `atexit`)."""
        if self._watchdog is None:
            self._watchdog = asyncio.ensure_future(DescriptorWatch().run())
        log = self.log

        async def flushing_send(message: Message) -> None:
            if log is not None and message["type"].startswith("lifespan.shutdown."):
                log.flush()
            await send(message)

        await self.app(scope, receive, flushing_send)

    async def _serve_socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = self._check(scope)
        if error is not None:
            if (await receive())["type"] == "websocket.connect":
                await refuse_handshake(scope, send, error, _request_id(scope))
            return
        if self.log is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer = [0, 0]  # status, bytes sent

        async def tracked_send(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.send":
                answer[1] += message_size(message)
            elif kind == "websocket.accept":
                answer[0] = 101
            elif kind == "websocket.http.response.start":
                answer[0] = message["status"]
            elif kind == "websocket.http.response.body":
                answer[1] += len(message.get("body", b""))
            elif kind == "websocket.close" and not answer[0]:
                answer[0] = 403  # closed before accepting: the server refuses the upgrade with 403
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        finally:
            self.log.record(scope, answer[0], answer[1], time.perf_counter() - started)

    def _check(self, scope: Scope) -> HTTPError | None:
        target = len(scope.get("raw_path") or scope["path"]) + len(scope["query_string"])
        if target > self.max_url:
            return HTTPError(
                414, f"the request target is longer than {self.max_url} bytes; send the data in a body"
            )
        if len(scope["headers"]) > self.max_headers:
            return HTTPError(
                431, f"the request has more than {self.max_headers} header fields; send fewer headers"
            )
        return None
