"""WebSocket route declarations, message decoding, startup values, SSE framing and the OpenAPI
extension: no network."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import BaseModel
from quart import Request

from podroute import (
    AppSettings,
    CpuLiveLoadBalancer,
    Registry,
    RouteDeclarationError,
    ServerSentEvent,
    Startup,
    WebSocket,
    create_app,
    on_startup,
    remote,
)
from podroute.app import podroute_state
from podroute.binding import Binder
from podroute.openapi import build_openapi
from podroute.registry import route_of
from podroute.sockets import (
    MessageRejectedError,
    UnsupportedMessageError,
    close_reason,
)
from podroute.sse import EventParser, encode_event

api = CpuLiveLoadBalancer(name="unit")
_names = itertools.count()


class Question(BaseModel):
    text: str


class Answer(BaseModel):
    answer: str


class Model:
    pass


def test_websocket_is_a_method_and_must_be_async(registry: Registry) -> None:
    @remote(api, method="websocket", path="/chat")
    async def chat(socket: WebSocket[str]) -> None:
        return None

    assert route_of(chat).method == "WEBSOCKET" and route_of(chat).is_websocket

    with pytest.raises(RouteDeclarationError, match="sync_chat: a WebSocket route must be an 'async def'"):

        @remote(api, method="WEBSOCKET", path="/sync")
        def sync_chat(socket: WebSocket[str]) -> None:
            return None

    with pytest.raises(RouteDeclarationError, match="or WEBSOCKET for a WebSocket route"):

        @remote(api, method="CONNECT", path="/x")
        async def connect(socket: WebSocket[str]) -> None:
            return None


def test_a_path_may_have_an_http_route_and_a_websocket(registry: Registry) -> None:
    @remote(api, method="GET", path="/chat")
    async def history() -> list[str]:
        return []

    @remote(api, method="WEBSOCKET", path="/chat")
    async def chat(socket: WebSocket[str]) -> None:
        return None

    with pytest.raises(RouteDeclarationError, match="WEBSOCKET /chat is already declared by chat"):

        @remote(api, method="WEBSOCKET", path="/chat")
        async def again(socket: WebSocket[str]) -> None:
            return None


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        ("no_socket", "a WebSocket route needs a parameter annotated WebSocket"),
        ("two_sockets", "are both WebSockets; keep one"),
        ("socket_on_http", "only method='WEBSOCKET' routes get one"),
        ("request_on_socket", "a WebSocket route cannot take a quart.Request"),
        ("missing_startup", "asks for Startup[Model] but no startup hook of resource 'unit'"),
    ],
)
def test_bad_declarations_fail_when_the_app_is_built(registry: Registry, declare: str, message: str) -> None:
    if declare == "no_socket":

        @remote(api, method="WEBSOCKET", path="/a")
        async def no_socket(room: str = "") -> None:
            return None

    elif declare == "two_sockets":

        @remote(api, method="WEBSOCKET", path="/a")
        async def two(a: WebSocket[str], b: WebSocket[str]) -> None:
            return None

    elif declare == "socket_on_http":

        @remote(api, method="POST", path="/a")
        async def http(a: WebSocket[str]) -> None:
            return None

    elif declare == "request_on_socket":

        @remote(api, method="WEBSOCKET", path="/a")
        async def with_request(a: WebSocket[str], request: Request) -> None:
            return None

    else:

        @remote(api, method="POST", path="/a")
        async def needs_model(model: Startup[Model]) -> None:
            return None

    with pytest.raises(RouteDeclarationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        create_app(api, registry=registry, settings=AppSettings())


def test_two_hooks_returning_the_same_type_are_ambiguous(registry: Registry) -> None:
    @on_startup(api)
    def first() -> Model:
        return Model()

    @on_startup(api)
    def second() -> Model:
        return Model()

    @remote(api, method="POST", path="/a")
    async def needs_model(model: Startup[Model]) -> None:
        return None

    with pytest.raises(RouteDeclarationError, match=r"several startup hooks return it \(first, second\)"):
        create_app(api, registry=registry, settings=AppSettings())


def test_startup_parameters_are_not_part_of_the_request(registry: Registry) -> None:
    @on_startup(api)
    async def load() -> Model:
        return Model()

    @remote(api, method="POST", path="/a")
    async def predict(text: str, model: Startup[Model]) -> None:
        return None

    app = create_app(api, registry=registry, settings=AppSettings())
    (bound,) = podroute_state(app).routes
    assert bound.startup_args == (("model", 0),)
    assert bound.binder.model is not None and set(bound.binder.model.model_fields) == {"text"}
    schema = build_openapi(podroute_state(app))["components"]["schemas"]["PredictBody"]
    assert set(schema["properties"]) == {"text"}


def _codec(registry: Registry, annotation: Any) -> Any:
    async def route(socket: annotation) -> None:  # type: ignore[valid-type]
        return None

    route.__annotations__ = {"socket": annotation, "return": None}
    route.__name__ = f"route_{next(_names)}"
    remote(api, method="WEBSOCKET", path=f"/{route.__name__}")(route)
    return Binder(route_of(route)).codec


def test_messages_are_decoded_by_the_declared_type(registry: Registry) -> None:
    text = _codec(registry, WebSocket[str])
    assert text.decode({"text": "hi"}) == "hi"
    with pytest.raises(UnsupportedMessageError, match="takes text messages"):
        text.decode({"bytes": b"hi"})
    raw = _codec(registry, WebSocket[str | bytes])
    assert raw.decode({"bytes": b"\x00"}) == b"\x00" and raw.decode({"text": "t"}) == "t"
    model = _codec(registry, WebSocket[Question, Answer])
    decoded = model.decode({"text": '{"text": "q"}'})
    assert isinstance(decoded, Question) and decoded.text == "q"  # a strict subclass, as for bodies
    assert model.decode({"bytes": b'{"text": "b"}'}).text == "b"
    with pytest.raises(MessageRejectedError, match=r"not a valid Question \(text: Field required; extra"):
        model.decode({"text": '{"extra": 1}'})
    with pytest.raises(MessageRejectedError, match="not valid JSON; send a JSON Question"):
        model.decode({"text": "{"})


def test_close_reasons_fit_a_close_frame() -> None:
    assert close_reason("short") == "short"
    long = close_reason("é" * 100)
    assert len(long.encode()) <= 123 and long.endswith("...")


def test_websockets_are_documented_as_an_extension_and_in_the_route_list(registry: Registry) -> None:
    @remote(api, method="WEBSOCKET", path="/ask/{room}")
    async def ask(socket: WebSocket[Question, Answer], room: str, loud: bool = False) -> None:
        """Answer questions in a room."""

    document = build_openapi(podroute_state(create_app(api, registry=registry, settings=AppSettings())))
    contract = document["x-websockets"]["/ask/{room}"]
    assert contract["operationId"] == "ask" and contract["summary"] == "Answer questions in a room."
    assert contract["receive"] == {"$ref": "#/components/schemas/Question"}
    assert contract["send"] == {"$ref": "#/components/schemas/Answer"}
    assert contract["maxMessageBytes"] == 1024 * 1024
    assert set(contract["closeCodes"]) == {"1000", "1001", "1003", "1008", "1009", "1011"}
    assert {"Question", "Answer"} <= set(document["components"]["schemas"])
    get = document["paths"]["/ask/{room}"]["get"]
    assert set(get["responses"]) == {"101", "422", "426", "503"}
    assert [(p["name"], p["in"]) for p in get["parameters"]] == [("room", "path"), ("loud", "query")]
    assert "receives JSON `Question`" in get["description"] and get["x-websocket"] == {
        k: v for k, v in contract.items() if k not in ("operationId", "summary")
    }
    assert "websocket" not in document["paths"]["/ask/{room}"]
    assert (
        "ask"
        not in document["paths"]["/execute"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]["function"]["enum"]
    )


def test_event_frames_and_parsing_round_trip() -> None:
    frame = encode_event(b"line one\nline two", "note", "7", 1500)
    assert frame == b"event: note\nid: 7\nretry: 1500\ndata: line one\ndata: line two\n\n"
    parser = EventParser()
    events = [parser.feed(line) for line in frame.decode().split("\n")]
    assert [e for e in events if e is not None] == [ServerSentEvent("line one\nline two", "note", "7", 1500)]
    assert parser.feed(": a comment") is None
    with pytest.raises(ValueError, match="cannot contain line breaks"):
        encode_event(b"x", event_id="1\n2")
