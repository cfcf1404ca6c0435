"""Real servers for the services' integration tests: each service on Hypercorn, one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from podroute import AppSettings, create_app
from podroute.discovery import load_target
from tests.helpers import hypercorn_server, wait_for_http


def serve_service(target: str) -> Iterator[str]:
    """Serve one service module as its worker would (same app, real Hypercorn); yields the base URL."""
    resource, registry = load_target(target)
    app = create_app(resource, registry=registry, settings=AppSettings())
    with hypercorn_server(app) as base:
        wait_for_http(base + "/ping", timeout=60, ok=(200,))
        yield base


@pytest.fixture(scope="module")
def cpu_url() -> Iterator[str]:
    """Base URL of the CPU service."""
    yield from serve_service("services.cpu.endpoint")


@pytest.fixture(scope="module")
def gpu_url() -> Iterator[str]:
    """Base URL of the GPU service, once its startup hook has loaded torch."""
    yield from serve_service("services.gpu.endpoint")
