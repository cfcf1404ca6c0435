"""`create_app`: a Quart app serving the routes of one or more resources.

Each resource is mounted, optionally under a URL prefix. The app adds the health path (`/ping`),
`/openapi.json`, `/docs`, and `/execute` for live (development) resources. Every response carries
`X-Request-ID`; every error is problem+json. `quart_app` is the Quart half alone, which the worker
app of `podroute serve` (`podroute.worker_app`) builds on the first request that needs it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from podroute.binding import read_body
from podroute.dispatch import REQUEST_ID_HEADER, call_route, choose_request_id
from podroute.docs import register_docs
from podroute.errors import (
    PROBLEM_CONTENT_TYPE,
    HTTPError,
    MalformedBodyError,
    RequestValidationError,
    problem_body,
)
from podroute.lifecycle import Lifecycle
from podroute.quart_fallback import install_dispatch
from podroute.registry import Registry
from podroute.resources import Resource
from podroute.responses import JSON_CONTENT_TYPE, encode_json
from podroute.settings import AppSettings
from podroute.state import BoundRoute, Mount, PodRouteState, StartupState, build_state, not_ready_error

__all__ = [
    "BoundRoute",
    "Mount",
    "PodRouteState",
    "StartupState",
    "create_app",
    "podroute_state",
    "request_id",
]

logger = logging.getLogger("podroute.app")

_EXECUTE_KEYS = frozenset({"function", "kwargs"})


def request_id() -> str:
    """The current Quart request's id: the client's `X-Request-ID` if sane, else a new one."""
    return choose_request_id(request.headers.get(REQUEST_ID_HEADER))


def _json_response(value: Any, status: int = 200) -> Response:
    return Response(encode_json(value), status=status, content_type=JSON_CONTENT_TYPE)


def _problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = Response(orjson.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)
    if headers:
        response.headers.update(headers)
    return response


def _with_request_id(response: Response, rid: str) -> Response:
    response.headers[REQUEST_ID_HEADER] = rid
    return response


def _make_execute_view(routes: dict[str, BoundRoute]) -> Callable[[], Awaitable[Response]]:
    async def execute() -> Response:
        rid = request_id()
        raw = await read_body(request)
        try:
            payload = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError as error:
            raise MalformedBodyError(f"the request body is not valid JSON ({error})") from None
        name, kwargs = _parse_execute_payload(payload)
        bound = routes.get(name)
        if bound is None:
            available = ", ".join(sorted(routes)) or "none"
            raise HTTPError(404, f"no registered function named {name!r}; available: {available}")
        if bound.state.status != "ready":
            raise not_ready_error(bound.state)
        function = bound.route.function
        bound_kwargs = bound.binder.bind_kwargs(kwargs, request)
        bound_kwargs.update(bound.startup_kwargs())
        if bound.binder.last_event_param is not None:
            bound_kwargs[bound.binder.last_event_param] = request.headers.get("Last-Event-ID")
        if inspect.isasyncgenfunction(function):
            result: Any = [item async for item in function(**bound_kwargs)]
        else:
            result = await call_route(function, bound_kwargs, inspect.iscoroutinefunction(function))
        if isinstance(result, Response):
            return _with_request_id(result, rid)
        return _with_request_id(_json_response({"result": result}), rid)

    return execute


def _parse_execute_payload(payload: Any) -> tuple[str, dict[str, Any]]:
    def invalid(loc: list[Any], msg: str, kind: str) -> HTTPError:
        return RequestValidationError([{"loc": ["body", *loc], "msg": msg, "type": kind}])

    if not isinstance(payload, dict):
        raise invalid([], 'expected an object {"function": "<name>", "kwargs": {...}}', "dict_type")
    unknown = sorted(set(payload) - _EXECUTE_KEYS)
    if unknown:
        raise invalid(
            [unknown[0]], "unknown key; /execute takes only 'function' and 'kwargs'", "extra_forbidden"
        )
    name = payload.get("function")
    if not isinstance(name, str) or not name:
        raise invalid(["function"], "the name of a registered function is required", "missing")
    kwargs = payload.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise invalid(["kwargs"], "kwargs must be an object of argument names to values", "dict_type")
    return name, kwargs


def _register_lifecycle(app: Quart, lifecycle: Lifecycle) -> None:
    app.before_serving(lifecycle.start)
    app.after_serving(lifecycle.stop)


def _register_request_ids(app: Quart) -> None:
    """Give every response an X-Request-ID; routes and errors set theirs (matching the body)."""

    @app.after_request
    async def add_request_id(response: Response) -> Response:
        if REQUEST_ID_HEADER not in response.headers:
            response.headers[REQUEST_ID_HEADER] = request_id()
        return response


def _register_errors(app: Quart) -> None:
    @app.errorhandler(HTTPError)
    async def handle_http_error(error: HTTPError) -> Response:
        rid = request_id()
        return _with_request_id(_problem_response(error.status, error.to_problem(rid), error.headers), rid)

    @app.errorhandler(HTTPException)
    async def handle_werkzeug_error(error: HTTPException) -> Response:
        rid = request_id()
        status = error.code or 500
        headers: dict[str, str] = {}
        if isinstance(error, NotFound):
            detail = f"no route matches {request.method} {request.path}; see /docs for the routes"
        elif isinstance(error, MethodNotAllowed):
            allowed = ", ".join(sorted(set(error.valid_methods or [])))
            headers["Allow"] = allowed
            detail = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
        elif isinstance(error, RequestEntityTooLarge):
            limit = app.config["MAX_CONTENT_LENGTH"]
            detail = f"the request body is larger than the {limit}-byte limit; send less data"
        else:
            detail = error.description or "the request could not be handled"
        return _with_request_id(_problem_response(status, problem_body(status, detail, rid), headers), rid)

    @app.errorhandler(Exception)
    async def handle_unexpected(error: Exception) -> Response:
        rid = request_id()
        logger.error(
            "unhandled error in %s %s",
            request.method,
            request.path,
            exc_info=error,
            extra={"request_id": rid},
        )
        detail = f"an internal error occurred; quote request id {rid} when reporting it"
        return _with_request_id(_problem_response(500, problem_body(500, detail, rid)), rid)


def create_app(
    *resources: Resource | Mount,
    registry: Registry | None = None,
    settings: AppSettings | None = None,
) -> Quart:
    """Build a Quart app serving the routes declared for `resources` (or `Mount`s).

    `registry` defaults to the current one; `settings` to `AppSettings.from_env()`. The lean path
    (`podroute.dispatch`) serves the `@remote` routes in front of Quart; the app's lifespan runs
    the startup hooks. Add plain Quart routes, hooks and extensions to it as to any Quart app.
    """
    state = build_state(resources, registry, settings)
    app = quart_app(state)
    _register_lifecycle(app, Lifecycle(state))
    install_dispatch(app, state)
    return app


def quart_app(state: PodRouteState) -> Quart:
    """The Quart half of an app serving `state`: docs, `/execute`, errors and request ids.

    Neither the lean path nor the startup hooks are installed: `create_app` adds both, and the
    worker app of `podroute serve` builds this only when a request needs it.
    """
    app = Quart(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=state.settings.max_body_bytes,
        PROVIDE_AUTOMATIC_OPTIONS=False,
        BODY_TIMEOUT=state.settings.body_timeout,
    )
    app.url_map.strict_slashes = False
    app.extensions["podroute"] = state
    for mount in state.mounts:
        if mount.resource.live:
            named = {b.route.name: b for b in state.routes if b.mount is mount and not b.route.is_websocket}
            app.add_url_rule(
                f"{mount.prefix}/execute",
                f"{mount.prefix}:podroute_execute",
                _make_execute_view(named),
                methods=["POST"],
            )
    register_docs(app, state)
    _register_errors(app)
    _register_request_ids(app)
    return app


def podroute_state(app: Quart) -> PodRouteState:
    """The PodRoute state of an app made by `create_app`."""
    state: PodRouteState = app.extensions["podroute"]
    return state
