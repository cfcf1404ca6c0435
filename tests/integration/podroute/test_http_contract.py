"""Every status of the HTTP contract, through `podroute serve` on each server it runs.

The worker (`tests.support.contract_service`) runs as a real subprocess on a loopback port, on
Hypercorn, uvicorn and Granian in turn, so every assertion below holds on each. The one thing a
server cannot do is asserted as such: Granian binds a single port, so `PORT_HEALTH` on Granian is
refused at start with a message naming the servers that can (`GRANIAN_HAS_ONE_PORT`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import REPO_ROOT, WORKER_SERVERS, Worker, free_port, worker_process
from tests.support.startup import RELEASE_FILE_ENV

SERVICE = "tests.support.contract_service"
PROBLEM = "application/problem+json"
LIMITED = {"PODROUTE_MAX_BODY_BYTES": "4096"}
GRANIAN_HAS_ONE_PORT = "granian binds one port; use --server hypercorn or uvicorn for PORT_HEALTH"


@pytest.fixture(scope="module", params=WORKER_SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    """The name of the server `podroute serve --server` runs for this round of the suite."""
    return str(request.param)


@pytest.fixture(scope="module")
def worker(server: str) -> Iterator[Worker]:
    """The live contract service on `server`, shared by the tests that only send requests."""
    with worker_process(f"{SERVICE}:live", server, LIMITED) as running:
        yield running


@pytest.fixture
def base(worker: Worker) -> str:
    return worker.url


def log_entries(worker: Worker, wanted: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The worker's JSON log lines for which `wanted(entry)` holds, waiting until there is one."""
    deadline = time.monotonic() + timeout
    while True:
        lines = worker.process.output_so_far().splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        found = [entry for entry in entries if wanted(entry)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


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
    assert response.headers["connection"] == "close"


def test_422_lists_fields(base: str) -> None:
    response = httpx.post(f"{base}/users", json={"age": "old", "nick": "x"})
    body = assert_problem(response, 422)
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "name"), ("body", "age"), ("body", "nick")}


def test_422_typed_path_parameter(base: str) -> None:
    assert_problem(httpx.delete(f"{base}/users/abc"), 422)
    assert httpx.delete(f"{base}/users/12").json() == {"deleted": 12}


def test_500_is_generic_and_logged(worker: Worker) -> None:
    response = httpx.get(f"{worker.url}/crash")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.text
    assert body["request_id"] in body["detail"]
    records = log_entries(worker, lambda e: e["logger"] == "podroute.app" and e["level"] == "ERROR")
    record = next(r for r in records if r.get("request_id") == body["request_id"])
    assert "RuntimeError: database password is hunter2" in record["exc"]


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


def test_deployed_resources_have_no_execute(server: str) -> None:
    with worker_process(f"{SERVICE}:deployed", server) as deployed:
        url = deployed.url
        assert httpx.get(f"{url}/users").status_code == 200
        assert_problem(httpx.post(f"{url}/execute", json={"function": "list_users"}), 404)
        assert "/execute" not in httpx.get(f"{url}/openapi.json").json()["paths"]


def test_ping_goes_204_then_200_after_a_slow_startup_hook(server: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    with worker_process(f"{SERVICE}:slow", server, {RELEASE_FILE_ENV: str(release)}, ready=(204,)) as slow:
        url = slow.url
        assert httpx.get(f"{url}/ping").status_code == 204
        busy = httpx.get(f"{url}/users")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        release.touch()
        for _ in range(100):
            if (ping := httpx.get(f"{url}/ping")).status_code == 200:
                break
            threading.Event().wait(0.05)
        assert ping.status_code == 200 and ping.json() == {"status": "healthy"}
        assert httpx.get(f"{url}/users").status_code == 200


def test_failing_startup_hook_makes_ping_503(server: str) -> None:
    with worker_process(f"{SERVICE}:failing", server, ready=(204, 503)) as failing:
        url = failing.url
        for _ in range(100):
            if (ping := httpx.get(f"{url}/ping")).status_code != 204:
                break
            threading.Event().wait(0.05)
        body = assert_problem(ping, 503)
        assert "load_model: weights.bin" in body["detail"]
        assert_problem(httpx.get(f"{url}/users"), 503)
        assert log_entries(failing, lambda e: "startup hook load_model" in e["msg"])


def test_health_check_path_is_configurable(server: str) -> None:
    with worker_process(f"{SERVICE}:live", server, {"HEALTH_CHECK_PATH": "/healthz"}) as custom:
        assert httpx.get(f"{custom.url}/healthz").status_code == 200
        assert httpx.get(f"{custom.url}/ping").status_code == 404


def test_port_health_is_bound_too(server: str) -> None:
    health = free_port()
    env = {"PORT_HEALTH": str(health)}
    if server == "granian":  # the one thing a server cannot do: Granian listens on one port
        refused = subprocess.run(
            [sys.executable, "-m", "podroute", "serve", f"{SERVICE}:live", "--server", server],
            cwd=REPO_ROOT,
            env={**os.environ, "HOST": "127.0.0.1", "PORT": str(free_port()), **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0 and GRANIAN_HAS_ONE_PORT in refused.stderr
        return
    with worker_process(f"{SERVICE}:live", server, env) as both:
        assert httpx.get(f"http://127.0.0.1:{health}/ping").status_code == 200
        assert httpx.get(f"{both.url}/ping").status_code == 200
        assert httpx.get(f"{both.url}/users").status_code == 200


def test_sigterm_lets_requests_in_flight_finish(server: str) -> None:
    results: list[httpx.Response] = []
    with worker_process(f"{SERVICE}:live", server) as draining:
        request = threading.Thread(
            target=lambda: results.append(httpx.get(f"{draining.url}/slow?seconds=1.5", timeout=10))
        )
        request.start()
        threading.Event().wait(0.5)
        draining.process.stop()
        request.join(10)
        assert draining.process.process.returncode == 0
    assert results and results[0].status_code == 200 and results[0].json() == {"slept": 1.5}


def test_413_while_the_body_streams_in(base: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(256):  # 1 MiB: far more than a server reads ahead before the 413
            yield b"x" * 4096

    with httpx.Client() as client:
        response = client.post(
            f"{base}/users", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "4096-byte limit" in assert_problem(response, 413)["detail"]
        # the rest of the body was never read: the connection must not carry another request
        assert response.headers["connection"] == "close"
        assert client.get(f"{base}/users").status_code == 200


def test_connections_stay_open_after_a_body_read_in_full(base: str) -> None:
    with httpx.Client() as client:
        for _ in range(3):
            response = client.post(f"{base}/users", json={"name": "ann"})
            assert response.status_code == 200 and response.headers.get("connection") != "close"
        problem = client.post(f"{base}/users", json={"age": "old"})
        assert problem.status_code == 422 and problem.headers.get("connection") != "close"


def test_docs_and_openapi_carry_a_request_id_too(base: str) -> None:
    for path in ("/docs", "/openapi.json", "/docs/static/docs-init.js"):
        response = httpx.get(f"{base}{path}", headers={"X-Request-ID": "docs-1"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "docs-1"
