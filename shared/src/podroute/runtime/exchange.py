"""The client's side of one gateway request: what it asked for, and what it has been sent back.

`parse_request` reads what the gateway needs from the ASGI scope in one pass over the headers;
`Exchange` sends the answer and, once the request body is in, notices the client leaving (and
cancels the request's task, so the worker is given back at once).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from podroute.runtime.upstream import UpstreamConnection

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

BODY_LIMIT_BYTES = 30 * 1024 * 1024
PREFETCH_BYTES = 64 * 1024
WATCH_AFTER_S = 0.05
WORKER_HEADER = b"x-runpod-worker-id"
_REQUEST_DROP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"authorization",
        b"content-length",
        b"expect",
        b"x-request-id",
    }
)
_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_ID_PREFIX = uuid.uuid4().hex[:16]
_ids = itertools.count(1)
_JSON = b"application/json"
_Headers = tuple[tuple[bytes, bytes], ...]


class ClientGoneError(Exception):
    """The client disconnected while its request was being forwarded."""


class BodyTooLargeError(Exception):
    """The request body grew past the limit while streaming."""


class Exchange:
    """One client request: what has been sent back, and whether the client is still there."""

    __slots__ = (
        "_send",
        "_task",
        "_timer",
        "_watcher",
        "bytes_in",
        "bytes_out",
        "cold_start",
        "gone",
        "outcome",
        "request_id",
        "started",
        "status",
        "waited_s",
        "worker_id",
    )

    def __init__(self, send: Send, request_id: bytes) -> None:
        self._send = send
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Future[Message] | None = None
        self.request_id = request_id
        self.status = 0
        self.started = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.gone = False
        self.worker_id: str | None = None
        self.waited_s = 0.0
        self.cold_start = False
        self.outcome = "completed"

    def watch(self, receive: Receive) -> None:
        """Once the body is read, cancel the request as soon as the client disconnects.

        Listening costs a task per request, so it starts only once the request has taken
        `WATCH_AFTER_S`: quick requests finish first, and a client leaving a quick one costs little.
        """
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._listen, receive)

    def _listen(self, receive: Receive) -> None:
        self._timer = None
        self._watcher = asyncio.ensure_future(receive())
        self._watcher.add_done_callback(self._on_message)

    def _on_message(self, future: asyncio.Future[Message]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        if future.result().get("type") == "http.disconnect" and self._task is not None:
            self.gone = True
            self._task.cancel()

    def stop_watching(self) -> None:
        """The request is over: stop listening for a disconnect."""
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None and not self._watcher.done():
            self._watcher.remove_done_callback(self._on_message)
            self._watcher.cancel()

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the response head."""
        self.started, self.status = True, status
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, chunk: bytes, more: bool) -> None:
        """Send part of the response body."""
        self.bytes_out += len(chunk)
        await self._send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: bytes = _JSON,
        extra: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        """A complete answer from the gateway itself."""
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", self.request_id),
            *extra,
        ]
        await self.start(status, headers)
        await self.body(body, more=False)

    async def error(self, status: int, message: str, extra: _Headers = ()) -> None:
        """RunPod's edge error shape: `{"error": message}`."""
        await self.respond(status, orjson.dumps({"error": message}), extra=extra)


@dataclass(frozen=True)
class ForwardRequest:
    """The parts of the client's request the gateway forwards or decides on."""

    method: str
    target: bytes
    headers: bytes
    auth: bytes
    length: int | None
    chunked: bool
    preferred: str | None
    bad_header: bytes | None


def parse_request(scope: Scope, rest: bytes) -> tuple[ForwardRequest, bytes]:
    """The request as the gateway forwards it, and its request id (the client's if sane, else new)."""
    forwarded: list[bytes] = []
    auth = b""
    length: int | None = None
    chunked = False
    preferred: str | None = None
    bad: bytes | None = None
    request_id = b""
    for name, value in scope["headers"]:
        if name in _REQUEST_DROP:
            if name == b"authorization":
                auth = value
            elif name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"x-request-id" and _SANE_REQUEST_ID.match(value):
                request_id = value
            continue
        if not value.isascii():
            bad = bad or name
        elif name == WORKER_HEADER:
            preferred = value.decode()
        forwarded.append(b"%s: %s\r\n" % (name, value))
    query = scope.get("query_string", b"")
    target = rest + b"?" + query if query else rest
    if not request_id:
        request_id = f"{_ID_PREFIX}{next(_ids):016x}".encode()
    request = ForwardRequest(
        scope["method"], target, b"".join(forwarded), auth, length, chunked, preferred, bad
    )
    return request, request_id


async def read_small_body(receive: Receive, exchange: Exchange) -> bytes:
    """A body of at most PREFETCH_BYTES, read whole before a worker is chosen."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
            exchange.bytes_in += len(chunk)
            if exchange.bytes_in > PREFETCH_BYTES:
                raise BodyTooLargeError  # more than the declared length: h11 would have refused it
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def stream_body(
    receive: Receive, connection: UpstreamConnection, exchange: Exchange, chunked: bool
) -> None:
    """Copy the request body to the worker as it arrives (re-chunked if the client chunked it)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunk = message.get("body", b"")
        if chunk:
            exchange.bytes_in += len(chunk)
            if exchange.bytes_in > BODY_LIMIT_BYTES:
                raise BodyTooLargeError
            if chunked:
                await connection.write(b"%x\r\n" % len(chunk))
                await connection.write(chunk)
                await connection.write(b"\r\n")
            else:
                await connection.write(chunk)
        if not message.get("more_body", False):
            break
    if chunked:
        await connection.write(b"0\r\n\r\n")
