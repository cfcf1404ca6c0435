"""The route registry and the `@remote` decorator that fills it.

Every `@remote(resource, method=..., path=...)` records a `Route` for its resource in the current
registry and returns the function unchanged. Declarations are checked when they are made: a bad
method, path, reserved path, duplicate or missing path parameter raises at import time, naming the
function and the fix.

Tests (and tools that import user code more than once) use a fresh registry:

    with use_registry(Registry()) as registry:
        importlib.import_module("my_service")
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from podroute.resources import Resource

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
WEBSOCKET = "WEBSOCKET"
"""The method of a WebSocket route: `@remote(api, method="WEBSOCKET", path="/chat")`."""
RESERVED_PATHS = ("/ping", "/execute", "/_runpod/sync")
PATH_PARAM_PATTERN = re.compile(r"\{([^{}]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH_CHARS = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/{}-]*$")

F = TypeVar("F", bound=Callable[..., Any])
_ROUTE_ATTRIBUTE = "__podroute_route__"
StartupHook = Callable[[], Any]


class RouteDeclarationError(ValueError):
    """A `@remote` declaration is invalid; the message names the function and the fix."""


@dataclass(frozen=True)
class Route:
    """One route: a function served at (method, path) on a resource (method WEBSOCKET: a socket)."""

    resource: Resource
    method: str
    path: str
    function: Callable[..., Any]
    dependencies: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The function's name; also the route's OpenAPI operationId and `/execute` name."""
        return self.function.__name__

    @property
    def is_websocket(self) -> bool:
        """Whether this is a WebSocket route."""
        return self.method == WEBSOCKET

    @property
    def path_params(self) -> tuple[str, ...]:
        """Names of the `{param}` segments of the path, in order."""
        return tuple(PATH_PARAM_PATTERN.findall(self.path))


@dataclass
class ResourceEntry:
    """A resource with the routes and startup hooks declared for it."""

    resource: Resource
    routes: list[Route] = field(default_factory=list)
    startup_hooks: list[StartupHook] = field(default_factory=list)


class Registry:
    """Routes and startup hooks, grouped by resource name."""

    def __init__(self) -> None:
        self._entries: dict[str, ResourceEntry] = {}

    def __iter__(self) -> Iterator[ResourceEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, resource: Resource | str) -> ResourceEntry:
        """The entry of a resource (or resource name); KeyError when none was declared."""
        name = resource if isinstance(resource, str) else resource.name
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise KeyError(f"no routes are declared for resource {name!r} (known: {known})") from None

    def routes(self, resource: Resource | str) -> list[Route]:
        """The routes of one resource, in declaration order."""
        return list(self.entry(resource).routes)

    def add_route(self, route: Route) -> None:
        """Record a route after checking that it does not clash with one already declared."""
        entry = self._entry_for(route.resource, route.name)
        for existing in entry.routes:
            if (existing.method, existing.path) == (route.method, route.path):
                raise RouteDeclarationError(
                    f"{route.name}: {route.method} {route.path} is already declared by "
                    f"{existing.name} on resource {route.resource.name!r}; change the method or path"
                )
            if existing.name == route.name:
                raise RouteDeclarationError(
                    f"{route.name}: a function with this name is already a route of resource "
                    f"{route.resource.name!r} ({existing.method} {existing.path}); rename one of them"
                )
        entry.routes.append(route)

    def add_startup_hook(self, resource: Resource, hook: StartupHook) -> None:
        """Run `hook` once per worker before it reports ready on /ping."""
        self._entry_for(resource, getattr(hook, "__name__", repr(hook))).startup_hooks.append(hook)

    def remote(
        self,
        resource: Resource,
        *,
        method: str,
        path: str,
        dependencies: list[str] | tuple[str, ...] | None = None,
    ) -> Callable[[F], F]:
        """Declare the decorated function as the route (method, path) of `resource`."""
        if not isinstance(resource, Resource):
            raise TypeError(
                f"@remote needs a load-balanced resource such as LiveLoadBalancer(name=...), "
                f"got {type(resource).__name__}"
            )
        deps = _check_dependencies(dependencies)

        def decorate(function: F) -> F:
            name = getattr(function, "__name__", repr(function))
            if not callable(function):
                raise TypeError(f"@remote decorates functions, got {type(function).__name__}")
            normalized_method = _check_method(name, method)
            if normalized_method == WEBSOCKET:
                _check_socket_function(name, function)
            _check_path(name, path)
            _check_path_params(function, path)
            route = Route(resource, normalized_method, path, function, deps)
            self.add_route(route)
            with contextlib.suppress(AttributeError, TypeError):  # e.g. builtins refuse attributes
                setattr(function, _ROUTE_ATTRIBUTE, route)
            return function

        return decorate

    def on_startup(self, resource: Resource) -> Callable[[F], F]:
        """Decorator form of `add_startup_hook`: run the function before the worker is ready."""

        def decorate(hook: F) -> F:
            self.add_startup_hook(resource, hook)
            return hook

        return decorate

    def _entry_for(self, resource: Resource, who: str) -> ResourceEntry:
        entry = self._entries.get(resource.name)
        if entry is None:
            entry = self._entries[resource.name] = ResourceEntry(resource)
        elif entry.resource is not resource and entry.resource != resource:
            raise RouteDeclarationError(
                f"{who}: another resource named {resource.name!r} with a different configuration "
                "is already in use; give each resource a unique name or reuse the same object"
            )
        return entry


def _check_method(name: str, method: object) -> str:
    if not isinstance(method, str) or method.upper() not in (*HTTP_METHODS, WEBSOCKET):
        raise RouteDeclarationError(
            f"{name}: method {method!r} is not supported; use one of {', '.join(HTTP_METHODS)} "
            f"or {WEBSOCKET} for a WebSocket route"
        )
    return method.upper()


def _check_socket_function(name: str, function: Callable[..., Any]) -> None:
    if not inspect.iscoroutinefunction(function):
        raise RouteDeclarationError(
            f"{name}: a WebSocket route must be an 'async def' function that takes a "
            "WebSocket parameter and returns when the conversation is over"
        )


def _check_path(name: str, path: object) -> None:
    if not isinstance(path, str) or not path.startswith("/"):
        raise RouteDeclarationError(f"{name}: path {path!r} must start with '/', e.g. '/{path}'")
    if path.rstrip("/") in RESERVED_PATHS:
        raise RouteDeclarationError(
            f"{name}: path {path!r} is reserved by PodRoute ({', '.join(RESERVED_PATHS)}); "
            "choose another path"
        )
    if not _PATH_CHARS.match(path) or "//" in path:
        raise RouteDeclarationError(
            f"{name}: path {path!r} contains characters that are not allowed in a URL path"
        )


def _check_path_params(function: Callable[..., Any], path: str) -> None:
    name = function.__name__
    parameters = inspect.signature(function).parameters
    for param in PATH_PARAM_PATTERN.findall(path):
        if not _IDENTIFIER.match(param):
            raise RouteDeclarationError(
                f"{name}: path parameter {{{param}}} in {path!r} must be a Python identifier"
            )
        if param not in parameters:
            raise RouteDeclarationError(
                f"{name}: path {path!r} has {{{param}}} but the function has no parameter "
                f"named {param!r}; add it to the signature or rename the path segment"
            )
    for parameter in parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise RouteDeclarationError(
                f"{name}: *{parameter.name} / **{parameter.name} cannot be bound from a request; "
                "declare each parameter by name"
            )
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise RouteDeclarationError(
                f"{name}: positional-only parameter {parameter.name!r} cannot be bound by name"
            )


def _check_dependencies(dependencies: object) -> tuple[str, ...]:
    if dependencies is None:
        return ()
    if isinstance(dependencies, str) or not all(isinstance(d, str) for d in dependencies):  # type: ignore[attr-defined]
        raise TypeError("dependencies must be a list of requirement strings, e.g. ['numpy>=2']")
    return tuple(dependencies)  # type: ignore[arg-type]


_current: contextvars.ContextVar[Registry] = contextvars.ContextVar("podroute_registry")
_default_registry = Registry()


def current_registry() -> Registry:
    """The registry `@remote` records into: the default one unless `use_registry` is active."""
    return _current.get(_default_registry)


@contextlib.contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Make `registry` the current one inside the block (for tests and code discovery)."""
    token = _current.set(registry)
    try:
        yield registry
    finally:
        _current.reset(token)


def remote(
    resource: Resource,
    *,
    method: str,
    path: str,
    dependencies: list[str] | tuple[str, ...] | None = None,
    **unknown: Any,
) -> Callable[[F], F]:
    """Serve the decorated function as `method path` on `resource`; returns it unchanged.

    Raises `RouteDeclarationError` (a ValueError) for a bad method, path, reserved path, duplicate
    route or a `{param}` with no matching function parameter, and TypeError for unknown keywords.
    """
    if unknown:
        raise TypeError(
            f"@remote got unknown keyword argument(s) {', '.join(sorted(unknown))}; "
            "accepted: method, path, dependencies"
        )
    return current_registry().remote(resource, method=method, path=path, dependencies=dependencies)


def route_of(function: Callable[..., Any]) -> Route:
    """The route an `@remote` function was declared as (TypeError for any other function)."""
    route = getattr(function, _ROUTE_ATTRIBUTE, None)
    if not isinstance(route, Route):
        name = getattr(function, "__name__", repr(function))
        raise TypeError(f"{name} is not an @remote route; decorate it with @remote(resource, method=, path=)")
    return route


def on_startup(resource: Resource) -> Callable[[F], F]:
    """Run the decorated function (sync or async) once per worker before `/ping` says ready.

    Use it to load a model or warm a device; while hooks run `/ping` answers 204, and a hook that
    fails makes `/ping` answer 503.
    """
    return current_registry().on_startup(resource)
