"""Running the services as a user does: `python -m services.<name>` and `podroute dev`."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from tests.helpers import REPO_ROOT, cli_server, free_port, wait_for_http

SEED_REQUESTS: list[tuple[str, str, dict[str, Any] | None, dict[str, Any]]] = [
    ("GET", "/gpu/health", None, {"status": "healthy", "service": "gpu"}),
    (
        "POST",
        "/gpu/compute",
        {"numbers": [1, 2, 3, 4, 5]},
        {"sum_of_squares": 55, "mean": 3.0, "max": 5, "min": 1},
    ),
    ("GET", "/cpu/health", None, {"status": "healthy", "service": "cpu"}),
    ("POST", "/cpu/validate", {"text": "Hello world"}, {"character_count": 11, "word_count": 2}),
    ("POST", "/cpu/transform", {"text": "hello", "operation": "uppercase"}, {"transformed": "HELLO"}),
]
"""The seed README's curl examples, with the keys each documented answer must carry."""

SHAPES = {
    "/gpu/health": {"status", "service"},
    "/gpu/info": {
        "status",
        "torch_version",
        "cuda_available",
        "cuda_version",
        "device_count",
        "device",
        "cpu_threads",
        "devices",
    },
    "/gpu/compute": {
        "status",
        "input_count",
        "sum_of_squares",
        "mean",
        "max",
        "min",
        "compute_time_ms",
        "device",
    },
    "/cpu/health": {"status", "service"},
    "/cpu/validate": {"status", "is_valid", "character_count", "word_count", "average_word_length"},
    "/cpu/transform": {"status", "original", "transformed", "operation"},
}


@contextlib.contextmanager
def service_process(module: str, port: int) -> Iterator[subprocess.Popen[str]]:
    """`python -m <module>` with FLASH_HOST / FLASH_PORT set, stopped with SIGTERM afterwards."""
    env = {**os.environ, "FLASH_HOST": "127.0.0.1", "FLASH_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def call(base: str, method: str, path: str, payload: dict[str, Any] | None) -> httpx.Response:
    return httpx.request(method, base + path, json=payload, timeout=30)


def test_cpu_standalone_serves_the_seed_examples_without_prefix() -> None:
    port = free_port()
    with service_process("services.cpu", port):
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/ping", timeout=30, ok=(200,))
        for method, path, payload, expected in SEED_REQUESTS:
            if not path.startswith("/cpu"):
                continue
            response = call(base, method, path.removeprefix("/cpu"), payload)
            assert response.status_code == 200
            assert set(response.json()) == SHAPES[path]
            assert expected.items() <= response.json().items()
        assert httpx.get(base + "/cpu/health").status_code == 404


def test_gpu_standalone_says_204_until_torch_is_warm_and_503_on_routes_meanwhile() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with service_process("services.gpu", port) as process:
        statuses: list[int] = []
        early_route: httpx.Response | None = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not statuses or statuses[-1] != 200):
            assert process.poll() is None, process.communicate()[0]
            try:
                statuses.append(httpx.get(base + "/ping", timeout=5).status_code)
            except httpx.TransportError:
                time.sleep(0.01)
                continue
            if statuses[-1] == 204 and early_route is None:
                early_route = httpx.post(base + "/compute", json={"numbers": [1]}, timeout=5)
        assert statuses[0] == 204, statuses
        assert statuses[-1] == 200 and set(statuses) == {204, 200}
        assert early_route is not None and early_route.status_code == 503
        assert early_route.headers["retry-after"] == "1"
        assert "startup hooks are running" in early_route.json()["detail"]
        assert httpx.post(base + "/compute", json={"numbers": [1, 2, 3, 4, 5]}).json()["sum_of_squares"] == 55


@pytest.fixture(scope="module")
def dev_url() -> Iterator[str]:
    """`podroute dev` on the repository, as `nox -s dev` runs it (with reload), on a free port."""
    port = free_port()
    env = {"FLASH_HOST": "127.0.0.1", "FLASH_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    with cli_server(["dev"], cwd=REPO_ROOT, env=env):
        wait_for_http(base + "/ping", timeout=90, ok=(200,))
        yield base


def test_dev_answers_the_seed_examples_under_service_prefixes(dev_url: str) -> None:
    for method, path, payload, expected in SEED_REQUESTS:
        response = call(dev_url, method, path, payload)
        assert response.status_code == 200, (path, response.text)
        assert set(response.json()) == SHAPES[path]
        assert expected.items() <= response.json().items()
    info = httpx.get(dev_url + "/gpu/info").json()
    assert set(info) == SHAPES["/gpu/info"]


def test_dev_takes_binary_bodies_under_the_prefix(dev_url: str) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([3, 4]))
    response = httpx.post(
        dev_url + "/gpu/compute", content=buffer.getvalue(), headers={"content-type": "application/x-npy"}
    )
    assert response.json()["sum_of_squares"] == 25


def test_dev_openapi_lists_every_route_by_service_with_schemas(dev_url: str) -> None:
    spec = httpx.get(dev_url + "/openapi.json").json()
    OpenAPIV31SpecValidator(spec).validate()
    operations = {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if path.startswith(("/gpu/", "/cpu/"))
    }
    expected = {
        ("GET", "/gpu/health"),
        ("GET", "/gpu/info"),
        ("POST", "/gpu/compute"),
        ("GET", "/cpu/health"),
        ("POST", "/cpu/validate"),
        ("POST", "/cpu/transform"),
    }
    assert set(operations) == expected  # deployable resources: no /execute
    assert {tag["name"] for tag in spec["tags"]} >= {"gpu", "cpu"}
    schemas = spec["components"]["schemas"]
    for (method, path), operation in operations.items():
        assert operation["tags"] == [path.split("/")[1]]
        response_schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        name = response_schema["$ref"].rsplit("/", 1)[-1]
        assert set(schemas[name]["properties"]) == SHAPES[path]
        if method == "POST":
            body_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert schemas[body_ref.rsplit("/", 1)[-1]]["properties"]
    transform_body = schemas["TransformTextBody"]["properties"]
    assert "uppercase, lowercase, reverse, title" in transform_body["operation"]["description"]
    assert schemas["ComputeBody"]["properties"]["numbers"]["type"] == "array"


def test_dev_docs_and_home_page_list_both_services(dev_url: str) -> None:
    docs = httpx.get(dev_url + "/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    home = httpx.get(dev_url + "/").text
    for path in SHAPES:
        assert path in home
