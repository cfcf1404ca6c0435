"""The floor: the CPU service's three routes as a bare ASGI app, with no framework at all.

    python -m bench.floor_app --port PORT

What any Python worker that validates its bodies with pydantic and answers JSON pays at the
least, on the same uvicorn (httptools + uvloop), started the leanest way (no CLI, no logging
config, no WebSocket or lifespan support): the bench shows its start-up time and its p99 ÷ p50
beside podroute's, so what the machine allows is not mistaken for what podroute adds. No access
log, no request ids, no error bodies beyond a status: nobody would deploy this. The handlers repeat
the cpu service's (`services/cpu/endpoint.py`): importing those would import podroute.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

Message = MutableMapping[str, Any]


class ValidateBody(BaseModel):
    """The body of POST /validate."""

    text: str


class TransformBody(BaseModel):
    """The body of POST /transform."""

    text: str
    operation: str


_OPERATIONS: dict[str, Callable[[str], str]] = {
    "uppercase": str.upper,
    "lowercase": str.lower,
    "reverse": lambda text: text[::-1],
    "title": str.title,
}
_HEALTH = orjson.dumps({"status": "healthy", "service": "cpu"})


def _validate(body: bytes) -> Any:
    text = ValidateBody.model_validate_json(body).text
    words = text.split()
    return {
        "status": "success",
        "is_valid": True,
        "character_count": len(text),
        "word_count": len(words),
        "average_word_length": round(sum(len(w) for w in words) / len(words), 2) if words else 0.0,
    }


def _transform(body: bytes) -> Any:
    parsed = TransformBody.model_validate_json(body)
    transform = _OPERATIONS.get(parsed.operation)
    if transform is None:
        raise ValueError(parsed.operation)
    return {
        "status": "success",
        "original": parsed.text,
        "transformed": transform(parsed.text),
        "operation": parsed.operation,
    }


_POSTS = {"/validate": _validate, "/transform": _transform}


async def _read(receive: Callable[[], Awaitable[Message]]) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    while message.get("more_body"):
        message = await receive()
        body += message.get("body", b"")
    return body


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    """GET /health, POST /validate and POST /transform; 404, 405, 400 and 422 as bare statuses."""
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    status, payload = 404, b""
    if path == "/health":
        status, payload = (200, _HEALTH) if method == "GET" else (405, b"")
    elif path in _POSTS:
        if method != "POST":
            status = 405
        else:
            try:
                status, payload = 200, orjson.dumps(_POSTS[path](await _read(receive)))
            except ValidationError:
                status = 422
            except ValueError:
                status = 400
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    """Serve the floor app on 127.0.0.1:PORT until SIGTERM."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", ws="none",
        lifespan="off", log_config=None, access_log=False, timeout_keep_alive=600,
    )  # fmt: skip
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
