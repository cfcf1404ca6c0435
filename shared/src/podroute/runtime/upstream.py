"""A small HTTP/1.1 client for the gateway's hop to its workers, with pooled keep-alive connections.

The gateway talks to workers on loopback only, so this client does just what that hop needs: write a
request head and a streamed body, read a response head, and iterate the response body
(content-length, chunked or until close) chunk by chunk without joining or copying. A connection
goes back to the pool only after a complete exchange that both sides agreed to keep alive; idle
connections are closed after `idle_s`, and at once when the worker has closed its end.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

READ_SIZE = 256 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class UpstreamError(Exception):
    """The exchange with a worker failed (connection refused, reset, or a malformed answer)."""


class UpstreamConnectError(UpstreamError):
    """No connection to the worker could be opened."""


class StaleConnectionError(UpstreamError):
    """A pooled connection turned out to be closed by the worker before it answered anything:
    the request can be sent again on a fresh connection."""


class DescriptorLimitError(UpstreamError):
    """The gateway process has no file descriptor left to open a connection with."""


@dataclass(frozen=True)
class ResponseHead:
    """A worker's status line and headers (names lower-cased, values as sent), and the body framing."""

    status: int
    headers: list[tuple[bytes, bytes]]
    length: int | None
    chunked: bool
    keep_alive: bool


class UpstreamConnection:
    """One keep-alive connection to a worker."""

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.port = port
        self.reader = reader
        self.writer = writer
        self.reused = False
        self.idle_since = time.monotonic()
        self.reusable = False

    @property
    def closed(self) -> bool:
        """Whether the worker closed its end or the transport is gone."""
        return self.reader.at_eof() or self.writer.transport.is_closing()

    async def write(self, data: bytes) -> None:
        """Send bytes, waiting only when the worker is slower than the client."""
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > READ_SIZE:
            await self.flush()

    async def flush(self) -> None:
        """Wait until what was written has been handed to the kernel."""
        try:
            await self.writer.drain()
        except ConnectionError as error:
            raise self._lost(error) from error

    def _lost(self, error: Exception) -> UpstreamError:
        if self.reused:
            return StaleConnectionError(f"the pooled connection to port {self.port} was closed: {error}")
        return UpstreamError(f"the connection to port {self.port} broke: {error}")

    async def read_head(self) -> ResponseHead:
        """The next final (non-1xx) response head."""
        while True:
            try:
                raw = await self.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as error:
                if not error.partial:
                    raise self._lost(error) from error
                raise UpstreamError("the worker closed the connection in the middle of its answer") from error
            except ConnectionError as error:
                raise self._lost(error) from error
            except asyncio.LimitOverrunError as error:
                raise UpstreamError("the worker's response headers are too large") from error
            head = _parse_head(raw)
            if head.status >= 200:
                return head

    async def iter_body(self, head: ResponseHead, method: str) -> AsyncIterator[bytes]:
        """The response body in chunks as they arrive; marks the connection reusable at its end."""
        if method == "HEAD" or head.status in _NO_BODY_STATUSES:
            self.reusable = head.keep_alive
            return
        if head.chunked:
            async for chunk in self._iter_chunked():
                yield chunk
        elif head.length is not None:
            remaining = head.length
            while remaining:
                chunk = await self.reader.read(min(remaining, READ_SIZE))
                if not chunk:
                    raise UpstreamError("the worker closed the connection in the middle of its answer")
                remaining -= len(chunk)
                yield chunk
        else:
            while chunk := await self.reader.read(READ_SIZE):
                yield chunk
            return
        self.reusable = head.keep_alive

    async def _iter_chunked(self) -> AsyncIterator[bytes]:
        try:
            while True:
                line = await self.reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while await self.reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers are not forwarded
                    return
                chunk = await self.reader.readexactly(size)
                await self.reader.readexactly(2)
                yield chunk
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            raise UpstreamError("the worker sent a broken chunked body") from error

    def close(self) -> None:
        """Close the connection (it is not reused)."""
        self.reusable = False
        self.writer.close()


def _parse_head(raw: bytes) -> ResponseHead:
    lines = raw[:-4].split(b"\r\n")
    status_line = lines[0]
    try:
        status = int(status_line[9:12])
    except ValueError:
        raise UpstreamError(f"the worker sent a malformed status line {status_line[:40]!r}") from None
    keep_alive = status_line.startswith(b"HTTP/1.1")
    length: int | None = None
    chunked = False
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise UpstreamError(f"the worker sent a malformed content-length {value[:20]!r}") from None
        elif name == b"transfer-encoding":
            chunked = value.lower().endswith(b"chunked")
        elif name == b"connection":
            keep_alive = keep_alive and b"close" not in value.lower()
        headers.append((name, value))
    if chunked:
        length = None
    return ResponseHead(status, headers, length, chunked, keep_alive)


class UpstreamPool:
    """Keep-alive connections to workers on 127.0.0.1, by port."""

    def __init__(self, max_idle_per_port: int = 64, idle_s: float = 15.0) -> None:
        self.max_idle_per_port = max_idle_per_port
        self.idle_s = idle_s
        self._idle: dict[int, list[UpstreamConnection]] = {}

    async def connect(self, port: int) -> UpstreamConnection:
        """An idle pooled connection to `port`, or a new one."""
        idle = self._idle.get(port)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                connection.reused = True
                connection.reusable = False
                return connection
            connection.close()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=READ_SIZE)
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE):
                raise DescriptorLimitError(str(error)) from error
            raise UpstreamConnectError(f"cannot connect to 127.0.0.1:{port}: {error}") from error
        return UpstreamConnection(port, reader, writer)

    def put_back(self, connection: UpstreamConnection) -> None:
        """Return a connection after an exchange; it is closed unless it can serve another."""
        idle = self._idle.setdefault(connection.port, [])
        if not connection.reusable or connection.closed or len(idle) >= self.max_idle_per_port:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def close_idle(self, older_than_s: float | None = None) -> int:
        """Close idle connections unused for `older_than_s` (default `idle_s`) or closed by the
        worker; returns how many were closed."""
        limit = self.idle_s if older_than_s is None else older_than_s
        now = time.monotonic()
        closed = 0
        for port, idle in list(self._idle.items()):
            keep = [c for c in idle if not c.closed and now - c.idle_since < limit]
            for connection in idle:
                if connection not in keep:
                    connection.close()
                    closed += 1
            if keep:
                self._idle[port] = keep
            else:
                del self._idle[port]
        return closed

    @property
    def idle_count(self) -> int:
        """Connections waiting in the pool."""
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> None:
        """Close every idle connection."""
        self.close_idle(older_than_s=0)
