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

WebSocket upgrades to an endpoint are relayed by `podroute.runtime.socket_proxy` (same auth, same
worker lease, reported as method WEBSOCKET once the socket closes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

import orjson

from podroute.errors import PROBLEM_CONTENT_TYPE, problem_body
from podroute.runtime.exchange import (
    BODY_LIMIT_BYTES,
    PREFETCH_BYTES,
    WORKER_HEADER,
    ASGIApp,
    BodyTooLargeError,
    ClientGoneError,
    Exchange,
    ForwardRequest,
    Receive,
    Scope,
    Send,
    parse_request,
    read_small_body,
    stream_body,
)
from podroute.runtime.pool import EndpointPool, NoWorkerError
from podroute.runtime.socket_proxy import SocketProxy, SocketSession
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

_NOT_ENDPOINTS = frozenset({"control", "v2"})
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
        self.sockets = SocketProxy(state, pools, wait_limit_s)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start closing idle worker connections periodically."""
        self._sweeper = asyncio.create_task(self._sweep())

    def go_away(self) -> None:
        """Shutdown has begun: close the open WebSockets with 1001 (HTTP requests in flight finish)."""
        self.sockets.go_away()

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
        if scope["type"] in ("http", "websocket"):
            raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
            slash = raw_path.find(b"/", 1)
            if slash > 0:
                endpoint_id = raw_path[1:slash].decode("latin-1")
                if endpoint_id not in _NOT_ENDPOINTS:
                    if scope["type"] == "websocket":
                        await self._serve_socket(scope, receive, send, endpoint_id, raw_path[slash:])
                    else:
                        await self._serve(scope, receive, send, endpoint_id, raw_path[slash:])
                    return
        await self.app(scope, receive, send)

    async def _serve_socket(
        self, scope: Scope, receive: Receive, send: Send, endpoint_id: str, rest: bytes
    ) -> None:
        started = time.perf_counter()
        _, request_id = parse_request({**scope, "method": "GET"}, rest)
        query = scope.get("query_string", b"")
        target = rest + b"?" + query if query else rest
        session = SocketSession(request_id.decode())
        try:
            session = await self.sockets.serve(scope, receive, send, endpoint_id, target, session.request_id)
        finally:
            if self.observers:
                self._report(
                    RequestRecord(
                        endpoint_id=endpoint_id,
                        method="WEBSOCKET",
                        path=rest.decode("latin-1"),
                        status=session.status,
                        duration_s=time.perf_counter() - started,
                        bytes_in=session.bytes_in,
                        bytes_out=session.bytes_out,
                        worker_id=session.worker_id,
                        request_id=session.request_id,
                        waited_s=session.waited_s,
                        cold_start=session.cold_start,
                        outcome=session.outcome,
                    )
                )

    async def _serve(self, scope: Scope, receive: Receive, send: Send, endpoint_id: str, rest: bytes) -> None:
        started = time.perf_counter()
        request, request_id = parse_request(scope, rest)
        exchange = Exchange(send, request_id)
        try:
            await self._proxy(exchange, request, receive, endpoint_id)
        except ClientGoneError:
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
        self, exchange: Exchange, request: ForwardRequest, endpoint_id: str, rest: bytes, duration: float
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
        self._report(record)

    def _report(self, record: RequestRecord) -> None:
        for observer in self.observers:
            try:
                observer(record)
            except Exception:  # an observer's bug must not break the gateway
                logger.exception("gateway request observer %r failed", observer)

    async def _proxy(
        self, exchange: Exchange, request: ForwardRequest, receive: Receive, endpoint_id: str
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
            body = await read_small_body(receive, exchange)
            exchange.watch(receive)
        limit = record.scaling["executionTimeoutMs"] / 1000 or self.execution_limit_s
        try:
            async with pool.lease(self.wait_limit_s, request.preferred) as lease:
                exchange.worker_id = lease.worker.id
                exchange.waited_s, exchange.cold_start = lease.waited_s, lease.cold_start
                await self._exchange(exchange, request, receive, lease.worker, body, limit)
        except NoWorkerError:
            await exchange.error(400, "no workers available")

    async def _bad_header(self, exchange: Exchange, name: bytes) -> None:
        header = name.decode("latin-1")
        detail = (
            f"the value of header {header!r} contains non-ASCII bytes, which the gateway cannot "
            "forward to a worker; send header values as ASCII (percent- or base64-encode other text)"
        )
        problem = problem_body(400, detail, exchange.request_id.decode(), header=header)
        await exchange.respond(400, orjson.dumps(problem), PROBLEM_CONTENT_TYPE.encode())

    async def _exchange(
        self,
        exchange: Exchange,
        request: ForwardRequest,
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
        except BodyTooLargeError:
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
        self, exchange: Exchange, status: int, message: str, why: str, retry_after: bool = False
    ) -> None:
        if exchange.started:  # the answer has begun: all the client can learn is that it broke off
            exchange.outcome = f"aborted: {why}"
            return
        extra = ((b"retry-after", b"1"),) if retry_after else ()
        await exchange.error(status, message, extra)

    async def _send_request(
        self,
        exchange: Exchange,
        request: ForwardRequest,
        receive: Receive,
        worker: Worker,
        body: bytes | None,
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
                    await stream_body(receive, connection, exchange, request.chunked)
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
        exchange: Exchange,
        request: ForwardRequest,
        connection: UpstreamConnection,
        head: ResponseHead,
        worker: Worker,
    ) -> None:
        stream = head.chunked or _is_event_stream(head)
        if not stream and head.length is not None and head.length > BODY_LIMIT_BYTES:
            connection.close()
            await exchange.error(502, "response body exceeds 30 MB")
            return
        headers = [
            (name, value)
            for name, value in head.headers
            if name not in _RESPONSE_DROP or (name == b"upgrade" and head.status == 426)  # RFC 9110 15.5.22
        ]
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
