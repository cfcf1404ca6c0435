"""`create_app`: a Quart app serving the routes of one or more resources.

Each resource is mounted, optionally under a URL prefix. The app adds the health path (`/ping`),
`/openapi.json`, `/docs`, and `/execute` for live (development) resources. Every response carries
`X-Request-ID`; every error is problem+json.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from pydantic import PydanticSchemaGenerationError, PydanticUserError
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from podroute.binding import Binder, read_body
from podroute.dispatch import REQUEST_ID_HEADER, call_route, choose_request_id, install_dispatch
from podroute.docs import register_docs
from podroute.errors import HTTPError, MalformedBodyError, RequestValidationError, problem_body
from podroute.params import resolve_startup_params
from podroute.registry import Registry, Route, RouteDeclarationError, current_registry
from podroute.resources import Resource
from podroute.responses import json_response, problem_response
from podroute.settings import AppSettings
from podroute.state import BoundRoute, Mount, PodRouteState, StartupState, not_ready_error

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
        return _with_request_id(json_response({"result": result}), rid)

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


async def _run_hooks(state: StartupState, who: str) -> None:
    for hook in state.hooks:
        name = getattr(hook, "__name__", repr(hook))
        try:
            if inspect.iscoroutinefunction(hook):
                state.results.append(await hook())
            else:
                state.results.append(await asyncio.to_thread(hook))
        except Exception as error:  # a failing hook must mark the worker unhealthy, not crash it
            state.status, state.error = "failed", f"{name}: {error}"
            logger.exception("startup hook %s of %s failed; /ping now answers 503", name, who)
            return
    state.status = "ready"
    state.ready_after_s = round(time.monotonic() - state.started_at, 3)
    if gc.isenabled() and gc.get_freeze_count():
        gc.freeze()  # what the hooks loaded (models, weights) lives as long as the process
    logger.info("%s ready after %.3fs of startup hooks", who, state.ready_after_s)


def _register_lifecycle(app: Quart, state: PodRouteState) -> None:
    tasks: list[asyncio.Task[None]] = []

    @app.before_serving
    async def start_hooks() -> None:
        for mount, startup in zip(state.mounts, state.startup, strict=True):
            if startup.status == "starting":
                startup.started_at = time.monotonic()
                tasks.append(asyncio.create_task(_run_hooks(startup, mount.resource.name)))

    @app.after_serving
    async def stop_hooks() -> None:
        for task in tasks:
            task.cancel()


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
        return _with_request_id(problem_response(error.status, error.to_problem(rid), error.headers), rid)

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
        return _with_request_id(problem_response(status, problem_body(status, detail, rid), headers), rid)

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
        return _with_request_id(problem_response(500, problem_body(500, detail, rid)), rid)


def _bind_route(route: Route, mount: Mount, state: StartupState) -> BoundRoute:
    try:
        binder = Binder(route)
    except (TypeError, ValueError, PydanticUserError, PydanticSchemaGenerationError) as error:
        raise RouteDeclarationError(
            f"{route.name}: its parameters cannot be validated from a request: {error}"
        ) from error
    startup_args = resolve_startup_params(route, binder.startup_params, state.hooks)
    return BoundRoute(route, mount, binder, state, startup_args)


def _bind_mounts(mounts: list[Mount], registry: Registry) -> tuple[list[BoundRoute], list[StartupState]]:
    routes: list[BoundRoute] = []
    states: list[StartupState] = []
    for mount in mounts:
        entry = registry.entry(mount.resource)
        if not entry.routes:
            raise ValueError(f"resource {mount.resource.name!r} has no routes; declare some with @remote")
        state = StartupState(list(entry.startup_hooks))
        states.append(state)
        routes.extend(_bind_route(route, mount, state) for route in entry.routes)
    return routes, states


def _as_mounts(items: Iterable[Resource | Mount]) -> list[Mount]:
    mounts = [item if isinstance(item, Mount) else Mount(item) for item in items]
    if not mounts:
        raise ValueError("create_app needs at least one resource")
    prefixes = [m.prefix for m in mounts]
    if len(set(prefixes)) != len(prefixes):
        raise ValueError(f"two resources are mounted at the same prefix: {prefixes}")
    return mounts


def create_app(
    *resources: Resource | Mount,
    registry: Registry | None = None,
    settings: AppSettings | None = None,
) -> Quart:
    """Build a Quart app serving the routes declared for `resources` (or `Mount`s).

    `registry` defaults to the current one; `settings` to `AppSettings.from_env()`.
    """
    settings = settings or AppSettings.from_env()
    mounts = _as_mounts(resources)
    routes, startup = _bind_mounts(mounts, registry or current_registry())
    app = Quart(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        PROVIDE_AUTOMATIC_OPTIONS=False,
        BODY_TIMEOUT=settings.body_timeout,
    )
    app.url_map.strict_slashes = False
    state = PodRouteState(settings, mounts, routes, startup)
    app.extensions["podroute"] = state
    for mount in mounts:
        if mount.resource.live:
            named = {b.route.name: b for b in routes if b.mount is mount and not b.route.is_websocket}
            app.add_url_rule(
                f"{mount.prefix}/execute",
                f"{mount.prefix}:podroute_execute",
                _make_execute_view(named),
                methods=["POST"],
            )
    register_docs(app, state)
    _register_lifecycle(app, state)
    _register_errors(app)
    _register_request_ids(app)
    install_dispatch(app, state)
    return app


def podroute_state(app: Quart) -> PodRouteState:
    """The PodRoute state of an app made by `create_app`."""
    state: PodRouteState = app.extensions["podroute"]
    return state
