"""Route return values -> HTTP responses.

dicts, lists, scalars, pydantic models, dataclasses, numpy arrays and tensors become JSON (orjson);
a Quart `Response` passes through; an async generator streams as Server-Sent Events (`sse_frames`,
written by `podroute.dispatch`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel

from podroute.errors import HTTPError, problem_body
from podroute.sse import ERROR_EVENT, ServerSentEvent, encode_event

JSON_CONTENT_TYPE = "application/json"
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

logger = logging.getLogger("podroute.responses")


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    tolist = getattr(value, "tolist", None)  # torch tensors, numpy scalars of odd dtypes
    if callable(tolist):
        return tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot serialise a value of type {type(value).__name__} as JSON")


def encode_json(value: Any) -> bytes:
    """Serialise a route's return value to JSON bytes."""
    if isinstance(value, BaseModel):
        return value.__pydantic_serializer__.to_json(value)
    return orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS)


def _frame(item: Any) -> bytes:
    if isinstance(item, ServerSentEvent):
        return encode_event(_data_of(item.data), item.event, item.id, item.retry_ms)
    return encode_event(_data_of(item))


def _data_of(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else encode_json(value)


async def sse_frames(stream: AsyncIterator[Any], request_id: str) -> AsyncIterator[bytes]:
    """Server-Sent Events frames (`data: <json>`, or `ServerSentEvent`s) for an async generator's items.

    An error raised mid-stream is sent as a final `event: error` carrying a problem object, since
    the 200 status has already gone out: `HTTPError` with its status, `ValueError` as 400 with its
    message, anything else as a generic 500 naming the request id (the traceback goes to the log).
    """
    try:
        async for item in stream:
            yield _frame(item)
    except HTTPError as error:
        yield encode_event(orjson.dumps(error.to_problem(request_id)), ERROR_EVENT)
    except ValueError as error:
        yield encode_event(orjson.dumps(problem_body(400, str(error), request_id)), ERROR_EVENT)
    except Exception:
        logger.exception("stream failed", extra={"request_id": request_id})
        detail = f"the stream failed on the server; quote request id {request_id} when reporting it"
        yield encode_event(orjson.dumps(problem_body(500, detail, request_id)), ERROR_EVENT)
