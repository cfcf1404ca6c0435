"""What an endpoint client's call can fail with, and when a failed call is tried again.

Retries use exponential backoff with jitter, only where a retry cannot repeat work by surprise:

| failure | retried for |
| --- | --- |
| could not connect | every method (nothing was sent) |
| 400 `{"error": "no workers available"}` (cold start) | every method (the gateway sent nothing on) |
| lost after sending; 502, 503, 504, 429 (`Retry-After` honoured) | idempotent methods, or `retry_unsafe` |

A WebSocket handshake that fails is retried like an idempotent request: the route runs only once
the socket is open. Every other error response raises `EndpointError` with the problem+json body;
an error reported inside an event stream raises `StreamError`.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

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
        error_type = NoWorkersError if is_no_workers(response) else cls
        return error_type(response.status_code, message, problem)


class NoWorkersError(EndpointError):
    """No worker became ready in time (RunPod's 400 'no workers available'), even after retries."""


class EndpointUnavailableError(EndpointError):
    """The endpoint could not be reached, even after retries."""


class StreamError(EndpointError):
    """An event stream ended with an `event: error`: the route failed after the stream began.

    `status` and `problem` are the problem+json the server sent in the event (400 for a
    ValueError raised by the route, 500 with a request id for anything else).
    """

    @classmethod
    def from_problem(cls, data: str) -> StreamError:
        """The error for the data of an `event: error`."""
        try:
            problem = orjson.loads(data)
        except orjson.JSONDecodeError:
            problem = None
        if not isinstance(problem, dict):
            return cls(500, f"the stream failed: {data[:300]}", None)
        status = problem.get("status")
        detail = str(problem.get("detail") or "the stream failed")
        return cls(status if isinstance(status, int) else 500, detail, problem)


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


def is_no_workers(response: httpx.Response) -> bool:
    """Whether `response` is RunPod's cold-start answer, 400 `{"error": "no workers available"}`."""
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


def should_retry_response(response: httpx.Response, safe: bool, policy: RetryPolicy) -> bool:
    """Whether an error answer is worth another try (`safe`: the call may be repeated)."""
    if is_no_workers(response):
        return True
    return safe and response.status_code in policy.statuses


def should_retry_error(error: httpx.TransportError, safe: bool) -> bool:
    """Whether a failed exchange is worth another try: always if nothing was sent, else if `safe`."""
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout) or safe


def delay_after_error(
    policy: RetryPolicy, url: str, error: httpx.TransportError, attempt: int, safe: bool
) -> float:
    """Seconds to wait before retrying after a transport error; raises when it must not retry."""
    if attempt >= policy.attempts - 1 or not should_retry_error(error, safe):
        raise EndpointUnavailableError(0, f"cannot reach {url}: {error}") from error
    return policy.delay(attempt)


def delay_after_response(
    policy: RetryPolicy, response: httpx.Response, attempt: int, safe: bool
) -> float | None:
    """Seconds to wait before retrying this response, or None when it is the answer."""
    if attempt >= policy.attempts - 1 or not should_retry_response(response, safe, policy):
        return None
    return policy.delay(attempt, retry_after_seconds(response))
