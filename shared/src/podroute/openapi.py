"""OpenAPI 3.1 for an app, generated from the same pydantic models that bind requests.

OpenAPI has no WebSocket object, so WebSocket routes are documented twice: as the `GET` that opens
them (101, or 426 without the upgrade), which puts them in `/docs`' route list with their message
types in the description, and in a top-level `x-websockets` extension mapping each path to its
operationId, the JSON Schemas of the messages it receives and sends, the message size limit and the
close codes it uses.
"""

from __future__ import annotations

import inspect
import typing
from collections import Counter
from typing import Any

from pydantic import BaseModel, TypeAdapter

from podroute.binding import body_decoders
from podroute.errors import PROBLEM_CONTENT_TYPE, PROBLEM_SCHEMA, problem_body
from podroute.registry import Route
from podroute.state import BoundRoute, PodRouteState

OPENAPI_VERSION = "3.1.0"
_REF_TEMPLATE = "#/components/schemas/{model}"
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


class _Schemas:
    """Collects named schemas into `components.schemas` and hands out `$ref`s."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}

    def of(self, target: Any, mode: str = "validation") -> dict[str, Any]:
        adapter = target if isinstance(target, TypeAdapter) else TypeAdapter(target)
        schema = adapter.json_schema(ref_template=_REF_TEMPLATE, mode=mode)  # type: ignore[arg-type]
        for name, definition in schema.pop("$defs", {}).items():
            self.components.setdefault(name, definition)
        title = schema.get("title")
        if schema.get("type") == "object" and isinstance(title, str) and "properties" in schema:
            self.components.setdefault(title, schema)
            return {"$ref": _REF_TEMPLATE.format(model=title)}
        return schema


def _docstring_parts(function: Any) -> tuple[str, str]:
    doc = inspect.getdoc(function) or ""
    summary, _, rest = doc.partition("\n")
    return summary.strip(), rest.strip()


def _problem_responses(codes: list[int]) -> dict[str, Any]:
    descriptions = {
        400: "Bad input: the route raised ValueError, or the body is not valid JSON",
        404: "No such route or function",
        413: "The body is larger than the limit",
        422: "The request does not match the parameters; `errors` lists each field",
        426: "A WebSocket route asked for without the WebSocket upgrade",
        500: "Internal error; the detail carries a request id for the logs",
        503: "The worker is still starting or failed to start",
    }
    return {
        str(code): {
            "description": descriptions[code],
            "content": {
                PROBLEM_CONTENT_TYPE: {
                    "schema": _PROBLEM_REF,
                    "example": problem_body(code, descriptions[code], "3f1c0e7a9b2d4c58a6e1f0b7c2d9e4a1"),
                }
            },
        }
        for code in codes
    }


def _success_response(route: Route, schemas: _Schemas) -> dict[str, Any]:
    if inspect.isasyncgenfunction(route.function):
        return {
            "description": "Server-Sent Events: one `data: <json>` event per item",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    annotation = typing.get_type_hints(route.function, include_extras=True).get("return")
    if annotation is None or annotation is type(None):
        return {"description": "Success"}
    try:
        schema = schemas.of(annotation, mode="serialization")
    except Exception:  # Responses and other non-schema types are documented without a schema
        return {"description": "Success"}
    return {"description": "Success", "content": {"application/json": {"schema": schema}}}


def _parameters(bound: BoundRoute, schemas: _Schemas) -> list[dict[str, Any]]:
    binder = bound.binder
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schemas.of(adapter)}
        for name, adapter in binder.path_adapters.items()
    ]
    if binder.uses_query and binder.model is not None:
        properties = binder.model.model_json_schema(ref_template=_REF_TEMPLATE).get("properties", {})
        for name, info in binder.query_fields().items():
            parameter: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": info.is_required(),
                "schema": properties.get(name, {}),
            }
            if info.description:
                parameter["description"] = info.description
            parameters.append(parameter)
    return parameters


def _request_body(bound: BoundRoute, schemas: _Schemas) -> dict[str, Any] | None:
    target = bound.binder.body_schema_type
    if target is None:
        return None
    if isinstance(target, type) and issubclass(target, BaseModel) and not target.model_fields:
        return None
    schema = schemas.of(target)
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    for media_type, (_, description) in body_decoders(bound.route.function).items():
        if media_type != "application/json":
            media_schema: dict[str, Any] = {"type": "string", "contentMediaType": media_type}
            if description:  # a Media Type Object has no description of its own; its schema does
                media_schema["description"] = description
            content[media_type] = {"schema": media_schema}
    required = bound.binder.whole_body_param is not None or bool(
        isinstance(target, type)
        and issubclass(target, BaseModel)
        and any(f.is_required() for f in target.model_fields.values())
    )
    return {"required": required, "content": content}


def _operation(bound: BoundRoute, schemas: _Schemas, operation_id: str) -> dict[str, Any]:
    summary, description = _docstring_parts(bound.route.function)
    has_body = not bound.binder.uses_query
    codes = [400, *([413] if has_body else []), 422, 500, 503]
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary or bound.route.name.replace("_", " "),
        "tags": [bound.mount.tag or bound.mount.resource.name],
        "parameters": _parameters(bound, schemas),
        "responses": {"200": _success_response(bound.route, schemas), **_problem_responses(codes)},
    }
    if description:
        operation["description"] = description
    body = _request_body(bound, schemas)
    if body is not None:
        operation["requestBody"] = body
    return operation


_CLOSE_CODES = {
    "1000": "the route returned",
    "1001": "the worker is going away (drained by the runtime's gateway); reconnect",
    "1003": "a text message where binary is expected, or the reverse",
    "1008": "a message did not validate, or the route raised ValueError; the reason says why",
    "1009": "a message is larger than the limit",
    "1011": "an internal error; the reason carries a request id for the logs",
}


def _message_schema(message_type: Any, schemas: _Schemas, mode: str) -> dict[str, Any]:
    if message_type is Any:
        return {"description": "text, bytes, or any JSON value"}
    if message_type is str:
        return {"type": "string", "description": "a text message"}
    if message_type is bytes:
        return {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "description": "a binary message",
        }
    if message_type == str | bytes:
        return {"description": "a text or binary message, as sent"}
    return schemas.of(message_type, mode=mode)


def _socket_contract(bound: BoundRoute, schemas: _Schemas, max_message_bytes: int) -> dict[str, Any]:
    codec = bound.binder.codec
    assert codec is not None
    return {
        "receive": _message_schema(codec.receive_type, schemas, "validation"),
        "send": _message_schema(codec.send_type, schemas, "serialization"),
        "maxMessageBytes": max_message_bytes,
        "closeCodes": _CLOSE_CODES,
    }


def _describe_message(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return f"JSON `{ref.rsplit('/', 1)[-1]}` (see Schemas)"
    return str(schema.get("description", "JSON"))


def _socket_operation(
    bound: BoundRoute, schemas: _Schemas, operation_id: str, contract: dict[str, Any]
) -> dict[str, Any]:
    summary, description = _docstring_parts(bound.route.function)
    messages = (
        f"**WebSocket route**: open it with `GET` + `Upgrade: websocket` (a plain GET is answered "
        f"426). It receives {_describe_message(contract['receive'])} and sends "
        f"{_describe_message(contract['send'])}; messages up to {contract['maxMessageBytes']} bytes. "
        "Close codes: " + "; ".join(f"{code} {why}" for code, why in contract["closeCodes"].items()) + "."
    )
    return {
        "operationId": operation_id,
        "summary": summary or bound.route.name.replace("_", " "),
        "description": f"{description}\n\n{messages}" if description else messages,
        "tags": [bound.mount.tag or bound.mount.resource.name],
        "parameters": _parameters(bound, schemas),
        "responses": {
            "101": {"description": "Switching Protocols: the WebSocket is open"},
            **_problem_responses([422, 426, 503]),
        },
        "x-websocket": contract,
    }


def _operation_ids(routes: list[BoundRoute]) -> list[str]:
    counts = Counter(b.route.name for b in routes)
    return [
        b.route.name
        if counts[b.route.name] == 1
        else f"{b.mount.tag or b.mount.resource.name}_{b.route.name}"
        for b in routes
    ]


def _health_operation(health_path: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": "ping",
            "summary": "Worker health",
            "description": "200 when ready, 204 while startup hooks run, 503 if startup failed.",
            "tags": ["worker"],
            "responses": {
                "200": {
                    "description": "Ready",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "204": {"description": "Initializing"},
                **_problem_responses([503]),
            },
        }
    }


def _execute_operation(prefix: str, tag: str, names: list[str]) -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"execute_{tag}" if prefix else "execute",
            "summary": "Call a registered function by name (development only)",
            "description": "Runs one of this resource's registered functions with the same validation "
            "as its route. It never evaluates code sent by the caller. Absent on deployed resources.",
            "tags": [tag],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["function"],
                            "additionalProperties": False,
                            "properties": {
                                "function": {"type": "string", "enum": names},
                                "kwargs": {"type": "object"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "The function's result",
                    "content": {
                        "application/json": {"schema": {"type": "object", "properties": {"result": {}}}}
                    },
                },
                **_problem_responses([400, 404, 422, 500, 503]),
            },
        }
    }


def build_openapi(state: PodRouteState) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an app built by `create_app`."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    sockets: dict[str, dict[str, Any]] = {}
    ids = _operation_ids(state.routes)
    for bound, operation_id in zip(state.routes, ids, strict=True):
        if not bound.route.is_websocket:
            operation = _operation(bound, schemas, operation_id)
            paths.setdefault(bound.full_path, {})[bound.route.method.lower()] = operation
    for bound, operation_id in zip(state.routes, ids, strict=True):
        if bound.route.is_websocket:
            contract = _socket_contract(bound, schemas, state.settings.max_message_bytes)
            operation = _socket_operation(bound, schemas, operation_id, contract)
            sockets[bound.full_path] = {
                "operationId": operation_id,
                "summary": operation["summary"],
                **contract,
            }
            paths.setdefault(bound.full_path, {}).setdefault("get", operation)
    for mount in state.mounts:
        if mount.resource.live:
            names = [b.route.name for b in state.routes if b.mount is mount and not b.route.is_websocket]
            tag = mount.tag or mount.resource.name
            paths[f"{mount.prefix}/execute"] = _execute_operation(mount.prefix, tag, names)
    paths[state.settings.health_path] = _health_operation(state.settings.health_path)
    tags = [
        {"name": m.tag or m.resource.name, "description": f"{m.resource.kind} resource {m.resource.name!r}"}
        for m in state.mounts
    ]
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": state.settings.title, "version": "1.0.0"},
        "tags": tags,
        "paths": paths,
        "components": {"schemas": schemas.components},
    }
    if sockets:
        document["x-websockets"] = sockets
    return document
