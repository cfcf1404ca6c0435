"""The binding table: where each argument comes from, and what is rejected (422/400)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel
from quart import Quart, Request
from typing_extensions import TypedDict

from podroute import AppSettings, CpuLiveLoadBalancer, Registry, accepts, create_app, remote

api = CpuLiveLoadBalancer(name="binding")


class Item(BaseModel):
    name: str
    qty: int = 1


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Tag(TypedDict):
    label: str


def declare_routes() -> None:
    @remote(api, method="GET", path="/search")
    async def search(
        q: str, limit: int = 10, tags: list[str] | None = None, exact: bool = False
    ) -> dict[str, Any]:
        return {"q": q, "limit": limit, "tags": tags, "exact": exact}

    @remote(api, method="DELETE", path="/users/{user_id}")
    async def delete_user(user_id: int, hard: bool = False) -> dict[str, Any]:
        return {"user_id": user_id, "hard": hard}

    @remote(api, method="POST", path="/users")
    async def create_user(name: str, age: int = 3) -> dict[str, Any]:
        return {"name": name, "age": age}

    @remote(api, method="PUT", path="/users/{user_id}")
    async def rename_user(user_id: int, name: str) -> dict[str, Any]:
        return {"user_id": user_id, "name": name}

    @remote(api, method="POST", path="/items")
    async def add_item(item: Item) -> Item:
        return item

    @remote(api, method="PATCH", path="/points")
    async def move(point: Point) -> Point:
        return point

    @remote(api, method="POST", path="/tags")
    async def add_tag(tag: Tag) -> Tag:
        return tag

    @remote(api, method="POST", path="/raw")
    async def raw(data: dict[str, Any]) -> dict[str, Any]:
        return data

    @remote(api, method="GET", path="/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        return {"agent": request.headers.get("User-Agent")}

    def decode_csv(raw: bytes, request: Request) -> dict[str, Any]:
        """Comma-separated integers."""
        return {"values": [int(v) for v in raw.decode().split(",")]}

    @remote(api, method="POST", path="/sum")
    @accepts("text/csv", decode_csv)
    async def total(values: list[int]) -> int:
        return sum(values)


@pytest.fixture
def app(registry: Registry) -> Quart:
    declare_routes()
    return create_app(api, registry=registry, settings=AppSettings())


async def call(app: Quart, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    client = app.test_client()
    response = await client.open(path, method=method, **kwargs)
    return response.status_code, await response.get_json(force=True)


async def test_query_parameters_are_typed(app: Quart) -> None:
    status, body = await call(app, "GET", "/search?q=cat&limit=5&exact=true&tags=a&tags=b")
    assert (status, body) == (200, {"q": "cat", "limit": 5, "tags": ["a", "b"], "exact": True})


async def test_query_defaults(app: Quart) -> None:
    assert await call(app, "GET", "/search?q=x") == (
        200,
        {"q": "x", "limit": 10, "tags": None, "exact": False},
    )


async def test_missing_query_parameter(app: Quart) -> None:
    status, body = await call(app, "GET", "/search")
    assert status == 422
    assert body["errors"] == [{"loc": ["query", "q"], "msg": "Field required", "type": "missing"}]


async def test_wrong_query_type(app: Quart) -> None:
    status, body = await call(app, "GET", "/search?q=x&limit=many")
    assert status == 422 and body["errors"][0]["loc"] == ["query", "limit"]


async def test_unknown_query_parameter(app: Quart) -> None:
    status, body = await call(app, "GET", "/search?q=x&limt=3")
    assert status == 422 and body["errors"][0]["loc"] == ["query", "limt"]


async def test_typed_path_parameter_on_delete_with_query(app: Quart) -> None:
    assert await call(app, "DELETE", "/users/42?hard=1") == (200, {"user_id": 42, "hard": True})
    status, body = await call(app, "DELETE", "/users/abc")
    assert status == 422 and body["errors"][0]["loc"] == ["path", "user_id"]


async def test_body_keys_are_parameter_names(app: Quart) -> None:
    assert await call(app, "POST", "/users", json={"name": "bob"}) == (200, {"name": "bob", "age": 3})


async def test_unknown_body_key_rejected_not_dropped(app: Quart) -> None:
    status, body = await call(app, "POST", "/users", json={"name": "bob", "agee": 4})
    assert status == 422
    assert body["errors"] == [
        {"loc": ["body", "agee"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]


async def test_wrong_body_type(app: Quart) -> None:
    status, body = await call(app, "POST", "/users", json={"name": "bob", "age": "old"})
    assert status == 422 and body["errors"][0]["loc"] == ["body", "age"]


async def test_body_must_be_an_object(app: Quart) -> None:
    status, body = await call(app, "POST", "/users", json=["bob"])
    assert status == 422 and body["errors"][0]["loc"] == ["body"]


async def test_query_string_is_not_read_on_body_methods(app: Quart) -> None:
    status, body = await call(app, "POST", "/users?name=bob")
    assert status == 422 and body["errors"][0]["loc"] == ["body", "name"]


async def test_path_and_body_together(app: Quart) -> None:
    assert await call(app, "PUT", "/users/7", json={"name": "z"}) == (200, {"user_id": 7, "name": "z"})


async def test_model_takes_the_whole_body(app: Quart) -> None:
    assert await call(app, "POST", "/items", json={"name": "a", "qty": 2}) == (200, {"name": "a", "qty": 2})
    status, body = await call(app, "POST", "/items", json={"item": {"name": "a"}})
    assert status == 422 and body["errors"][0]["loc"] == ["body", "name"]


async def test_model_body_rejects_unknown_keys(app: Quart) -> None:
    status, body = await call(app, "POST", "/items", json={"name": "a", "colour": "red"})
    assert status == 422 and body["errors"][0]["loc"] == ["body", "colour"]


async def test_dataclass_and_typeddict_take_the_whole_body(app: Quart) -> None:
    assert await call(app, "PATCH", "/points", json={"x": 1, "y": 2.5}) == (200, {"x": 1.0, "y": 2.5})
    status, _ = await call(app, "PATCH", "/points", json={"x": 1, "y": 2, "z": 3})
    assert status == 422
    assert await call(app, "POST", "/tags", json={"label": "hot"}) == (200, {"label": "hot"})
    status, _ = await call(app, "POST", "/tags", json={"label": "hot", "extra": 1})
    assert status == 422


async def test_dict_parameter_is_wrapped_by_its_name(app: Quart) -> None:
    assert await call(app, "POST", "/raw", json={"data": {"k": 1}}) == (200, {"k": 1})


async def test_malformed_json_is_400(app: Quart) -> None:
    status, body = await call(
        app, "POST", "/users", data=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert status == 400 and "not valid JSON" in body["detail"]


async def test_request_parameter_is_injected(app: Quart) -> None:
    status, body = await call(app, "GET", "/whoami", headers={"User-Agent": "tester/1"})
    assert (status, body) == (200, {"agent": "tester/1"})


async def test_other_media_type_with_decoder(app: Quart) -> None:
    headers = {"Content-Type": "text/csv"}
    assert await call(app, "POST", "/sum", data=b"1,2,3", headers=headers) == (200, 6)
    status, body = await call(app, "POST", "/sum", data=b"1,x", headers=headers)
    assert status == 400 and "could not decode the text/csv body" in body["detail"]
    assert await call(app, "POST", "/sum", json={"values": [4, 5]}) == (200, 9)


def test_a_body_decoder_gets_a_request_built_only_if_it_uses_one(registry: Registry) -> None:
    """Decoders that read only the bytes never cost a Quart request (nor, in a worker, Quart)."""
    from podroute.binding import Binder
    from podroute.quart_fallback import QuartFallback

    def bytes_only(raw: bytes, request: Request) -> dict[str, Any]:
        return {"values": [int(v) for v in raw.decode().split(",")]}

    def reads_the_request(raw: bytes, request: Request) -> dict[str, Any]:
        return {"values": [int(request.args["scale"]) * int(v) for v in raw.decode().split(",")]}

    @remote(api, method="POST", path="/plain-sum")
    @accepts("text/csv", bytes_only)
    async def plain_sum(values: list[int]) -> int:
        return sum(values)

    @remote(api, method="POST", path="/scaled-sum")
    @accepts("text/csv", reads_the_request)
    async def scaled_sum(values: list[int]) -> int:
        return sum(values)

    app = create_app(api, registry=registry, settings=AppSettings())
    scope = {
        "type": "http", "method": "POST", "scheme": "http", "path": "/scaled-sum",
        "query_string": b"scale=10", "headers": [], "http_version": "1.1", "root_path": "",
    }  # fmt: skip
    quart_request = QuartFallback(app).request(scope, b"1,2")
    built: list[str] = []

    def make(name: str) -> Any:
        built.append(name)
        return quart_request

    routes = {route.name: route for route in registry.entry(api).routes}
    plain = Binder(routes["plain_sum"]).bind_parts({}, b"", b"1,2", "text/csv", lambda: make("plain"))
    scaled = Binder(routes["scaled_sum"]).bind_parts({}, b"", b"1,2", "text/csv", lambda: make("scaled"))
    assert (plain, scaled) == ({"values": [1, 2]}, {"values": [10, 20]})
    assert built == ["scaled"]
