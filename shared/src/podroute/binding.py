"""Request -> function arguments, validated by pydantic.

For each route a `Binder` is built once, when the app is created:

| where the value comes from | which parameters |
| --- | --- |
| the URL path | parameters named in `{...}` segments, typed from their annotations |
| the query string | the other parameters of GET and DELETE routes |
| a JSON object body | the other parameters of POST, PUT and PATCH routes, keyed by name |
| the whole JSON body | a body route's only parameter, if it is a pydantic model, dataclass or TypedDict |
| the request itself | a parameter annotated `quart.Request` |
| the `Last-Event-ID` header | a parameter annotated `LastEventId` (`podroute.params`) |
| a startup hook's return value | a parameter annotated `Startup[T]` (`podroute.params`) |
| the connection | a WebSocket route's `WebSocket[In, Out]` (its other parameters: path and query) |

Unknown query or body keys are rejected (422). The same models produce the OpenAPI schema.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast, get_args, get_origin
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.fields import FieldInfo
from typing_extensions import TypedDict, is_typeddict

from podroute.errors import MalformedBodyError, RequestValidationError, UnsupportedMediaTypeError
from podroute.params import is_last_event_id, startup_target
from podroute.registry import Route
from podroute.sockets import MessageCodec, socket_types

if TYPE_CHECKING:
    import quart

QUERY_METHODS = frozenset({"GET", "DELETE"})
BodyDecoder = Callable[[bytes, "quart.Request"], Any]
"""Turns a raw request body into the route's arguments (a mapping), or None to fall back to JSON."""


class BodyStream(Protocol):
    """Decodes a body while it arrives: fed each chunk in order, then asked for the result."""

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the body (never raises: a body it cannot take makes result None)."""

    def result(self) -> Any:
        """The route's arguments (as the decoder would give them), or None to decode the whole body."""


STREAM_ATTRIBUTE = "start_stream"
"""A decoder with a `start_stream()` method returning a `BodyStream` may be fed the body as it
arrives (the lean path does): its result, when not None, is used instead of calling the decoder."""

_DECODERS_ATTRIBUTE = "__podroute_body_decoders__"
_FORBID_EXTRA = ConfigDict(extra="forbid")


def accepts(media_type: str, decoder: BodyDecoder, *, description: str = "") -> Callable[[Any], Any]:
    """Let a body route also accept `media_type`, decoded by `decoder` into its arguments.

    The decoder gets the raw body and the request and returns a mapping of argument names to
    values (validated like a JSON body), or None to let the body be parsed as JSON. Registering
    `application/json` replaces the default JSON parsing, e.g. with a faster one for large arrays.
    """

    def decorate(function: Any) -> Any:
        decoders = dict(getattr(function, _DECODERS_ATTRIBUTE, {}))
        decoders[media_type.lower()] = (decoder, description or (decoder.__doc__ or "").strip())
        setattr(function, _DECODERS_ATTRIBUTE, decoders)
        return function

    return decorate


async def read_body(request: quart.Request) -> bytes:
    """The raw request body (Quart enforces MAX_CONTENT_LENGTH while reading it: 413)."""
    data = await request.get_data(cache=False, as_text=False)
    return data if isinstance(data, bytes) else data.encode()


class RequestOnDemand:
    """The request a body decoder gets: the `quart.Request` is built when the decoder first uses it.

    Most decoders read only the bytes (JSON numbers, .npy); building a Quart request for them cost
    every such request, and a worker its start-up-free path (`podroute.worker_app`).
    """

    __slots__ = ("_make", "_request")

    def __init__(self, make: Callable[[], quart.Request]) -> None:
        self._make = make
        self._request: quart.Request | None = None

    def __getattr__(self, name: str) -> Any:
        if self._request is None:
            self._request = self._make()
        return getattr(self._request, name)


def _media_type(content_type: str | None) -> str:
    return content_type.split(";", 1)[0].strip().lower() if content_type else ""


def _is_json_media_type(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def body_decoders(function: Any) -> dict[str, tuple[BodyDecoder, str]]:
    """The media types a route accepts besides JSON, with their decoders and descriptions."""
    return dict(getattr(function, _DECODERS_ATTRIBUTE, {}))


def is_whole_body_type(annotation: Any) -> bool:
    """True for types that take a whole JSON object: pydantic models, dataclasses, TypedDicts."""
    return (
        (inspect.isclass(annotation) and issubclass(annotation, BaseModel))
        or dataclasses.is_dataclass(annotation)
        or is_typeddict(annotation)
    )


def _is_request_type(annotation: Any) -> bool:
    # A module that annotates with quart.Request has imported Quart; until then nothing can be one.
    module = sys.modules.get("quart.wrappers.request")
    return module is not None and inspect.isclass(annotation) and issubclass(annotation, module.Request)


def _is_sequence_type(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _is_sequence_type(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence_type(arg) for arg in get_args(annotation) if arg is not type(None))
    return origin in (list, tuple, set, frozenset)


def _model_name(function_name: str, suffix: str) -> str:
    return "".join(part.capitalize() for part in function_name.split("_")) + suffix


def _forbid_extra_model(model: type[BaseModel]) -> type[BaseModel]:
    if model.model_config.get("extra") is not None:
        return model
    return type(model.__name__, (model,), {"model_config": _FORBID_EXTRA, "__module__": model.__module__})


def _strict_adapter(annotation: Any) -> TypeAdapter[Any]:
    """An adapter for a whole-body type that rejects unknown keys unless the type allows them."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return TypeAdapter(_forbid_extra_model(annotation))
    if getattr(annotation, "__pydantic_config__", None) is not None:
        return TypeAdapter(annotation)
    if is_typeddict(annotation):
        hints = typing.get_type_hints(annotation, include_extras=True)
        make_typed_dict: Any = TypedDict
        strict_dict = make_typed_dict(annotation.__name__, hints, total=annotation.__total__)
        strict_dict.__pydantic_config__ = _FORBID_EXTRA
        return TypeAdapter(strict_dict)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        subclass = type(annotation.__name__, (annotation,), {"__module__": annotation.__module__})
        return TypeAdapter(pydantic_dataclass(config=_FORBID_EXTRA)(subclass))
    return TypeAdapter(annotation)


def _errors_from(error: ValidationError, where: str) -> list[dict[str, Any]]:
    return [
        {"loc": [where, *item["loc"]], "msg": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_input=False, include_context=False)
    ]


def _json_error_detail(error: ValidationError) -> str | None:
    for item in error.errors(include_url=False, include_input=False):
        if item["type"] == "json_invalid":
            reason = item.get("ctx", {}).get("error", "invalid JSON")
            return (
                f"the request body is not valid JSON ({reason}); send a JSON object with "
                "Content-Type: application/json"
            )
    return None


class Binder:
    """Binds requests (or `/execute` keyword arguments) to one route's function parameters."""

    def __init__(self, route: Route) -> None:
        self.route = route
        hints = typing.get_type_hints(route.function, include_extras=True)
        signature = inspect.signature(route.function)
        path_names = set(route.path_params)
        self.request_param: str | None = None
        self.last_event_param: str | None = None
        self.startup_params: dict[str, Any] = {}
        """`Startup[T]` parameters: name -> T."""
        self.socket_param: str | None = None
        self.codec: MessageCodec | None = None
        self.path_adapters: dict[str, TypeAdapter[Any]] = {}
        fields: dict[str, Any] = {}
        for name, parameter in signature.parameters.items():
            annotation = hints.get(name, Any)
            if _is_request_type(annotation):
                self.request_param = name
            elif is_last_event_id(annotation):
                self.last_event_param = name
            elif (target := startup_target(annotation)) is not None:
                self.startup_params[name] = target
            elif (types_ := socket_types(annotation)) is not None:
                self._bind_socket(name, types_)
            elif name in path_names:
                self.path_adapters[name] = TypeAdapter(annotation)
            else:
                default = ... if parameter.default is inspect.Parameter.empty else parameter.default
                fields[name] = (annotation, default)
        if route.is_websocket and self.request_param is not None:
            raise TypeError("a WebSocket route cannot take a quart.Request; read socket.headers instead")
        if route.is_websocket and self.socket_param is None:
            raise TypeError(
                "a WebSocket route needs a parameter annotated WebSocket[...], e.g. socket: WebSocket[str]"
            )
        self.uses_query = route.method in QUERY_METHODS or route.is_websocket
        self.whole_body_param: str | None = None
        self.whole_body_adapter: TypeAdapter[Any] | None = None
        self.model: type[BaseModel] | None = None
        self.list_fields: frozenset[str] = frozenset()
        self.decoders = {media: decoder for media, (decoder, _) in body_decoders(route.function).items()}
        self.streams: dict[str, Callable[[], BodyStream]] = {
            media: getattr(decoder, STREAM_ATTRIBUTE)
            for media, decoder in self.decoders.items()
            if callable(getattr(decoder, STREAM_ATTRIBUTE, None))
        }
        if self.uses_query:
            self.model = self._fields_model(fields, "Query")
            self.list_fields = frozenset(n for n, (ann, _) in fields.items() if _is_sequence_type(ann))
        elif len(fields) == 1 and is_whole_body_type(next(iter(fields.values()))[0]):
            ((self.whole_body_param, (annotation, _default)),) = fields.items()
            self.whole_body_adapter = _strict_adapter(annotation)
        else:
            self.model = self._fields_model(fields, "Body")

    def _bind_socket(self, name: str, types_: tuple[Any, Any]) -> None:
        if not self.route.is_websocket:
            raise TypeError(f"parameter {name!r} is a WebSocket, but only method='WEBSOCKET' routes get one")
        if self.socket_param is not None:
            raise TypeError(f"parameters {self.socket_param!r} and {name!r} are both WebSockets; keep one")
        self.socket_param = name
        receive_type, send_type = types_
        codec = MessageCodec(receive_type, send_type, None)
        if codec.kind == "json":
            codec.adapter = _strict_adapter(receive_type)
        self.codec = codec

    def _fields_model(self, fields: dict[str, Any], suffix: str) -> type[BaseModel]:
        name = _model_name(self.route.name, suffix)
        model: type[BaseModel] = create_model(name, __config__=_FORBID_EXTRA, **fields)
        model.__module__ = getattr(self.route.function, "__module__", __name__)
        return model

    @property
    def body_schema_type(self) -> Any:
        """What the body is validated against (model class or annotation); None for query routes."""
        if self.uses_query:
            return None
        if self.whole_body_adapter is not None:
            return self.whole_body_adapter
        return self.model

    def query_fields(self) -> dict[str, FieldInfo]:
        """Query parameters of GET/DELETE and WebSocket routes by name."""
        return dict(self.model.model_fields) if (self.uses_query and self.model) else {}

    def bind_parts(
        self,
        path_args: Mapping[str, str],
        query_string: bytes,
        body: bytes,
        content_type: str | None,
        request: Callable[[], quart.Request],
        streamed: Any = None,
    ) -> dict[str, Any]:
        """Validate a request given as its parts; return the keyword arguments for the function.

        `request` builds a Quart request on demand, for a parameter annotated `quart.Request` or a
        body decoder; routes that need neither never pay for one. `streamed` is the result of the
        `BodyStream` (`open_stream`) that was fed this body, used in place of its decoder.
        """
        errors: list[dict[str, Any]] = []
        kwargs = self._bind_path(path_args, errors) if path_args else {}
        if self.uses_query:
            self._bind_query(query_string, kwargs, errors)
        else:
            self._bind_body(body, content_type, request, kwargs, errors, streamed)
        if errors:
            raise RequestValidationError(errors)
        if self.request_param is not None:
            kwargs[self.request_param] = request()
        return kwargs

    def open_stream(self, content_type: str | None) -> BodyStream | None:
        """A `BodyStream` for a body of `content_type`, when its decoder can take one as it arrives."""
        factory = self.streams.get(_media_type(content_type)) if self.streams else None
        return factory() if factory is not None else None

    def bind_kwargs(self, values: Mapping[str, Any], request: quart.Request) -> dict[str, Any]:
        """Validate keyword arguments given by name (the `/execute` call) exactly like a request."""
        errors: list[dict[str, Any]] = []
        kwargs = self._bind_path({n: values[n] for n in self.path_adapters if n in values}, errors)
        for name in self.path_adapters:
            if name not in values:
                errors.append({"loc": ["kwargs", name], "msg": "Field required", "type": "missing"})
        rest = {k: v for k, v in values.items() if k not in self.path_adapters}
        if self.whole_body_adapter is not None and self.whole_body_param is not None:
            rest = rest.get(self.whole_body_param, {}) if set(rest) <= {self.whole_body_param} else rest
            self._validate_whole_body(rest, kwargs, errors, "kwargs")
        elif self.model is not None:
            self._validate_fields(rest, kwargs, errors, "kwargs")
        if errors:
            raise RequestValidationError(errors)
        if self.request_param is not None:
            kwargs[self.request_param] = request
        return kwargs

    def _bind_path(self, view_args: Mapping[str, Any], errors: list[dict[str, Any]]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name, value in view_args.items():
            adapter = self.path_adapters.get(name)
            if adapter is None:
                continue
            try:
                kwargs[name] = adapter.validate_python(value)
            except ValidationError as error:
                errors.extend(
                    {**e, "loc": ["path", name, *e["loc"][1:]]} for e in _errors_from(error, "path")
                )
        return kwargs

    def _bind_query(self, query_string: bytes, kwargs: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        if not query_string:  # the common case: skip parsing an empty query string
            self._validate_fields({}, kwargs, errors, "query")
            return
        pairs = parse_qsl(query_string.decode("utf-8", "replace"), keep_blank_values=True, errors="replace")
        values: dict[str, Any] = {}
        for key, value in pairs:
            if key in self.list_fields:
                values.setdefault(key, []).append(value)
            else:
                values.setdefault(key, value)
        self._validate_fields(values, kwargs, errors, "query")

    def _bind_body(
        self,
        raw: bytes,
        content_type: str | None,
        request: Callable[[], quart.Request],
        kwargs: dict[str, Any],
        errors: list[dict[str, Any]],
        streamed: Any = None,
    ) -> None:
        media_type = _media_type(content_type)
        decoded = streamed
        if decoded is None and media_type in self.decoders:
            decoded = self._decode(raw, media_type, request)
        if decoded is not None:
            if self.whole_body_adapter is not None:
                self._validate_whole_body(decoded, kwargs, errors, "body")
            else:
                self._validate_fields(decoded, kwargs, errors, "body")
            return
        if media_type and not _is_json_media_type(media_type) and media_type not in self.decoders:
            raise UnsupportedMediaTypeError(media_type, sorted(self.decoders))
        if not raw.strip():
            raw = b"{}"
        try:
            if self.whole_body_adapter is not None and self.whole_body_param is not None:
                kwargs[self.whole_body_param] = self.whole_body_adapter.validate_json(raw)
            elif self.model is not None:
                kwargs.update(self.model.__pydantic_validator__.validate_json(raw).__dict__)
        except ValidationError as error:
            detail = _json_error_detail(error)
            if detail is not None:
                raise MalformedBodyError(detail) from None
            errors.extend(_errors_from(error, "body"))

    def _decode(self, raw: bytes, media_type: str, request: Callable[[], quart.Request]) -> Any:
        try:
            return self.decoders[media_type](raw, cast("quart.Request", RequestOnDemand(request)))
        except ValueError as error:
            raise MalformedBodyError(f"could not decode the {media_type} body: {error}") from None

    def _validate_fields(
        self, values: Any, kwargs: dict[str, Any], errors: list[dict[str, Any]], where: str
    ) -> None:
        if self.model is None:
            return
        try:
            kwargs.update(self.model.model_validate(values).__dict__)
        except ValidationError as error:
            errors.extend(_errors_from(error, where))

    def _validate_whole_body(
        self, values: Any, kwargs: dict[str, Any], errors: list[dict[str, Any]], where: str
    ) -> None:
        assert self.whole_body_adapter is not None and self.whole_body_param is not None
        try:
            kwargs[self.whole_body_param] = self.whole_body_adapter.validate_python(values)
        except ValidationError as error:
            errors.extend(_errors_from(error, where))
