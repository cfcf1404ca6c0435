"""Every status of the HTTP contract, through a real Hypercorn server on a loopback port."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from quart import Response

from podroute import (
    AppSettings,
    CpuLiveLoadBalancer,
    CpuLoadBalancerSlsResource,
    HTTPError,
    Registry,
    create_app,
    on_startup,
    remote,
)
from tests.helpers import hypercorn_server

live = CpuLiveLoadBalancer(name="contract")
PROBLEM = "application/problem+json"


def declare_routes(resource: CpuLiveLoadBalancer | CpuLoadBalancerSlsResource) -> None:
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


@pytest.fixture
def base(registry: Registry) -> Iterator[str]:
    declare_routes(live)
    app = create_app(live, registry=registry, settings=AppSettings(max_body_bytes=4096))
    with hypercorn_server(app) as url:
        yield url


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"] == "about:blank"
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


def test_200_json(base: str) -> None:
    response = httpx.get(f"{base}/users?limit=2")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"users": [], "limit": 2}


def test_400_for_value_error_in_route(base: str) -> None:
    body = assert_problem(httpx.post(f"{base}/check", json={"text": "  "}), 400)
    assert body["detail"] == "text must not be empty"


def test_400_for_malformed_json(base: str) -> None:
    response = httpx.post(f"{base}/users", content=b"{nope", headers={"Content-Type": "application/json"})
    assert "not valid JSON" in assert_problem(response, 400)["detail"]


def test_404_unknown_route(base: str) -> None:
    body = assert_problem(httpx.get(f"{base}/nothing-here"), 404)
    assert "GET /nothing-here" in body["detail"]


def test_405_with_allow(base: str) -> None:
    response = httpx.put(f"{base}/users")
    assert_problem(response, 405)
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}


def test_413_over_the_body_limit(base: str) -> None:
    response = httpx.post(f"{base}/users", content=b'{"name": "' + b"x" * 5000 + b'"}')
    assert "4096-byte limit" in assert_problem(response, 413)["detail"]


def test_422_lists_fields(base: str) -> None:
    response = httpx.post(f"{base}/users", json={"age": "old", "nick": "x"})
    body = assert_problem(response, 422)
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "name"), ("body", "age"), ("body", "nick")}


def test_422_typed_path_parameter(base: str) -> None:
    assert_problem(httpx.delete(f"{base}/users/abc"), 422)
    assert httpx.delete(f"{base}/users/12").json() == {"deleted": 12}


def test_500_is_generic_and_logged(base: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="podroute.app"):
        response = httpx.get(f"{base}/crash")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.text
    assert body["request_id"] in body["detail"]
    record = next(r for r in caplog.records if r.name == "podroute.app")
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])
    assert getattr(record, "request_id", None) == body["request_id"]


def test_http_error_from_route(base: str) -> None:
    assert assert_problem(httpx.get(f"{base}/teapot"), 418)["detail"] == "I only brew tea"


def test_request_id_is_echoed_when_sane_and_replaced_when_not(base: str) -> None:
    assert (
        httpx.get(f"{base}/users", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    )
    replaced = httpx.get(f"{base}/users", headers={"X-Request-ID": "bad id <script>"}).headers["x-request-id"]
    assert replaced != "bad id <script>" and len(replaced) == 32
    assert (
        httpx.get(f"{base}/nothing", headers={"X-Request-ID": "trace-9"}).headers["x-request-id"] == "trace-9"
    )


def test_sse_stream_arrives_as_events(base: str) -> None:
    with httpx.stream("GET", f"{base}/events?count=3") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert [json.loads(line.removeprefix("data: ")) for line in lines] == [{"index": i} for i in range(3)]


def test_error_mid_stream_becomes_an_error_event(base: str) -> None:
    text = httpx.get(f"{base}/broken-stream").text
    assert 'data: {"index":0}' in text
    error_payload = text.split("event: error\ndata: ")[1].strip()
    assert json.loads(error_payload)["status"] == 400
    assert json.loads(error_payload)["detail"] == "ran out of input"


def test_returned_response_passes_through(base: str) -> None:
    response = httpx.post(f"{base}/created", json={"name": "it"})
    assert (response.status_code, response.text, response.headers["location"]) == (201, "made it", "/x/1")
    assert response.headers["content-type"].startswith("text/plain") and response.headers["x-request-id"]


def test_sync_functions_run_in_a_thread(base: str) -> None:
    assert httpx.get(f"{base}/thread").json() == {"main": False}


def test_execute_calls_a_registered_function_with_validation(base: str) -> None:
    response = httpx.post(f"{base}/execute", json={"function": "create_user", "kwargs": {"name": "ann"}})
    assert response.json() == {"result": {"name": "ann", "age": 30}}
    assert httpx.post(
        f"{base}/execute", json={"function": "delete_user", "kwargs": {"user_id": "4"}}
    ).json() == {"result": {"deleted": 4}}
    assert_problem(httpx.post(f"{base}/execute", json={"function": "create_user", "kwargs": {"age": 1}}), 422)
    assert_problem(httpx.post(f"{base}/execute", json={"function": "check", "kwargs": {"text": ""}}), 400)


def test_execute_never_runs_caller_code(base: str) -> None:
    payload = {"function_name": "f", "function_code": "import os\ndef f(): return os.getcwd()"}
    assert_problem(httpx.post(f"{base}/execute", json=payload), 422)
    body = assert_problem(httpx.post(f"{base}/execute", json={"function": "__import__"}), 404)
    assert "available: " in body["detail"] and "create_user" in body["detail"]


def test_deployed_resources_have_no_execute(registry: Registry) -> None:
    deployed = CpuLoadBalancerSlsResource(name="deployed")
    declare_routes(deployed)
    with hypercorn_server(create_app(deployed, registry=registry, settings=AppSettings())) as url:
        assert httpx.get(f"{url}/users").status_code == 200
        assert_problem(httpx.post(f"{url}/execute", json={"function": "list_users"}), 404)
        assert "/execute" not in httpx.get(f"{url}/openapi.json").json()["paths"]


def test_ping_goes_204_then_200_after_a_slow_startup_hook(registry: Registry) -> None:
    release = threading.Event()

    @on_startup(live)
    def load_model() -> None:
        release.wait(10)

    declare_routes(live)
    with hypercorn_server(create_app(live, registry=registry, settings=AppSettings())) as url:
        assert httpx.get(f"{url}/ping").status_code == 204
        busy = httpx.get(f"{url}/users")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        release.set()
        for _ in range(100):
            if (ping := httpx.get(f"{url}/ping")).status_code == 200:
                break
            threading.Event().wait(0.05)
        assert ping.status_code == 200 and ping.json() == {"status": "healthy"}
        assert httpx.get(f"{url}/users").status_code == 200


def test_failing_startup_hook_makes_ping_503(registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    @on_startup(live)
    async def load_model() -> None:
        raise FileNotFoundError("weights.bin")

    declare_routes(live)
    with (
        caplog.at_level(logging.ERROR),
        hypercorn_server(create_app(live, registry=registry, settings=AppSettings())) as url,
    ):
        for _ in range(100):
            if (ping := httpx.get(f"{url}/ping")).status_code != 204:
                break
            threading.Event().wait(0.05)
        body = assert_problem(ping, 503)
        assert "load_model: weights.bin" in body["detail"]
        assert_problem(httpx.get(f"{url}/users"), 503)
    assert any("startup hook load_model" in r.getMessage() for r in caplog.records)


def test_health_check_path_is_configurable(registry: Registry) -> None:
    declare_routes(live)
    app = create_app(live, registry=registry, settings=AppSettings(health_path="/healthz"))
    with hypercorn_server(app) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/ping").status_code == 404


def test_docs_and_openapi_carry_a_request_id_too(base: str) -> None:
    for path in ("/docs", "/openapi.json", "/docs/static/docs-init.js"):
        response = httpx.get(f"{base}{path}", headers={"X-Request-ID": "docs-1"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "docs-1"
