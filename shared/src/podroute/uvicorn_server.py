"""uvicorn as podroute runs it: a bounded request head, a header timeout, exit 0 after draining.

Imported only when a server runs on uvicorn (`podroute.server`), so podroute works without it.
WebSocket upgrades go to uvicorn's sans-I/O `websockets` protocol, imported on the first upgrade
(`lazy_websocket_protocol`): loading it costs a worker start-up time even when it serves none. An
upgrade that `websockets` itself refuses (a request line or header line over 8 KiB, more than 128
header fields, no valid request) gets the answer `websockets` made for it (414, 431) and a close:
uvicorn 0.54 never writes that answer, so the client waited forever and the server then failed
its shutdown on the half-answered connection.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import signal
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from podroute.settings import ServerSettings

_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/problem+json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


def limited_httptools_protocol(settings: ServerSettings) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a bound on the request head and a header timeout.

    The request line plus headers may take `max_header_bytes` (431 and close beyond, checked as the
    bytes arrive, so a huge header is never held in full), and must arrive within
    `header_timeout` seconds of the connection opening or the request starting (closed after).
    """
    limit = settings.max_header_bytes
    header_timeout = settings.header_timeout

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        _head_bytes = 0
        _field_bytes = 0
        _in_head = True
        _head_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._in_head and not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > limit and not self.transport.is_closing():
                self._refuse_head()

        def _refuse_head(self) -> None:
            body = (
                b'{"type":"about:blank","title":"Request Header Fields Too Large","status":431,'
                b'"detail":"the request line and headers are larger than %d bytes; send smaller headers"}'
                % limit
            )
            self.transport.write(_HEAD_TOO_LARGE % (len(body), body))
            self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._in_head:
                self._in_head = True
                self._head_bytes = 0
                self._arm_head_timer()

        def on_url(self, url: bytes) -> None:
            self._field_bytes += len(url)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._field_bytes += len(name) + len(value) + 4
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            too_large = self._field_bytes > limit
            self._head_bytes = self._field_bytes = 0
            if too_large:
                self._refuse_head()
                return
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

    return LimitedHttpToolsProtocol


_WEBSOCKET_PROTOCOL = ("uvicorn.protocols.websockets.websockets_sansio_impl", "WebSocketsSansIOProtocol")


def lazy_websocket_protocol(**kwargs: Any) -> asyncio.Protocol:
    """uvicorn's `websockets-sansio` protocol for one upgraded connection, imported on first use.

    uvicorn calls `Config.ws` with keyword arguments for each upgrade, so a function does as well
    as the class; the `websockets` package then loads on the first WebSocket, not at start-up.
    """
    return _websocket_protocol()(**kwargs)


@functools.cache
def _websocket_protocol() -> type[asyncio.Protocol]:
    module, name = _WEBSOCKET_PROTOCOL
    base: Any = getattr(importlib.import_module(module), name)

    class AnsweringWebSocketProtocol(base):  # type: ignore[misc]  # uvicorn's class is untyped here
        """Writes the answer `websockets` made to a handshake it refused, then closes."""

        handshake_complete: bool
        close_sent: bool

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.handshake_initiated or self.close_sent or self.conn.handshake_exc is None:
                return
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.handshake_complete = True  # as uvicorn marks a refusal of its own, so that
            self.close_sent = True  # its shutdown closes this connection instead of answering again
            self.transport.close()

    return AnsweringWebSocketProtocol


class GracefulUvicornServer(uvicorn.Server):
    """uvicorn's server, exiting with status 0 after a graceful SIGTERM/SIGINT shutdown.

    uvicorn re-raises the signal once it has drained, so the process dies by the signal (status
    -15); a worker that drained cleanly should say so, as Hypercorn's does.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start the graceful shutdown (a second SIGINT forces it), without re-raising later."""
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True
