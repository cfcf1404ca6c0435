"""The golden test's routes: every route shape a worker serves (declared by the caller's resource).

`declare_routes` records nothing at import; `tests.support.golden_service` declares them on the
resources `podroute serve` runs, and the golden test's dev-shaped app declares them in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from quart import Request, Response
from typing_extensions import TypedDict

from podroute import (
    CpuLiveLoadBalancer,
    CpuLoadBalancerSlsResource,
    HTTPError,
    WebSocket,
    accepts,
    remote,
)


class Item(BaseModel):
    name: str
    qty: int = 1


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Tag(TypedDict):
    label: str


def declare_routes(resource: CpuLiveLoadBalancer | CpuLoadBalancerSlsResource) -> None:
    """Every route shape: query, path, body fields, whole-body types, request, decoder, SSE, sync."""

    @remote(resource, method="GET", path="/users")
    async def list_users(limit: int = 10, tags: list[str] | None = None) -> dict[str, Any]:
        return {"users": [], "limit": limit, "tags": tags}

    @remote(resource, method="POST", path="/users")
    async def create_user(name: str, age: int = 30) -> dict[str, Any]:
        return {"name": name, "age": age}

    @remote(resource, method="DELETE", path="/users/{user_id}")
    async def delete_user(user_id: int, hard: bool = False) -> dict[str, Any]:
        return {"deleted": user_id, "hard": hard}

    @remote(resource, method="PUT", path="/users/{user_id}/name/{first}")
    async def rename_user(user_id: int, first: str, last: str = "") -> dict[str, Any]:
        return {"user_id": user_id, "first": first, "last": last}

    @remote(resource, method="POST", path="/check")
    async def check(text: str) -> dict[str, Any]:
        if not text.strip():
            raise ValueError("text must not be empty")
        return {"ok": True}

    @remote(resource, method="GET", path="/crash")
    async def crash() -> dict[str, Any]:
        raise RuntimeError("database password is hunter2")

    @remote(resource, method="GET", path="/teapot")
    async def teapot() -> None:
        raise HTTPError(418, "I only brew tea", headers={"Retry-After": "7"})

    @remote(resource, method="GET", path="/events")
    async def events(count: int = 3) -> AsyncIterator[dict[str, int]]:
        for index in range(count):
            await asyncio.sleep(0.001)
            yield {"index": index}

    @remote(resource, method="GET", path="/broken-stream")
    async def broken_stream() -> AsyncIterator[dict[str, int]]:
        yield {"index": 0}
        raise ValueError("ran out of input")

    @remote(resource, method="GET", path="/crashing-stream")
    async def crashing_stream() -> AsyncIterator[str]:
        yield "first"
        raise RuntimeError("secret stream failure")

    @remote(resource, method="POST", path="/created")
    async def created(name: str) -> Response:
        return Response(f"made {name}", status=201, content_type="text/plain", headers={"Location": "/x/1"})

    @remote(resource, method="GET", path="/thread")
    def which_thread() -> dict[str, bool]:
        return {"main": threading.current_thread() is threading.main_thread()}

    @remote(resource, method="POST", path="/items")
    async def add_item(item: Item) -> Item:
        return item

    @remote(resource, method="PATCH", path="/points")
    async def move(point: Point) -> Point:
        return point

    @remote(resource, method="POST", path="/tags")
    async def add_tag(tag: Tag) -> Tag:
        return tag

    @remote(resource, method="GET", path="/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        return {"agent": request.headers.get("User-Agent"), "path": request.path}

    def decode_csv(raw: bytes, request: Request) -> dict[str, Any]:
        """Comma-separated integers."""
        return {"values": [int(v) for v in raw.decode().split(",")]}

    @remote(resource, method="POST", path="/sum")
    @accepts("text/csv", decode_csv)
    async def total(values: list[int]) -> int:
        return sum(values)

    @remote(resource, method="GET", path="/none")
    async def nothing() -> None:
        return None

    @remote(resource, method="WEBSOCKET", path="/socket")
    async def socket(channel: WebSocket[str]) -> None:
        async for message in channel:
            await channel.send(message)
