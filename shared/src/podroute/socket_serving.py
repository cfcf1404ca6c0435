"""Serving one WebSocket route over ASGI: the handshake, the route's run, and how the socket ends.

The lean dispatch path (`podroute.dispatch`) hands every `websocket` scope whose path is a
WebSocket route here. Before the socket is accepted, a refusal is an ordinary HTTP answer with a
problem+json body (ASGI's `websocket.http.response` extension, which Hypercorn, uvicorn and the
runtime's gateway offer): 503 while the worker starts, 422 for path or query parameters that do
not validate. Where a server lacks the extension the handshake is refused with a close (the server
answers 403). Once accepted, errors become close codes (see `podroute.sockets`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from podroute.errors import PROBLEM_CONTENT_TYPE, HTTPError
from podroute.sockets import (
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    NORMAL_CLOSURE,
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
    MessageTooLargeError,
    Receive,
    Send,
    UnsupportedMessageError,
    WebSocket,
    WebSocketClosedError,
)
from podroute.state import BoundRoute, not_ready_error

logger = logging.getLogger("podroute.app")

_HTTP_RESPONSE = "websocket.http.response"


@dataclass(frozen=True)
class SocketEndpoint:
    """One WebSocket route as the lean path serves it."""

    bound: BoundRoute


def handshake_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """The handshake request's headers by lower-case name (the last value of a repeated one)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def refuse_handshake(scope: Mapping[str, Any], send: Send, error: HTTPError, request_id: str) -> None:
    """Answer the upgrade request with `error` as problem+json (or a bare close without the extension)."""
    if _HTTP_RESPONSE not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": ""})
        return
    body = orjson.dumps(error.to_problem(request_id))
    headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()),
    ]
    await send({"type": f"{_HTTP_RESPONSE}.start", "status": error.status, "headers": headers})
    await send({"type": f"{_HTTP_RESPONSE}.body", "body": body, "more_body": False})


async def serve_socket(
    endpoint: SocketEndpoint,
    params: dict[str, str],
    scope: Mapping[str, Any],
    receive: Receive,
    send: Send,
    request_id: str,
    max_message_bytes: int,
) -> None:
    """Run the WebSocket route `endpoint` for one connection, from handshake to close."""
    bound = endpoint.bound
    binder = bound.binder
    assert binder.socket_param is not None and binder.codec is not None
    first = await receive()
    if first["type"] != "websocket.connect":
        return  # the client left before the handshake finished
    try:
        if bound.state.status != "ready":
            raise not_ready_error(bound.state)
        kwargs = binder.bind_parts(params, scope["query_string"], b"", None, _no_request)
    except HTTPError as error:
        await refuse_handshake(scope, send, error, request_id)
        return
    kwargs.update(bound.startup_kwargs())
    socket: WebSocket[Any, Any] = WebSocket(
        receive,
        send,
        binder.codec,
        headers=handshake_headers(scope),
        request_id=request_id,
        max_message_bytes=max_message_bytes,
    )
    kwargs[binder.socket_param] = socket
    await send({"type": "websocket.accept", "headers": [(b"x-request-id", request_id.encode())]})
    await _run(bound, kwargs, socket, scope["path"])


async def _run(bound: BoundRoute, kwargs: dict[str, Any], socket: WebSocket[Any, Any], path: str) -> None:
    try:
        await bound.route.function(**kwargs)
    except WebSocketClosedError:
        return
    except MessageTooLargeError as error:
        await socket.close(MESSAGE_TOO_BIG, str(error))
    except UnsupportedMessageError as error:
        await socket.close(UNSUPPORTED_DATA, str(error))
    except ValueError as error:
        await socket.close(POLICY_VIOLATION, str(error) or "the message was rejected by the route")
    except HTTPError as error:
        if error.status < 500:
            await socket.close(POLICY_VIOLATION, error.detail)
        else:
            await _close_unexpected(socket, error, path)
    except Exception as error:
        await _close_unexpected(socket, error, path)
    else:
        await socket.close(NORMAL_CLOSURE)


async def _close_unexpected(socket: WebSocket[Any, Any], error: Exception, path: str) -> None:
    logger.error(
        "unhandled error in WEBSOCKET %s", path, exc_info=error, extra={"request_id": socket.request_id}
    )
    await socket.close(INTERNAL_ERROR, f"internal error; quote request id {socket.request_id}")


def _no_request() -> Any:
    raise TypeError("a WebSocket route cannot take a quart.Request parameter; use socket.headers")
