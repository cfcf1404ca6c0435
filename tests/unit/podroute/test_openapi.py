"""The OpenAPI document: valid 3.1, generated from the binding models, errors as problem+json."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel

from podroute import (
    AppSettings,
    CpuLiveLoadBalancer,
    LoadBalancerSlsResource,
    Mount,
    Registry,
    create_app,
    remote,
)
from podroute.app import podroute_state
from podroute.openapi import build_openapi

cpu = CpuLiveLoadBalancer(name="cpu")
gpu = LoadBalancerSlsResource(name="gpu")


class Item(BaseModel):
    name: str
    qty: int = 1


class Receipt(BaseModel):
    total: float


@pytest.fixture
def document(registry: Registry) -> dict[str, Any]:
    @remote(cpu, method="GET", path="/search")
    async def search(q: str, limit: int = 10) -> list[str]:
        """Search things.

        Finds things by text.
        """
        return []

    @remote(cpu, method="POST", path="/items/{shop}")
    async def buy(shop: int, item: Item, note: str = "") -> Receipt:
        return Receipt(total=1)

    @remote(cpu, method="GET", path="/health")
    async def health() -> dict[str, str]:
        return {}

    @remote(gpu, method="GET", path="/health")
    async def gpu_health() -> dict[str, str]:
        return {}

    @remote(gpu, method="GET", path="/stream")
    async def stream() -> AsyncIterator[int]:
        yield 1

    app = create_app(
        Mount(cpu, "/cpu", "cpu"), Mount(gpu, "/gpu", "gpu"), registry=registry, settings=AppSettings()
    )
    return build_openapi(podroute_state(app))


def test_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_operation_ids_summary_and_description_from_docstring(document: dict[str, Any]) -> None:
    search = document["paths"]["/cpu/search"]["get"]
    assert search["operationId"] == "search"
    assert search["summary"] == "Search things."
    assert search["description"] == "Finds things by text."
    assert search["tags"] == ["cpu"]


def test_query_and_path_parameters(document: dict[str, Any]) -> None:
    params = {p["name"]: p for p in document["paths"]["/cpu/search"]["get"]["parameters"]}
    assert params["q"] == {
        "name": "q",
        "in": "query",
        "required": True,
        "schema": {"title": "Q", "type": "string"},
    }
    assert params["limit"]["required"] is False and params["limit"]["schema"]["default"] == 10
    buy = document["paths"]["/cpu/items/{shop}"]["post"]
    assert buy["parameters"] == [
        {"name": "shop", "in": "path", "required": True, "schema": {"type": "integer"}}
    ]


def test_request_and_response_schemas_come_from_the_models(document: dict[str, Any]) -> None:
    buy = document["paths"]["/cpu/items/{shop}"]["post"]
    body_ref = buy["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = document["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert body["additionalProperties"] is False
    assert set(body["properties"]) == {"item", "note"} and body["required"] == ["item"]
    receipt = buy["responses"]["200"]["content"]["application/json"]["schema"]
    assert receipt == {"$ref": "#/components/schemas/Receipt"}


def test_errors_are_documented_as_problem_json(document: dict[str, Any]) -> None:
    responses = document["paths"]["/cpu/items/{shop}"]["post"]["responses"]
    for code in ("400", "413", "422", "500"):
        assert responses[code]["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    assert "413" not in document["paths"]["/cpu/search"]["get"]["responses"]


def test_colliding_function_names_get_tagged_operation_ids(document: dict[str, Any]) -> None:
    assert document["paths"]["/cpu/health"]["get"]["operationId"] == "health"
    assert document["paths"]["/gpu/health"]["get"]["operationId"] == "gpu_health"
    ids = [op["operationId"] for path in document["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


def test_streams_are_documented_as_event_streams(document: dict[str, Any]) -> None:
    assert "text/event-stream" in document["paths"]["/gpu/stream"]["get"]["responses"]["200"]["content"]


def test_execute_only_for_live_resources(document: dict[str, Any]) -> None:
    assert "/cpu/execute" in document["paths"]
    assert "/gpu/execute" not in document["paths"]
    enum = document["paths"]["/cpu/execute"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert enum["properties"]["function"]["enum"] == ["search", "buy", "health"]


def test_ping_is_documented(document: dict[str, Any]) -> None:
    assert set(document["paths"]["/ping"]["get"]["responses"]) == {"200", "204", "503"}
