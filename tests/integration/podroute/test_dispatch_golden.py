"""Golden answers: the lean dispatch path answers exactly what the Quart-only path answered.

`golden_dispatch.json` was recorded on the code before `podroute.dispatch` existed (Quart's own
request machinery for every route), by running this module as a script:

    python -m tests.integration.podroute.test_dispatch_golden record

It holds, for a broad set of requests (every route shape, every error status, SSE, oversize
bodies, unknown query keys, reserved paths, wrong methods, bad JSON), the status, the headers that
matter and the body, with request ids normalised. The test replays the same requests and asserts
the same answers: the worker shapes (`tests.support.golden_service`) through `podroute serve` on
each server it runs (Hypercorn, uvicorn, Granian), and the prefixed app, a `podroute dev` shape
(mounts plus plain Quart routes) that only the dev server builds, through real Hypercorn, the dev
server's only server. `INTENDED_CHANGES` lists the only answers that changed on purpose, with the
issue that asked for it. Cases added later (after a comment naming their issue) were recorded when
their feature landed; no earlier answer was re-recorded.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart

from podroute import (
    CpuLiveLoadBalancer,
    CpuLoadBalancerSlsResource,
    Mount,
    Registry,
    create_app,
    use_registry,
)
from tests.helpers import WORKER_SERVERS, hypercorn_server, worker_process
from tests.support.golden_routes import declare_routes
from tests.support.startup import RELEASE_FILE_ENV

GOLDEN = Path(__file__).with_name("golden_dispatch.json")
HEADERS_THAT_MATTER = (
    "content-type",
    "allow",
    "retry-after",
    "location",
    "cache-control",
    "x-accel-buffering",
)
_GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")

INTENDED_CHANGES: dict[str, dict[str, Any]] = {
    # issue #14 item 7: a text/plain body is not JSON; a JSON route answers 415, not 200.
    "POST /users text/plain JSON-looking body": {
        "status": 415,
        "headers": {"content-type": "application/problem+json"},
        "body": {
            "type": "about:blank",
            "title": "Unsupported Media Type",
            "status": 415,
            "detail": "this route does not accept a text/plain body; send JSON with "
            "Content-Type: application/json",
            "request_id": "<rid>",
        },
        "request_id": "generated",
    },
}


def _chunks(size: int) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        yield b"x" * 1024
        sent += 1024


# (name, method, path, keyword arguments for httpx)
MAIN_REQUESTS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("GET /users", "GET", "/users", {}),
    ("GET /users typed query", "GET", "/users?limit=2&tags=a&tags=b", {}),
    ("GET /users bad query type", "GET", "/users?limit=many", {}),
    ("GET /users unknown query key", "GET", "/users?limt=3", {}),
    ("GET /users/ trailing slash", "GET", "/users/", {}),
    ("HEAD /users", "HEAD", "/users", {}),
    ("POST /users", "POST", "/users", {"json": {"name": "ann"}}),
    (
        "POST /users charset",
        "POST",
        "/users",
        {"content": b'{"name":"c"}', "headers": {"Content-Type": "application/json; charset=utf-8"}},
    ),
    ("POST /users no content type", "POST", "/users", {"content": b'{"name":"n"}'}),
    (
        "POST /users text/plain JSON-looking body",
        "POST",
        "/users",
        {"content": b'{"name":"t"}', "headers": {"Content-Type": "text/plain"}},
    ),
    ("POST /users missing and extra keys", "POST", "/users", {"json": {"age": "old", "nick": "x"}}),
    ("POST /users body is a list", "POST", "/users", {"json": ["ann"]}),
    ("POST /users empty body", "POST", "/users", {}),
    (
        "POST /users bad JSON",
        "POST",
        "/users",
        {"content": b"{nope", "headers": {"Content-Type": "application/json"}},
    ),
    ("POST /users query string ignored", "POST", "/users?name=bob", {"json": {}}),
    ("POST /users over the limit", "POST", "/users", {"content": b'{"name": "' + b"x" * 5000 + b'"}'}),
    ("POST /users over the limit, chunked", "POST", "/users", {"content": _chunks(8192)}),
    ("PUT /users wrong method", "PUT", "/users", {}),
    ("PATCH /users wrong method", "PATCH", "/users", {}),
    ("DELETE /users/12", "DELETE", "/users/12?hard=true", {}),
    ("DELETE /users/1%32 percent-encoded", "DELETE", "/users/1%32", {}),
    ("DELETE /users/abc", "DELETE", "/users/abc", {}),
    ("DELETE /users/12/ trailing slash", "DELETE", "/users/12/", {}),
    ("GET /users/12 wrong method on a path route", "GET", "/users/12", {}),
    ("PUT two path params", "PUT", "/users/5/name/ann", {"json": {"last": "lee"}}),
    ("PUT two path params, bad id", "PUT", "/users/x/name/ann", {"json": {}}),
    ("POST /check 400", "POST", "/check", {"json": {"text": "  "}}),
    ("GET /crash 500", "GET", "/crash", {}),
    ("GET /teapot 418", "GET", "/teapot", {}),
    ("GET /events SSE", "GET", "/events?count=3", {}),
    ("GET /events SSE bad query", "GET", "/events?count=x", {}),
    ("GET /broken-stream", "GET", "/broken-stream", {}),
    ("GET /crashing-stream", "GET", "/crashing-stream", {}),
    ("POST /created passthrough", "POST", "/created", {"json": {"name": "it"}}),
    ("GET /thread sync", "GET", "/thread", {}),
    ("POST /items model", "POST", "/items", {"json": {"name": "a", "qty": 2}}),
    ("POST /items model extra key", "POST", "/items", {"json": {"name": "a", "colour": "red"}}),
    ("PATCH /points dataclass", "PATCH", "/points", {"json": {"x": 1, "y": 2.5}}),
    ("POST /tags typeddict extra", "POST", "/tags", {"json": {"label": "hot", "extra": 1}}),
    ("GET /whoami request parameter", "GET", "/whoami", {"headers": {"User-Agent": "golden/1"}}),
    ("POST /sum csv", "POST", "/sum", {"content": b"1,2,3", "headers": {"Content-Type": "text/csv"}}),
    ("POST /sum csv bad", "POST", "/sum", {"content": b"1,x", "headers": {"Content-Type": "text/csv"}}),
    ("POST /sum json", "POST", "/sum", {"json": {"values": [4, 5]}}),
    ("GET /none", "GET", "/none", {}),
    ("GET /ping", "GET", "/ping", {}),
    ("POST /ping wrong method", "POST", "/ping", {}),
    ("GET /nothing 404", "GET", "/nothing-here", {}),
    ("POST /nothing 404", "POST", "/nothing-here", {"json": {}}),
    ("GET /_runpod/sync reserved", "GET", "/_runpod/sync", {}),
    ("GET /execute wrong method", "GET", "/execute", {}),
    ("POST /execute", "POST", "/execute", {"json": {"function": "create_user", "kwargs": {"name": "ann"}}}),
    (
        "POST /execute path param",
        "POST",
        "/execute",
        {"json": {"function": "delete_user", "kwargs": {"user_id": "4"}}},
    ),
    ("POST /execute 422", "POST", "/execute", {"json": {"function": "create_user", "kwargs": {"age": 1}}}),
    ("POST /execute unknown", "POST", "/execute", {"json": {"function": "__import__"}}),
    ("POST /execute caller code", "POST", "/execute", {"json": {"function_name": "f", "function_code": "x"}}),
    ("POST /execute stream", "POST", "/execute", {"json": {"function": "events", "kwargs": {"count": 2}}}),
    ("GET request id echoed", "GET", "/users", {"headers": {"X-Request-ID": "abc-123"}}),
    ("GET request id replaced", "GET", "/users", {"headers": {"X-Request-ID": "bad id <script>"}}),
    ("GET 404 request id echoed", "GET", "/nothing", {"headers": {"X-Request-ID": "trace-9"}}),
    ("POST 422 request id echoed", "POST", "/users", {"json": {}, "headers": {"X-Request-ID": "trace-10"}}),
    ("GET /docs", "GET", "/docs", {}),
    # added with WebSocket routes (issue #13): the HTTP side of a WebSocket path
    ("GET /socket without the upgrade", "GET", "/socket", {}),
    ("HEAD /socket without the upgrade", "HEAD", "/socket", {}),
    ("POST /socket wrong method", "POST", "/socket", {"json": {}}),
]

PREFIXED_REQUESTS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("prefixed GET /gpu/users", "GET", "/gpu/users?limit=1", {}),
    ("prefixed POST /cpu/users", "POST", "/cpu/users", {"json": {"name": "c"}}),
    ("prefixed DELETE /cpu/users/3", "DELETE", "/cpu/users/3", {}),
    ("prefixed GET /users without prefix", "GET", "/users", {}),
    ("prefixed plain Quart route", "GET", "/plain", {}),
    ("prefixed plain Quart route sharing a path", "PUT", "/gpu/users", {}),
    ("prefixed wrong method on a shared path", "PATCH", "/gpu/users", {}),
    (
        "prefixed /gpu/execute absent on deployed",
        "POST",
        "/gpu/execute",
        {"json": {"function": "list_users"}},
    ),
    ("prefixed /cpu/execute", "POST", "/cpu/execute", {"json": {"function": "list_users"}}),
    ("prefixed ping", "GET", "/ping", {}),
]

STARTING_REQUESTS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("starting GET /ping", "GET", "/ping", {}),
    ("starting GET /users", "GET", "/users", {}),
    ("starting POST /users", "POST", "/users", {"json": {"name": "x"}}),
    ("starting POST /execute", "POST", "/execute", {"json": {"function": "list_users"}}),
    ("starting 404", "GET", "/nothing", {}),
]

FAILED_REQUESTS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("failed GET /ping", "GET", "/ping", {}),
    ("failed GET /users", "GET", "/users", {}),
]


def _normalise(response: httpx.Response, sent_id: str | None) -> dict[str, Any]:
    rid = response.headers.get("x-request-id", "")
    if sent_id is not None and rid == sent_id:
        kind = "echoed"
    elif _GENERATED_ID.match(rid):
        kind = "generated"
    else:
        kind = f"unexpected: {rid!r}"
    text = response.text.replace(rid, "<rid>") if rid else response.text
    body: Any
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = text
    headers = {name: response.headers[name] for name in HEADERS_THAT_MATTER if name in response.headers}
    return {"status": response.status_code, "headers": headers, "body": body, "request_id": kind}


def _collect(base: str, requests: list[tuple[str, str, str, dict[str, Any]]]) -> dict[str, Any]:
    answers = {}
    with httpx.Client(base_url=base, timeout=10) as client:
        for name, method, path, kwargs in requests:
            sent = kwargs.get("headers", {}).get("X-Request-ID")
            if callable(getattr(kwargs.get("content"), "__next__", None)) or name.endswith("chunked"):
                kwargs = {**kwargs, "content": _chunks(8192)}  # a generator is spent after one use
            answers[name] = _normalise(client.request(method, path, **kwargs), sent)
    return answers


SERVICE = "tests.support.golden_service"


def _prefixed_app(registry: Registry) -> Quart:
    deployed = CpuLoadBalancerSlsResource(name="deployed")
    live = CpuLiveLoadBalancer(name="live")
    declare_routes(deployed)
    declare_routes(live)
    app = create_app(
        Mount(deployed, prefix="/gpu", tag="gpu"), Mount(live, prefix="/cpu", tag="cpu"), registry=registry
    )

    async def plain() -> dict[str, str]:
        return {"served_by": "quart"}

    async def replace_users() -> dict[str, str]:
        return {"replaced": "by a plain Quart route"}

    app.add_url_rule("/plain", "plain", plain, methods=["GET"])
    app.add_url_rule("/gpu/users", "replace_users", replace_users, methods=["PUT"])
    return app


def collect_worker_answers(server: str) -> dict[str, Any]:
    """The answers of the worker shapes, from fresh `podroute serve` processes on `server`."""
    answers: dict[str, Any] = {}
    with worker_process(f"{SERVICE}:golden", server, {"PODROUTE_MAX_BODY_BYTES": "4096"}) as worker:
        answers.update(_collect(worker.url, MAIN_REQUESTS))
    with tempfile.TemporaryDirectory() as folder:
        release = Path(folder) / "release"
        env = {RELEASE_FILE_ENV: str(release)}
        with worker_process(f"{SERVICE}:gated", server, env, ready=(204,)) as worker:
            answers.update(_collect(worker.url, STARTING_REQUESTS))
            release.touch()
    with worker_process(f"{SERVICE}:broken", server, ready=(204, 503)) as worker:
        for _ in range(200):
            if httpx.get(f"{worker.url}/ping").status_code != 204:
                break
            threading.Event().wait(0.02)
        answers.update(_collect(worker.url, FAILED_REQUESTS))
    return answers


def collect_prefixed_answers() -> dict[str, Any]:
    """The answers of the prefixed dev-shaped app, on real Hypercorn in a thread."""
    with use_registry(Registry()) as registry, hypercorn_server(_prefixed_app(registry)) as base:
        return _collect(base, PREFIXED_REQUESTS)


def _expected(requests: list[tuple[str, str, str, dict[str, Any]]]) -> dict[str, Any]:
    golden: dict[str, Any] = json.loads(GOLDEN.read_text())
    recorded = {**golden, **INTENDED_CHANGES}
    return {name: recorded[name] for name, _, _, _ in requests}


def _assert_same(answers: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(answers) == set(expected)
    mismatches = {
        name: (answers[name], expected[name]) for name in expected if answers[name] != expected[name]
    }
    assert not mismatches, json.dumps(mismatches, indent=1)


@pytest.mark.parametrize("server", WORKER_SERVERS)
def test_lean_path_gives_the_recorded_answers(server: str) -> None:
    expected = _expected(MAIN_REQUESTS + STARTING_REQUESTS + FAILED_REQUESTS)
    _assert_same(collect_worker_answers(server), expected)


def test_prefixed_app_gives_the_recorded_answers() -> None:
    _assert_same(collect_prefixed_answers(), _expected(PREFIXED_REQUESTS))


def test_the_recording_covers_every_request_once() -> None:
    golden: dict[str, Any] = json.loads(GOLDEN.read_text())
    requests = MAIN_REQUESTS + PREFIXED_REQUESTS + STARTING_REQUESTS + FAILED_REQUESTS
    names = [name for name, _, _, _ in requests]
    assert len(names) == len(set(names)) and set(names) == set(golden)


def test_intended_changes_differ_from_the_recording() -> None:
    golden: dict[str, Any] = json.loads(GOLDEN.read_text())
    for name, answer in INTENDED_CHANGES.items():
        assert name in golden and golden[name] != answer


if __name__ == "__main__" and sys.argv[1:] == ["record"]:
    recording = {**collect_worker_answers("hypercorn"), **collect_prefixed_answers()}
    GOLDEN.write_text(json.dumps(recording, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
