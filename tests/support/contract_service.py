"""The worker contract's routes, as a module `podroute serve` can import on any server.

One resource per shape the contract tests need: `live` (with `/execute`), `deployed` (without),
`slow` (a startup hook that waits until the file named by `PODROUTE_TEST_RELEASE_FILE` exists) and
`failing` (a startup hook that raises).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from quart import Response

from podroute import (
    CpuLiveLoadBalancer,
    CpuLoadBalancerSlsResource,
    HTTPError,
    remote,
)
from tests.support.startup import add_model_loader

live = CpuLiveLoadBalancer(name="contract")
deployed = CpuLoadBalancerSlsResource(name="deployed")
slow = CpuLiveLoadBalancer(name="slow")
failing = CpuLiveLoadBalancer(name="failing")


def declare_routes(resource: CpuLiveLoadBalancer | CpuLoadBalancerSlsResource) -> None:
    """Every route the contract tests call, on `resource`."""

    @remote(resource, method="GET", path="/users")
    async def list_users(limit: int = 10) -> dict[str, Any]:
        """List users."""
        return {"users": [], "limit": limit}

    @remote(resource, method="POST", path="/users")
    async def create_user(name: str, age: int = 30) -> dict[str, Any]:
        return {"name": name, "age": age}

    @remote(resource, method="DELETE", path="/users/{user_id}")
    async def delete_user(user_id: int) -> dict[str, Any]:
        return {"deleted": user_id}

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
        raise HTTPError(418, "I only brew tea")

    @remote(resource, method="GET", path="/events")
    async def events(count: int = 3) -> AsyncIterator[dict[str, int]]:
        for index in range(count):
            await asyncio.sleep(0.01)
            yield {"index": index}

    @remote(resource, method="GET", path="/broken-stream")
    async def broken_stream() -> AsyncIterator[dict[str, int]]:
        yield {"index": 0}
        raise ValueError("ran out of input")

    @remote(resource, method="POST", path="/created")
    async def created(name: str) -> Response:
        return Response(f"made {name}", status=201, content_type="text/plain", headers={"Location": "/x/1"})

    @remote(resource, method="GET", path="/thread")
    def which_thread() -> dict[str, bool]:
        return {"main": threading.current_thread() is threading.main_thread()}

    @remote(resource, method="GET", path="/slow")
    async def sleep_for(seconds: float = 1.0) -> dict[str, float]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}


for _resource in (live, deployed, slow, failing):
    declare_routes(_resource)


add_model_loader(slow, wait=True, fail=False)
add_model_loader(failing, wait=False, fail=True)
