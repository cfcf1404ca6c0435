"""The runtime's gateway: `/<endpoint id>/<path>` forwarded to one of the endpoint's workers.

It is raw ASGI middleware in front of the runtime's Quart app (which keeps the control API and the
RunPod-style `/v2/<id>/health`), so a proxied request pays for no request object, context or
routing. Answers follow RunPod's edge: 401 without the endpoint's key, 413 over 30 MB,
400 `{"error": "no workers available"}` when no worker is ready within the wait limit, 524 past the
execution limit, 502 when the worker cannot be reached; a header value the gateway cannot forward
(non-ASCII bytes) is a 400 problem+json.

Memory stays bounded: bodies up to `PREFETCH_BYTES` are read before a worker is chosen, larger ones
stream to the worker as they arrive (so at most a few reads per request are held), and responses
stream back chunk by chunk. The worker is held through `EndpointPool.lease`, one context manager
around the whole exchange, so no failure can leak in-flight capacity. Every finished request is
described once, as a `RequestRecord`, to the callables in `Gateway.observers`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from podroute.errors import PROBLEM_CONTENT_TYPE, problem_body
from podroute.runtime.pool import EndpointPool, NoWorkerError
from podroute.runtime.state import StateFile
from podroute.runtime.upstream import (
    DescriptorLimitError,
    ResponseHead,
    StaleConnectionError,
    UpstreamConnection,
    UpstreamError,
    UpstreamPool,
)
from podroute.runtime.workers import Worker

logger = logging.getLogger("podroute.runtime.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

BODY_LIMIT_BYTES = 30 * 1024 * 1024
PREFETCH_BYTES = 64 * 1024
WATCH_AFTER_S = 0.05
WORKER_HEADER = b"x-runpod-worker-id"
_NOT_ENDPOINTS = frozenset({"control", "v2"})
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
_RESPONSE_DROP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"date",
        b"server",
    }
)
_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_ID_PREFIX = uuid.uuid4().hex[:16]
_ids = itertools.count(1)
_JSON = b"application/json"
_Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class RequestRecord:
    """What happened to one request through the gateway, once it is over.

    `status` is what the client was sent (0 if it left before any answer); `outcome` is
    "completed", "client disconnected", or "aborted: <why>" when the answer broke off after it began.
    """

    endpoint_id: str
    method: str
    path: str
    status: int
    duration_s: float
    bytes_in: int
    bytes_out: int
    worker_id: str | None
    request_id: str
    waited_s: float
    cold_start: bool
    outcome: str


class RequestObserver(Protocol):
    """Called with every finished request (metrics, request log); must not block or raise."""

    def __call__(self, record: RequestRecord) -> None:
        """Take note of one finished request."""


class _ClientGoneError(Exception):
    """The client disconnected while its request was being forwarded."""


class _BodyTooLargeError(Exception):
    """The request body grew past the limit while streaming."""


class _Exchange:
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
class _Request:
    """The parts of the client's request the gateway forwards or decides on."""

    method: str
    target: bytes
    headers: bytes
    auth: bytes
    length: int | None
    chunked: bool
    preferred: str | None
    bad_header: bytes | None


def _parse_request(scope: Scope, rest: bytes) -> tuple[_Request, bytes]:
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
    request = _Request(scope["method"], target, b"".join(forwarded), auth, length, chunked, preferred, bad)
    return request, request_id


class Gateway:
    """ASGI middleware: serves `/<endpoint id>/...` itself and passes everything else to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        state: StateFile,
        pools: dict[str, EndpointPool],
        wait_limit_s: float,
        execution_limit_s: float,
        upstream: UpstreamPool | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.pools = pools
        self.wait_limit_s = wait_limit_s
        self.execution_limit_s = execution_limit_s
        self.upstream = upstream or UpstreamPool()
        self.observers: list[RequestObserver] = []
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start closing idle worker connections periodically."""
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        """Stop the sweeper and close every pooled connection."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.upstream.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.upstream.idle_s / 3)
            self.upstream.close_idle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI connection: endpoint traffic here, the rest to the Quart app."""
        if scope["type"] == "http":
            raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
            slash = raw_path.find(b"/", 1)
            if slash > 0:
                endpoint_id = raw_path[1:slash].decode("latin-1")
                if endpoint_id not in _NOT_ENDPOINTS:
                    await self._serve(scope, receive, send, endpoint_id, raw_path[slash:])
                    return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, endpoint_id: str, rest: bytes) -> None:
        started = time.perf_counter()
        request, request_id = _parse_request(scope, rest)
        exchange = _Exchange(send, request_id)
        try:
            await self._proxy(exchange, request, receive, endpoint_id)
        except _ClientGoneError:
            exchange.outcome = "client disconnected"
        except asyncio.CancelledError:
            if not exchange.gone:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            exchange.outcome = "client disconnected"
        finally:
            exchange.stop_watching()
            if self.observers:
                self._notify(exchange, request, endpoint_id, rest, time.perf_counter() - started)

    def _notify(
        self, exchange: _Exchange, request: _Request, endpoint_id: str, rest: bytes, duration: float
    ) -> None:
        record = RequestRecord(
            endpoint_id=endpoint_id,
            method=request.method,
            path=rest.decode("latin-1"),
            status=exchange.status,
            duration_s=duration,
            bytes_in=exchange.bytes_in,
            bytes_out=exchange.bytes_out,
            worker_id=exchange.worker_id,
            request_id=exchange.request_id.decode(),
            waited_s=exchange.waited_s,
            cold_start=exchange.cold_start,
            outcome=exchange.outcome,
        )
        for observer in self.observers:
            try:
                observer(record)
            except Exception:  # an observer's bug must not break the gateway
                logger.exception("gateway request observer %r failed", observer)

    async def _proxy(
        self, exchange: _Exchange, request: _Request, receive: Receive, endpoint_id: str
    ) -> None:
        record = self.state.endpoints.get(endpoint_id)
        pool = self.pools.get(endpoint_id)
        if record is None or pool is None:
            await exchange.error(404, f"endpoint {endpoint_id} not found")
            return
        auth = request.auth
        if not auth.startswith(b"Bearer ") or not record.accepts_key(auth[7:].strip().decode("latin-1")):
            await exchange.error(401, "unauthorized: send Authorization: Bearer <endpoint api key>")
            return
        if request.bad_header is not None:
            await self._bad_header(exchange, request.bad_header)
            return
        if request.length is not None and request.length > BODY_LIMIT_BYTES:
            await exchange.error(413, "request body exceeds 30 MB")
            return
        body: bytes | None = None
        if not request.chunked and (request.length or 0) <= PREFETCH_BYTES:
            body = await _read_small(receive, exchange)
            exchange.watch(receive)
        limit = record.scaling["executionTimeoutMs"] / 1000 or self.execution_limit_s
        try:
            async with pool.lease(self.wait_limit_s, request.preferred) as lease:
                exchange.worker_id = lease.worker.id
                exchange.waited_s, exchange.cold_start = lease.waited_s, lease.cold_start
                await self._exchange(exchange, request, receive, lease.worker, body, limit)
        except NoWorkerError:
            await exchange.error(400, "no workers available")

    async def _bad_header(self, exchange: _Exchange, name: bytes) -> None:
        header = name.decode("latin-1")
        detail = (
            f"the value of header {header!r} contains non-ASCII bytes, which the gateway cannot "
            "forward to a worker; send header values as ASCII (percent- or base64-encode other text)"
        )
        problem = problem_body(400, detail, exchange.request_id.decode(), header=header)
        await exchange.respond(400, orjson.dumps(problem), PROBLEM_CONTENT_TYPE.encode())

    async def _exchange(
        self,
        exchange: _Exchange,
        request: _Request,
        receive: Receive,
        worker: Worker,
        body: bytes | None,
        limit: float,
    ) -> None:
        connection: UpstreamConnection | None = None
        try:
            async with asyncio.timeout(limit) as deadline:
                connection, head = await self._send_request(exchange, request, receive, worker, body)
                if head.status < 400 and _is_event_stream(head):
                    deadline.reschedule(None)  # a stream runs as long as both ends want it
                await self._relay(exchange, request, connection, head, worker)
        except TimeoutError:
            await self._fail(
                exchange, 524, f"request exceeded the {limit:g}s execution limit", "execution limit"
            )
        except _BodyTooLargeError:
            await self._fail(exchange, 413, "request body exceeds 30 MB", "request body over the limit")
        except DescriptorLimitError:
            logger.error(
                "the gateway ran out of file descriptors opening a worker connection; "
                "raise 'ulimit -n' or lower PODROUTE_RUNTIME_KEEP_ALIVE_S",
                extra={"worker": worker.id},
            )
            await self._fail(
                exchange, 503, "the gateway is out of connections; retry shortly", "descriptors", True
            )
        except (UpstreamError, OSError) as error:
            if not exchange.started and worker.state == "ready":
                worker.failure = f"connection failed: {error}"
                worker.set_state("unhealthy", worker.failure)
            await self._fail(exchange, 502, "worker connection failed; retry the request", str(error))
        finally:
            if connection is not None:
                self.upstream.put_back(connection)

    async def _fail(
        self, exchange: _Exchange, status: int, message: str, why: str, retry_after: bool = False
    ) -> None:
        if exchange.started:  # the answer has begun: all the client can learn is that it broke off
            exchange.outcome = f"aborted: {why}"
            return
        extra = ((b"retry-after", b"1"),) if retry_after else ()
        await exchange.error(status, message, extra)

    async def _send_request(
        self, exchange: _Exchange, request: _Request, receive: Receive, worker: Worker, body: bytes | None
    ) -> tuple[UpstreamConnection, ResponseHead]:
        head = b"%s %s HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nx-request-id: %s\r\n%s" % (
            request.method.encode(),
            request.target,
            worker.port,
            exchange.request_id,
            request.headers,
        )
        while True:
            connection = await self.upstream.connect(worker.port)
            try:
                if body is not None:
                    framing = (
                        b"content-length: %d\r\n\r\n" % len(body)
                        if body or request.length is not None
                        else b"\r\n"
                    )
                    await connection.write(head + framing + body)
                else:
                    framing = b"transfer-encoding: chunked\r\n\r\n" if request.chunked else b"\r\n"
                    if not request.chunked:
                        framing = b"content-length: %d\r\n\r\n" % (request.length or 0)
                    await connection.write(head + framing)
                    await _stream_body(receive, connection, exchange, request.chunked)
                    exchange.watch(receive)
                await connection.flush()
                return connection, await connection.read_head()
            except StaleConnectionError:
                connection.close()
                if body is None:
                    raise
            except BaseException:
                connection.close()
                raise

    async def _relay(
        self,
        exchange: _Exchange,
        request: _Request,
        connection: UpstreamConnection,
        head: ResponseHead,
        worker: Worker,
    ) -> None:
        stream = head.chunked or _is_event_stream(head)
        if not stream and head.length is not None and head.length > BODY_LIMIT_BYTES:
            connection.close()
            await exchange.error(502, "response body exceeds 30 MB")
            return
        headers = [(name, value) for name, value in head.headers if name not in _RESPONSE_DROP]
        headers.append((WORKER_HEADER, worker.id.encode()))
        await exchange.start(head.status, headers)
        size = 0
        held: bytes | None = None
        async for chunk in connection.iter_body(head, request.method):
            size += len(chunk)
            if size > BODY_LIMIT_BYTES and not _is_event_stream(head):
                connection.close()
                exchange.outcome = "aborted: response body over 30 MB"
                return
            if stream:
                await exchange.body(chunk, more=True)
            else:  # hold one chunk back so the last one goes out with the end of the body
                if held is not None:
                    await exchange.body(held, more=True)
                held = chunk
        await exchange.body(held or b"", more=False)


def _is_event_stream(head: ResponseHead) -> bool:
    for name, value in head.headers:
        if name == b"content-type":
            return value.startswith(b"text/event-stream")
    return False


async def _read_small(receive: Receive, exchange: _Exchange) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGoneError
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
            exchange.bytes_in += len(chunk)
            if exchange.bytes_in > PREFETCH_BYTES:
                raise _BodyTooLargeError  # more than the declared length: h11 would have refused it
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _stream_body(
    receive: Receive, connection: UpstreamConnection, exchange: _Exchange, chunked: bool
) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGoneError
        chunk = message.get("body", b"")
        if chunk:
            exchange.bytes_in += len(chunk)
            if exchange.bytes_in > BODY_LIMIT_BYTES:
                raise _BodyTooLargeError
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
