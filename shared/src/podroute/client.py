"""Clients for deployed endpoints (the local runtime's gateway or `https://<id>.api.runpod.ai`).

    with EndpointClient(url, api_key) as client:
        client.post("/transform", json={"text": "hi", "operation": "uppercase"})
        client.call(transform, text="hi", operation="uppercase")   # same signature as the route

        for event in client.stream("/ticks"):                # Server-Sent Events
            print(event.json())
        with client.websocket("/chat") as socket:             # a `websockets` connection, with auth
            socket.send("hi")
            print(socket.recv())

Retries (`podroute.client_policy`) use exponential backoff with jitter, only where a retry cannot
repeat work by surprise; idempotent methods are GET, HEAD, PUT, DELETE and OPTIONS. Every other
error response raises `EndpointError` carrying the problem+json body.

`stream()` yields each event as a `ServerSentEvent`; an `event: error` raises `StreamError` with
the route's problem (status, detail, request id). When the connection breaks mid-stream, a stream
whose events carry ids is resumed, for idempotent methods, by reconnecting with `Last-Event-ID`
(after the server's `retry:` delay, else the backoff); one without ids raises
`EndpointUnavailableError`. `websocket()` opens a WebSocket with the same auth header, retrying a
failed handshake (connect errors, cold start, 429/502/503/504) like an idempotent request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import httpx
from pydantic_core import to_jsonable_python
from websockets.asyncio.client import ClientConnection as AsyncSocket
from websockets.asyncio.client import connect as connect_async
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection as Socket
from websockets.sync.client import connect as connect_sync

from podroute.binding import is_whole_body_type
from podroute.client_policy import (
    IDEMPOTENT_METHODS,
    NO_WORKERS,
    RETRY_STATUSES,
    EndpointError,
    EndpointUnavailableError,
    NoWorkersError,
    RetryPolicy,
    StreamError,
    delay_after_error,
    delay_after_response,
    retry_after_seconds,
)
from podroute.client_streams import EventReader, handshake_answer, socket_target
from podroute.registry import PATH_PARAM_PATTERN, Route, route_of
from podroute.sse import ServerSentEvent

__all__ = [
    "IDEMPOTENT_METHODS",
    "NO_WORKERS",
    "RETRY_STATUSES",
    "AsyncEndpointClient",
    "AsyncSocket",
    "EndpointClient",
    "EndpointError",
    "EndpointUnavailableError",
    "NoWorkersError",
    "RetryPolicy",
    "ServerSentEvent",
    "Socket",
    "StreamError",
    "retry_after_seconds",
]


def _route_request(route: Route, kwargs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    values = dict(kwargs)
    path = PATH_PARAM_PATTERN.sub(lambda m: str(values.pop(m.group(1))), route.path)
    jsonable = to_jsonable_python(values)
    if route.method in ("GET", "DELETE", "WEBSOCKET"):
        return path, {"params": jsonable}
    hints = typing.get_type_hints(route.function)
    if len(values) == 1:
        ((name, value),) = values.items()
        if is_whole_body_type(hints.get(name)):
            return path, {"json": to_jsonable_python(value)}
    return path, {"json": jsonable}


def _decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    if "json" in response.headers.get("content-type", ""):
        return response.json()
    return response.text


class _ClientBase:
    timeout: float

    def __init__(self, url: str, api_key: str | None, retry: RetryPolicy | None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"User-Agent": "podroute-client"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.retry = retry or RetryPolicy()

    def _finish(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise EndpointError.from_response(response)
        return response

    def _delay_after_error(self, error: httpx.TransportError, attempt: int, safe: bool) -> float:
        """Seconds to wait before retrying after a transport error; raises when it must not retry."""
        return delay_after_error(self.retry, self.url, error, attempt, safe)

    def _delay_after_response(self, response: httpx.Response, attempt: int, safe: bool) -> float | None:
        """Seconds to wait before retrying this response, or None when it is the answer."""
        return delay_after_response(self.retry, response, attempt, safe)

    def _socket_options(self, headers: Mapping[str, str] | None) -> dict[str, Any]:
        sent = {k: v for k, v in self.headers.items() if k != "User-Agent"}
        return {
            "additional_headers": {**sent, **(headers or {})},
            "user_agent_header": self.headers["User-Agent"],
            "open_timeout": self.timeout,
        }

    def _socket_delay(self, error: Exception, attempt: int) -> float:
        """Seconds to wait before another handshake; raises EndpointError when there is none."""
        if isinstance(error, InvalidStatus):
            answer = handshake_answer(error)
            delay = self._delay_after_response(answer, attempt, safe=True)
            if delay is None:
                raise EndpointError.from_response(answer) from None
            return delay
        transport = httpx.ConnectError(str(error))
        return self._delay_after_error(transport, attempt, safe=True)


class EndpointClient(_ClientBase):
    """A synchronous client for one endpoint."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, retry)
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.url, headers=self.headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(self, method: str, path: str, *, retry_unsafe: bool = False, **kwargs: Any) -> httpx.Response:
        """Send a request with retries; raises EndpointError for an error status."""
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS or retry_unsafe
        for attempt in range(self.retry.attempts):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                time.sleep(self._delay_after_error(error, attempt, safe))
                continue
            delay = self._delay_after_response(response, attempt, safe)
            if delay is None:
                return self._finish(response)
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt always returns or raises")

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET and decode the body."""
        return _decode(self.request("GET", path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> Any:
        """POST and decode the body."""
        return _decode(self.request("POST", path, **kwargs))

    def put(self, path: str, **kwargs: Any) -> Any:
        """PUT and decode the body."""
        return _decode(self.request("PUT", path, **kwargs))

    def patch(self, path: str, **kwargs: Any) -> Any:
        """PATCH and decode the body."""
        return _decode(self.request("PATCH", path, **kwargs))

    def delete(self, path: str, **kwargs: Any) -> Any:
        """DELETE and decode the body."""
        return _decode(self.request("DELETE", path, **kwargs))

    def call(self, function: Callable[..., Any], *, retry_unsafe: bool = False, **kwargs: Any) -> Any:
        """Call the deployed route of an `@remote` function with its own keyword arguments."""
        route = route_of(function)
        path, options = _route_request(route, kwargs)
        return _decode(self.request(route.method, path, retry_unsafe=retry_unsafe, **options))

    def stream(
        self, path: str, *, method: str = "GET", retry_unsafe: bool = False, **kwargs: Any
    ) -> Iterator[ServerSentEvent]:
        """The events of an event stream; raises StreamError for an `event: error` (see module doc)."""
        method = method.upper()
        reader = EventReader(self.retry, self.url, method in IDEMPOTENT_METHODS or retry_unsafe)
        headers = dict(kwargs.pop("headers", None) or {})
        while True:
            try:
                with self._http.stream(
                    method, path, headers={**headers, **reader.headers()}, timeout=reader.timeout, **kwargs
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        time.sleep(reader.delay_after_answer(response))
                        continue
                    parser = reader.connected()
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            yield reader.take(event)
                    return
            except httpx.TransportError as error:
                time.sleep(reader.delay_after_break(error))

    @contextlib.contextmanager
    def websocket(
        self, path: str, *, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> Iterator[Socket]:
        """Open a WebSocket to `path` (query `params`) with the endpoint's auth; closed after the block.

        Yields a `websockets` connection (`send`, `recv`, iteration, `close_code`); a refused
        handshake raises EndpointError with the server's problem+json.
        """
        url = socket_target(self.url, path, params)
        options = self._socket_options(headers)
        for attempt in range(self.retry.attempts):
            try:
                socket = connect_sync(url, **options)
            except (InvalidStatus, OSError, TimeoutError) as error:
                time.sleep(self._socket_delay(error, attempt))
                continue
            with socket:
                yield socket
            return
        raise AssertionError("unreachable: the last attempt always returns or raises")


class AsyncEndpointClient(_ClientBase):
    """An asyncio client for one endpoint (same behaviour as EndpointClient)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, api_key, retry)
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncEndpointClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def request(
        self, method: str, path: str, *, retry_unsafe: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """Send a request with retries; raises EndpointError for an error status."""
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS or retry_unsafe
        for attempt in range(self.retry.attempts):
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                await asyncio.sleep(self._delay_after_error(error, attempt, safe))
                continue
            delay = self._delay_after_response(response, attempt, safe)
            if delay is None:
                return self._finish(response)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt always returns or raises")

    async def get(self, path: str, **kwargs: Any) -> Any:
        """GET and decode the body."""
        return _decode(await self.request("GET", path, **kwargs))

    async def post(self, path: str, **kwargs: Any) -> Any:
        """POST and decode the body."""
        return _decode(await self.request("POST", path, **kwargs))

    async def put(self, path: str, **kwargs: Any) -> Any:
        """PUT and decode the body."""
        return _decode(await self.request("PUT", path, **kwargs))

    async def patch(self, path: str, **kwargs: Any) -> Any:
        """PATCH and decode the body."""
        return _decode(await self.request("PATCH", path, **kwargs))

    async def delete(self, path: str, **kwargs: Any) -> Any:
        """DELETE and decode the body."""
        return _decode(await self.request("DELETE", path, **kwargs))

    async def call(self, function: Callable[..., Any], *, retry_unsafe: bool = False, **kwargs: Any) -> Any:
        """Call the deployed route of an `@remote` function with its own keyword arguments."""
        route = route_of(function)
        path, options = _route_request(route, kwargs)
        return _decode(await self.request(route.method, path, retry_unsafe=retry_unsafe, **options))

    async def stream(
        self, path: str, *, method: str = "GET", retry_unsafe: bool = False, **kwargs: Any
    ) -> AsyncIterator[ServerSentEvent]:
        """The events of an event stream; raises StreamError for an `event: error` (see module doc)."""
        method = method.upper()
        reader = EventReader(self.retry, self.url, method in IDEMPOTENT_METHODS or retry_unsafe)
        headers = dict(kwargs.pop("headers", None) or {})
        while True:
            try:
                async with self._http.stream(
                    method, path, headers={**headers, **reader.headers()}, timeout=reader.timeout, **kwargs
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        await asyncio.sleep(reader.delay_after_answer(response))
                        continue
                    parser = reader.connected()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            yield reader.take(event)
                    return
            except httpx.TransportError as error:
                await asyncio.sleep(reader.delay_after_break(error))

    @contextlib.asynccontextmanager
    async def websocket(
        self, path: str, *, params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[AsyncSocket]:
        """Open a WebSocket to `path` (query `params`) with the endpoint's auth; closed after the block.

        Yields a `websockets` asyncio connection; a refused handshake raises EndpointError.
        """
        url = socket_target(self.url, path, params)
        options = self._socket_options(headers)
        for attempt in range(self.retry.attempts):
            try:
                socket = await connect_async(url, **options)
            except (InvalidStatus, OSError, TimeoutError) as error:
                await asyncio.sleep(self._socket_delay(error, attempt))
                continue
            async with socket:
                yield socket
            return
        raise AssertionError("unreachable: the last attempt always returns or raises")
