"""WebSockets through the runtime's gateway: `ws://HOST:PORT/<endpoint id>/<path>` to a worker.

The gateway hands every `websocket` scope for an endpoint here. Before the socket is accepted,
refusals are HTTP answers in the gateway's usual shape (ASGI `websocket.http.response`): 404 for
an unknown endpoint, 401 without the endpoint's key, 400 `{"error": "no workers available"}` when
no worker is ready within the wait limit, 502 when the worker cannot be reached; a worker's own
refusal (503 while starting, 422 for bad parameters, 426/404/405) is passed on as it answered.

An accepted socket holds its worker through `EndpointPool.lease`, so it counts as a request in
flight for autoscaling for as long as it is open. Messages are relayed as they come, both ways,
by the `websockets` package on the worker side and the server's own WebSocket support on the
client side (no framing here). Each side's close code and reason reach the other. When the worker
leaves service (drained for a rollout or scale-in, found unhealthy, stopped), and when the
runtime begins to shut down (`go_away`, on SIGTERM), both sides are closed with 1001 "going away",
so the drain or the shutdown finishes at once and the client knows to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from podroute.runtime.exchange import WORKER_HEADER, Receive, Scope, Send
from podroute.runtime.pool import EndpointPool, NoWorkerError
from podroute.runtime.state import StateFile
from podroute.runtime.workers import Worker

logger = logging.getLogger("podroute.runtime.gateway")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""The largest message the gateway relays from a worker (workers enforce their own, smaller limit)."""
GOING_AWAY = 1001
DRAINED = "the worker is going away (drained); reconnect"
SHUTTING_DOWN = "the runtime is shutting down; reconnect"
_UNSENDABLE = frozenset({1005, 1006, 1015})
"""Close codes that describe a close but may not be sent in a close frame (RFC 6455 7.4.1)."""
_NOT_FORWARDED = frozenset(
    {
        b"host",
        b"connection",
        b"upgrade",
        b"authorization",
        b"user-agent",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"x-request-id",
    }
)


@dataclass
class SocketSession:
    """What happened to one WebSocket through the gateway (the gateway reports it to observers).

    `status` is 101 once accepted, else the refusal's status (0 if the client left first).
    """

    request_id: str
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    worker_id: str | None = None
    waited_s: float = 0.0
    cold_start: bool = False
    outcome: str = "completed"


async def refuse(
    scope: Scope, send: Send, status: int, body: bytes, request_id: str, extra: list[tuple[bytes, bytes]]
) -> None:
    """Answer the upgrade with an HTTP response (or a bare close where the server lacks the extension)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": ""})
        return
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        *extra,
    ]
    if not any(name == b"content-type" for name, _ in extra):
        headers.append((b"content-type", b"application/json"))
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})


def _edge_error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _sendable(code: int | None, fallback: int) -> int:
    return fallback if code is None or code in _UNSENDABLE else code


class SocketProxy:
    """Relays WebSockets between clients and the workers of the gateway's endpoints."""

    def __init__(self, state: StateFile, pools: Mapping[str, EndpointPool], wait_s: float) -> None:
        self.state = state
        self.pools = pools
        self.wait_s = wait_s
        self.closing = asyncio.Event()

    def go_away(self) -> None:
        """Close every open socket with 1001 now, and any accepted later at once (shutdown)."""
        self.closing.set()

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, endpoint_id: str, target: bytes, request_id: str
    ) -> SocketSession:
        """Serve one WebSocket connection for `endpoint_id`; returns what happened."""
        session = SocketSession(request_id)
        if (await receive())["type"] != "websocket.connect":
            session.outcome = "client disconnected"
            return session
        record, pool = self.state.endpoints.get(endpoint_id), self.pools.get(endpoint_id)
        if record is None or pool is None:
            await self._refuse(scope, send, session, 404, f"endpoint {endpoint_id} not found")
            return session
        auth = _header(scope, b"authorization")
        if not auth.startswith("Bearer ") or not record.accepts_key(auth[7:].strip()):
            await self._refuse(
                scope, send, session, 401, "unauthorized: send Authorization: Bearer <endpoint api key>"
            )
            return session
        if any(not value.isascii() for _, value in scope["headers"]):
            message = "a header value contains non-ASCII bytes, which the gateway cannot forward; send ASCII"
            await self._refuse(scope, send, session, 400, message)
            return session
        preferred = _header(scope, WORKER_HEADER) or None
        try:
            async with pool.lease(self.wait_s, preferred) as lease:
                session.worker_id = lease.worker.id
                session.waited_s, session.cold_start = lease.waited_s, lease.cold_start
                await self._open(scope, receive, send, lease.worker, target, session)
        except NoWorkerError:
            await self._refuse(scope, send, session, 400, "no workers available")
        return session

    async def _refuse(
        self, scope: Scope, send: Send, session: SocketSession, status: int, message: str
    ) -> None:
        session.status = status
        await refuse(scope, send, status, _edge_error(message), session.request_id, [])

    async def _open(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        worker: Worker,
        target: bytes,
        session: SocketSession,
    ) -> None:
        worker_header = (WORKER_HEADER, worker.id.encode())
        try:
            upstream = await connect(
                f"ws://127.0.0.1:{worker.port}{target.decode('latin-1')}",
                additional_headers=_forwarded(scope, session.request_id),
                user_agent_header=_header(scope, b"user-agent") or None,
                subprotocols=scope.get("subprotocols") or None,
                compression=None,
                max_size=MAX_MESSAGE_BYTES,
                open_timeout=30,
            )
        except InvalidStatus as error:
            answer = error.response
            session.status = answer.status_code
            passed = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in answer.headers.raw_items()
                if name.lower() in ("content-type", "allow", "retry-after", "upgrade")
            ]
            await refuse(
                scope,
                send,
                answer.status_code,
                bytes(answer.body or b""),
                session.request_id,
                [*passed, worker_header],
            )
            return
        except (OSError, InvalidHandshake, TimeoutError) as error:
            if worker.state == "ready":
                worker.failure = f"connection failed: {error}"
                worker.set_state("unhealthy", worker.failure)
            await self._refuse(scope, send, session, 502, "worker connection failed; retry the request")
            return
        session.status = 101
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": upstream.subprotocol,
                "headers": [worker_header, (b"x-request-id", session.request_id.encode())],
            }
        )
        await self._relay(receive, send, upstream, worker, session)

    async def _relay(
        self, receive: Receive, send: Send, upstream: ClientConnection, worker: Worker, session: SocketSession
    ) -> None:
        inbound = asyncio.ensure_future(self._client_to_worker(receive, upstream, session))
        outbound = asyncio.ensure_future(self._worker_to_client(send, upstream, session))
        retired = asyncio.ensure_future(worker.retired.wait())
        closing = asyncio.ensure_future(self.closing.wait())
        tasks = (inbound, outbound, retired, closing)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if not (inbound.done() or outbound.done()):
                reason = SHUTTING_DOWN if closing.done() else DRAINED
                left = "the runtime shut down" if closing.done() else f"worker {worker.id} left service"
                session.outcome = f"closed {GOING_AWAY}: {left}"
                await upstream.close(GOING_AWAY, reason)
                with contextlib.suppress(OSError):
                    await send({"type": "websocket.close", "code": GOING_AWAY, "reason": reason})
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close(GOING_AWAY)

    async def _client_to_worker(
        self, receive: Receive, upstream: ClientConnection, session: SocketSession
    ) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code = int(message.get("code") or 1005)
                session.outcome = f"closed {code} by the client"
                await upstream.close(_sendable(code, 1000), message.get("reason") or "")
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            session.bytes_in += len(data)
            try:
                await upstream.send(data)
            except ConnectionClosed:
                return  # the worker closed: the other direction relays its close

    async def _worker_to_client(self, send: Send, upstream: ClientConnection, session: SocketSession) -> None:
        try:
            async for data in upstream:
                session.bytes_out += len(data)
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
        except ConnectionClosed:
            pass
        code = upstream.close_code
        reason = upstream.close_reason or ""
        session.outcome = f"closed {code} by the worker" + (f": {reason}" if reason else "")
        with contextlib.suppress(OSError):
            await send({"type": "websocket.close", "code": _sendable(code, 1011), "reason": reason})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _forwarded(scope: Scope, request_id: str) -> list[tuple[str, str]]:
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in scope["headers"]
        if name not in _NOT_FORWARDED
    ]
    headers.append(("x-request-id", request_id))
    return headers
