"""WebSocket routes: the `WebSocket` a route receives, and how its messages are decoded.

    @remote(api, method="WEBSOCKET", path="/echo")
    async def echo(socket: WebSocket[str]) -> None:
        async for text in socket:                 # ends when the client closes
            await socket.send(text)

    @remote(api, method="WEBSOCKET", path="/ask")
    async def ask(socket: WebSocket[Question, Answer]) -> None:
        async for question in socket:             # each message validated as a Question
            await socket.send(Answer(text=question.text.upper()))

The first type argument says what the route receives: `str` (text messages), `bytes` (binary
messages), `str | bytes` (either, as sent), or any other type (a JSON message, text or binary,
validated by pydantic exactly like an HTTP body: unknown keys are rejected). The second, optional,
documents what it sends: `send` writes `str` as a text message, `bytes` as a binary one, and
anything else as JSON text.

How a socket ends (close codes, RFC 6455):

| what happened | close code and reason |
| --- | --- |
| the route returned | 1000 |
| a message did not validate, or the route raised ValueError | 1008, the error's message |
| a message is larger than the limit (`PODROUTE_WS_MAX_MESSAGE_BYTES`, 1 MiB) | 1009 |
| a text message where bytes are expected, or the reverse | 1003 |
| any other exception | 1011, a generic reason with the request id (the traceback is logged) |
| the worker is drained (through the runtime's gateway) | 1001 |
"""

from __future__ import annotations

import types
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Generic, get_args, get_origin

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypeVar

from podroute.responses import encode_json

In = TypeVar("In", default=Any)
Out = TypeVar("Out", default=Any)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
MAX_REASON_BYTES = 123
"""A close frame carries at most 125 bytes: a 2-byte code and this much UTF-8 reason."""


class WebSocketClosedError(Exception):
    """The other end closed the socket (or it was closed); `code` and `reason` say how."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"the WebSocket was closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


class MessageRejectedError(ValueError):
    """A received message does not match the route's message type (the socket closes with 1008)."""


class MessageTooLargeError(Exception):
    """A received message is larger than the limit (the socket closes with 1009)."""


class UnsupportedMessageError(Exception):
    """A text message where binary is expected, or the reverse (the socket closes with 1003)."""


def close_reason(text: str) -> str:
    """`text` cut to what a close frame can carry (123 UTF-8 bytes), on a character boundary."""
    data = text.encode()
    if len(data) <= MAX_REASON_BYTES:
        return text
    return data[: MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


class MessageCodec:
    """Decodes the messages of one WebSocket route according to its `WebSocket[In, Out]` type."""

    def __init__(self, receive_type: Any, send_type: Any, adapter: TypeAdapter[Any] | None) -> None:
        self.receive_type = receive_type
        self.send_type = send_type
        self.adapter = adapter
        self.kind = _kind_of(receive_type)

    @property
    def type_name(self) -> str:
        """The received type as the close reason names it."""
        return getattr(self.receive_type, "__name__", None) or repr(self.receive_type)

    def decode(self, message: Message) -> Any:
        """The value a `websocket.receive` message carries, checked against the route's type."""
        text: str | None = message.get("text")
        data: bytes | None = message.get("bytes")
        if self.kind == "text":
            if text is None:
                raise UnsupportedMessageError("this route takes text messages, not binary ones")
            return text
        if self.kind == "bytes":
            if data is None:
                raise UnsupportedMessageError("this route takes binary messages, not text ones")
            return data
        if self.kind == "raw":
            return text if text is not None else data
        assert self.adapter is not None
        try:
            return self.adapter.validate_json(text if text is not None else (data or b""))
        except ValidationError as error:
            raise MessageRejectedError(self._describe(error)) from None

    def _describe(self, error: ValidationError) -> str:
        items = error.errors(include_url=False, include_input=False, include_context=False)
        if any(item["type"] == "json_invalid" for item in items):
            return f"the message is not valid JSON; send a JSON {self.type_name}"
        fields = "; ".join(f"{'.'.join(map(str, i['loc'])) or 'message'}: {i['msg']}" for i in items[:3])
        return f"the message is not a valid {self.type_name} ({fields})"


def _kind_of(receive_type: Any) -> str:
    if receive_type is str:
        return "text"
    if receive_type is bytes:
        return "bytes"
    if get_origin(receive_type) in (typing.Union, types.UnionType) and set(get_args(receive_type)) == {
        str,
        bytes,
    }:
        return "raw"
    return "json"


def socket_types(annotation: Any) -> tuple[Any, Any] | None:
    """(In, Out) of a `WebSocket[...]` annotation; None when it is not one.

    A bare `WebSocket` receives `str | bytes` as sent.
    """
    if annotation is WebSocket:
        return str | bytes, Any
    if get_origin(annotation) is not WebSocket:
        return None
    args = get_args(annotation)
    return args[0], (args[1] if len(args) > 1 else Any)


def message_size(message: Message) -> int:
    """The bytes a WebSocket message carries (its text as UTF-8)."""
    data: bytes | None = message.get("bytes")
    if data is not None:
        return len(data)
    text: str = message.get("text") or ""
    return len(text) if text.isascii() else len(text.encode())


def _encode(value: Any) -> Message:
    if isinstance(value, str):
        return {"type": "websocket.send", "text": value}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"type": "websocket.send", "bytes": bytes(value)}
    return {"type": "websocket.send", "text": encode_json(value).decode()}


class WebSocket(Generic[In, Out]):
    """One accepted WebSocket connection, as a route function receives it."""

    def __init__(
        self,
        receive: Receive,
        send: Send,
        codec: MessageCodec,
        *,
        headers: Mapping[str, str],
        request_id: str,
        max_message_bytes: int,
    ) -> None:
        self._receive = receive
        self._send = send
        self._codec = codec
        self.headers = headers
        """The handshake request's headers, names lower-cased."""
        self.request_id = request_id
        """The connection's request id (the client's `X-Request-ID` when sane)."""
        self.max_message_bytes = max_message_bytes
        self.closed: WebSocketClosedError | None = None
        """Set once the socket is closed, by either end."""
        self.messages_in = 0
        self.messages_out = 0

    async def receive(self) -> In:
        """The next message, decoded; raises WebSocketClosedError once the client has closed."""
        if self.closed is not None:
            raise self.closed
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self.closed = WebSocketClosedError(int(message.get("code") or 1005), message.get("reason") or "")
            raise self.closed
        if message_size(message) > self.max_message_bytes:
            raise MessageTooLargeError(
                f"the message is larger than the {self.max_message_bytes}-byte limit; send less"
            )
        self.messages_in += 1
        value: In = self._codec.decode(message)
        return value

    def __aiter__(self) -> AsyncIterator[In]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[In]:
        while True:
            try:
                message = await self.receive()
            except WebSocketClosedError:
                return
            yield message

    async def send(self, message: Out) -> None:
        """Send `str` as text, `bytes` as binary, anything else as JSON text."""
        if self.closed is not None:
            raise self.closed
        try:
            await self._send(_encode(message))
        except OSError as error:  # some servers raise once the client has gone
            self.closed = WebSocketClosedError(1006, "the connection was lost")
            raise self.closed from error
        self.messages_out += 1

    async def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the socket with `code` and a reason (cut to 123 bytes); does nothing if closed."""
        if self.closed is not None:
            return
        self.closed = WebSocketClosedError(code, reason)
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": close_reason(reason)})
        except OSError:
            return
