"""The endpoint clients: what they retry, what they don't, and calls by function signature."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel
from quart import Quart, Response, request

from podroute import CpuLiveLoadBalancer, Registry, remote
from podroute.client import (
    AsyncEndpointClient,
    EndpointClient,
    EndpointError,
    EndpointUnavailableError,
    NoWorkersError,
    RetryPolicy,
)
from tests.helpers import free_port, hypercorn_server

FAST = RetryPolicy(attempts=4, backoff_base_s=0.01, backoff_max_s=0.05)


class Order(BaseModel):
    item: str
    qty: int


def scripted_app(hits: Counter[str]) -> Quart:
    """Answers each path with a scripted sequence of statuses, then 200."""
    app = Quart(__name__)
    scripts: dict[str, list[tuple[int, bytes, dict[str, str]]]] = {
        "/flaky": [(503, b"{}", {}), (502, b"{}", {})],
        "/cold": [(400, b'{"error": "no workers available"}', {})] * 2,
        "/busy": [(429, b"{}", {"Retry-After": "1"})],
        "/always-down": [(503, b"{}", {})] * 10,
        "/nope": [(404, b'{"type": "about:blank", "status": 404, "detail": "no such thing"}', {})] * 10,
    }

    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
    async def handle(path: str) -> Response:
        key = f"/{path}"
        hits[key] += 1
        script = scripts.get(key, [])
        if hits[key] <= len(script):
            status, body, headers = script[hits[key] - 1]
            return Response(body, status=status, headers=headers, content_type="application/problem+json")
        body_json = await request.get_json(silent=True)
        echo = {
            "method": request.method,
            "args": dict(request.args),
            "json": body_json,
            "auth": request.headers.get("Authorization"),
        }
        return Response(orjson.dumps(echo), content_type="application/json")

    return app


@pytest.fixture
def server() -> Iterator[tuple[str, Counter[str]]]:
    hits: Counter[str] = Counter()
    app = scripted_app(hits)
    with hypercorn_server(app) as url:
        yield url, hits


def test_idempotent_requests_retry_5xx_and_send_the_key(server: tuple[str, Counter[str]]) -> None:
    url, hits = server
    with EndpointClient(url, "key-123", retry=FAST) as client:
        body = client.get("/flaky", params={"a": "1"})
    assert hits["/flaky"] == 3
    assert body == {"method": "GET", "args": {"a": "1"}, "json": None, "auth": "Bearer key-123"}


def test_post_is_not_retried_on_5xx_unless_asked(server: tuple[str, Counter[str]]) -> None:
    url, hits = server
    with EndpointClient(url, retry=FAST) as client:
        with pytest.raises(EndpointError) as error:
            client.post("/flaky", json={"x": 1})
        assert error.value.status == 503 and hits["/flaky"] == 1
        assert client.post("/flaky", json={"x": 1}, retry_unsafe=True)["json"] == {"x": 1}


def test_no_workers_during_cold_start_is_retried_for_every_method(server: tuple[str, Counter[str]]) -> None:
    url, hits = server
    with EndpointClient(url, retry=FAST) as client:
        assert client.post("/cold", json={})["method"] == "POST"
    assert hits["/cold"] == 3


def test_retry_after_is_honoured(server: tuple[str, Counter[str]]) -> None:
    url, hits = server
    started = time.monotonic()
    with EndpointClient(url, retry=FAST) as client:
        client.get("/busy")
    assert hits["/busy"] == 2 and time.monotonic() - started >= 0.9


def test_errors_are_typed_and_carry_the_problem(server: tuple[str, Counter[str]]) -> None:
    url, hits = server
    with EndpointClient(url, retry=FAST) as client:
        with pytest.raises(EndpointError) as error:
            client.get("/nope")
        assert error.value.status == 404 and error.value.problem["detail"] == "no such thing"
        assert hits["/nope"] == 1
        with pytest.raises(EndpointError) as down:
            client.get("/always-down")
        assert down.value.status == 503 and hits["/always-down"] == FAST.attempts


def test_no_workers_after_all_retries_is_its_own_type(server: tuple[str, Counter[str]]) -> None:
    url, _ = server
    retry = RetryPolicy(attempts=2, backoff_base_s=0.01)
    with EndpointClient(url, retry=retry) as client, pytest.raises(NoWorkersError):
        client.get("/cold")


def test_unreachable_endpoint() -> None:
    client = EndpointClient(f"http://127.0.0.1:{free_port()}", retry=FAST)
    with client, pytest.raises(EndpointUnavailableError, match="cannot reach"):
        client.post("/x", json={})


async def test_async_client_and_call_by_signature(
    server: tuple[str, Counter[str]], registry: Registry
) -> None:
    url, hits = server
    api = CpuLiveLoadBalancer(name="shop")

    @remote(api, method="POST", path="/orders/{shop_id}")
    async def place(shop_id: int, order: Order) -> dict[str, Any]:
        return {}

    @remote(api, method="GET", path="/search")
    async def search(q: str, limit: int = 5) -> dict[str, Any]:
        return {}

    @remote(api, method="PUT", path="/flaky")
    async def update(name: str, tags: list[str]) -> dict[str, Any]:
        return {}

    async with AsyncEndpointClient(url, "k", retry=FAST) as client:
        placed = await client.call(place, shop_id=7, order=Order(item="tea", qty=2))
        found = await client.call(search, q="tea", limit=3)
        updated = await client.call(update, name="n", tags=["a"])
    assert placed["json"] == {"item": "tea", "qty": 2} and placed["method"] == "POST"
    assert hits["/orders/7"] == 1
    assert found["args"] == {"q": "tea", "limit": "3"}
    assert updated["json"] == {"name": "n", "tags": ["a"]} and hits["/flaky"] == 3
    with pytest.raises(TypeError, match="is not an @remote route"):
        EndpointClient(url).call(len)
