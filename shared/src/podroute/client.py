"""Clients for deployed endpoints (the local runtime's gateway or `https://<id>.api.runpod.ai`).

    with EndpointClient(url, api_key) as client:
        client.post("/transform", json={"text": "hi", "operation": "uppercase"})
        client.call(transform, text="hi", operation="uppercase")   # same signature as the route

Retries use exponential backoff with jitter, only where a retry cannot repeat work by surprise:

| failure | retried for |
| --- | --- |
| could not connect | every method (nothing was sent) |
| 400 `{"error": "no workers available"}` (cold start) | every method (the gateway sent nothing on) |
| lost after sending; 502, 503, 504, 429 (`Retry-After` honoured) | idempotent methods, or `retry_unsafe` |

Idempotent methods are GET, HEAD, PUT, DELETE and OPTIONS.

Every other error response raises `EndpointError` carrying the problem+json body.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic_core import to_jsonable_python

from podroute.binding import is_whole_body_type
from podroute.registry import PATH_PARAM_PATTERN, Route, route_of

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
NO_WORKERS = "no workers available"


class EndpointError(Exception):
    """The endpoint answered with an error status; `problem` is its JSON body when it had one."""

    def __init__(self, status: int, message: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.problem = problem or {}

    @classmethod
    def from_response(cls, response: httpx.Response) -> EndpointError:
        """Build the right error type for an error response."""
        problem: dict[str, Any] | None = None
        try:
            body = response.json()
            problem = body if isinstance(body, dict) else None
        except ValueError:
            pass
        message = str((problem or {}).get("detail") or (problem or {}).get("error") or response.text[:300])
        error_type = NoWorkersError if _is_no_workers(response) else cls
        return error_type(response.status_code, message, problem)


class NoWorkersError(EndpointError):
    """No worker became ready in time (RunPod's 400 'no workers available'), even after retries."""


class EndpointUnavailableError(EndpointError):
    """The endpoint could not be reached, even after retries."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry (delay = min(max, base * 2**attempt), with jitter)."""

    attempts: int = 5
    backoff_base_s: float = 0.25
    backoff_max_s: float = 10.0
    jitter: bool = True
    statuses: frozenset[int] = field(default=RETRY_STATUSES)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        if retry_after is not None:
            return min(float(retry_after), 60.0)
        delay = min(self.backoff_max_s, self.backoff_base_s * 2.0**attempt)
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay


def _is_no_workers(response: httpx.Response) -> bool:
    if response.status_code != 400:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == NO_WORKERS


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The response's `Retry-After` in seconds (a number or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.isdigit():
        return float(value)
    parsed = email.utils.parsedate_to_datetime(value)
    return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _should_retry_response(response: httpx.Response, safe: bool, policy: RetryPolicy) -> bool:
    if _is_no_workers(response):
        return True
    return safe and response.status_code in policy.statuses


def _should_retry_error(error: httpx.TransportError, safe: bool) -> bool:
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout) or safe


def _route_request(route: Route, kwargs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    values = dict(kwargs)
    path = PATH_PARAM_PATTERN.sub(lambda m: str(values.pop(m.group(1))), route.path)
    jsonable = to_jsonable_python(values)
    if route.method in ("GET", "DELETE"):
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
        if attempt == self.retry.attempts - 1 or not _should_retry_error(error, safe):
            raise EndpointUnavailableError(0, f"cannot reach {self.url}: {error}") from error
        return self.retry.delay(attempt)

    def _delay_after_response(self, response: httpx.Response, attempt: int, safe: bool) -> float | None:
        """Seconds to wait before retrying this response, or None when it is the answer."""
        if attempt == self.retry.attempts - 1 or not _should_retry_response(response, safe, self.retry):
            return None
        return self.retry.delay(attempt, retry_after_seconds(response))


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
