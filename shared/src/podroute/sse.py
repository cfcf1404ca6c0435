"""Server-Sent Events: the frames a streaming route sends, and reading them back on the client.

A streaming route (an async generator) yields values, each sent as one `data:` event (JSON, or the
text itself for a `str`). To give an event an id, a name or a reconnection delay, yield a
`ServerSentEvent`; a route whose events carry ids can be resumed: declare a `LastEventId` parameter
(`podroute.params`) and the client's `stream()` reconnects after a dropped connection with the
`Last-Event-ID` header, from which the route continues.

    @remote(api, method="GET", path="/ticks")
    async def ticks(last_event_id: LastEventId = None) -> AsyncIterator[ServerSentEvent]:
        start = int(last_event_id) + 1 if last_event_id else 0
        for index in range(start, 100):
            yield ServerSentEvent({"tick": index}, id=str(index))

An error raised mid-stream ends it with a final `event: error` whose data is the problem+json
body (`podroute.responses.sse_frames`); the client raises it as `StreamError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

ERROR_EVENT = "error"
"""The name of the event that carries a stream's error as problem+json."""


@dataclass(frozen=True)
class ServerSentEvent:
    """One event: what a route yields to set its id/name, and what the client's `stream()` yields.

    On the route side `data` is any value (sent as JSON, or as-is for a `str`); on the client side
    it is the event's text (`json()` decodes it).
    """

    data: Any
    event: str | None = None
    id: str | None = None
    retry_ms: int | None = None

    def json(self) -> Any:
        """The data decoded as JSON."""
        return orjson.loads(self.data)


def encode_event(
    data: bytes, event: str | None = None, event_id: str | None = None, retry_ms: int | None = None
) -> bytes:
    """One SSE frame; data spanning lines is sent as one `data:` line per line."""
    head = b""
    if event:
        head += b"event: " + _field(event) + b"\n"
    if event_id is not None:
        head += b"id: " + _field(event_id) + b"\n"
    if retry_ms is not None:
        head += b"retry: %d\n" % retry_ms
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
    return head + b"data: " + data + b"\n\n"


def _field(value: str) -> bytes:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"an SSE event name or id cannot contain line breaks or NUL: {value!r}")
    return value.encode()


class EventParser:
    """Turns the lines of an event stream into events (the WHATWG rules; comments ignored)."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line (without its line break); returns an event when `line` ends one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data and self._id is None:
            self._event = self._retry = None
            return None
        event = ServerSentEvent("\n".join(self._data), self._event, self._id, self._retry)
        self._data, self._event, self._id, self._retry = [], None, None, None
        return event
