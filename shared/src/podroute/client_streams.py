"""The client's side of streams: reading an event stream across reconnects, and WebSocket URLs.

`EventReader` holds what one `stream()` call knows between connections (the last event id, the
server's `retry:` delay, how many tries are spent) and decides whether a broken stream may be
resumed; the sync and asyncio clients run the same reader over their own connections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from websockets.exceptions import InvalidStatus

from podroute.client_policy import (
    EndpointError,
    EndpointUnavailableError,
    RetryPolicy,
    StreamError,
    delay_after_error,
    delay_after_response,
)
from podroute.sse import ERROR_EVENT, EventParser, ServerSentEvent


class EventReader:
    """One `stream()` call: its events' ids and whether, and when, to connect again."""

    timeout = httpx.Timeout(60.0, read=None)
    """A stream may stay quiet for as long as the route likes; connecting still times out."""

    def __init__(self, policy: RetryPolicy, url: str, resumable: bool) -> None:
        self.policy = policy
        self.url = url
        self.resumable = resumable
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self.attempt = 0
        self.received = False

    def headers(self) -> dict[str, str]:
        """Headers for the next connection: SSE, and `Last-Event-ID` when resuming."""
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        return headers

    def connected(self) -> EventParser:
        """A fresh parser for a new connection."""
        return EventParser()

    def take(self, event: ServerSentEvent) -> ServerSentEvent:
        """Note the event's id and retry delay; raises StreamError for an `event: error`."""
        self.received = True
        if event.id is not None:
            self.last_id = event.id
        if event.retry_ms is not None:
            self.retry_ms = event.retry_ms
        if event.event == ERROR_EVENT:
            raise StreamError.from_problem(event.data)
        return event

    def delay_after_answer(self, response: httpx.Response) -> float:
        """Seconds before trying again after an error status; raises EndpointError if it is final."""
        delay = delay_after_response(self.policy, response, self._next_attempt(), self.resumable)
        if delay is None:
            raise EndpointError.from_response(response)
        return delay

    def delay_after_break(self, error: httpx.TransportError) -> float:
        """Seconds before reconnecting after the connection failed or broke; raises if it must not.

        Nothing received yet: retried like any request. Mid-stream: resumed only for a resumable
        call whose events carry ids, with `Last-Event-ID`, after the server's `retry:` delay.
        """
        attempt = self._next_attempt()
        if not self.received:
            return delay_after_error(self.policy, self.url, error, attempt, self.resumable)
        if self.last_id is None or not self.resumable or attempt >= self.policy.attempts - 1:
            after = f"event {self.last_id!r}" if self.last_id is not None else "events without ids"
            raise EndpointUnavailableError(
                0, f"the event stream from {self.url} broke after {after} and cannot be resumed: {error}"
            ) from error
        return self.retry_ms / 1000 if self.retry_ms is not None else self.policy.delay(attempt)

    def _next_attempt(self) -> int:
        self.attempt += 1
        return self.attempt - 1


def socket_target(base: str, path: str, params: Mapping[str, Any] | None) -> str:
    """The ws:// (or wss://) URL of `path` under the endpoint's base URL, with query `params`."""
    url = httpx.URL(base + path, params=params or None)
    scheme = "wss" if url.scheme == "https" else "ws"
    return str(url.copy_with(scheme=scheme))


def handshake_answer(error: InvalidStatus) -> httpx.Response:
    """A refused WebSocket handshake as an httpx response, for the client's error mapping."""
    answer = error.response
    return httpx.Response(
        answer.status_code, headers=list(answer.headers.raw_items()), content=bytes(answer.body or b"")
    )
