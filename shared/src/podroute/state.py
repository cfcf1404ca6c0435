"""What an app serves: mounts, bound routes and startup progress, built by `build_state`.

Both the Quart app of `create_app` and the worker app of `podroute serve` serve a `PodRouteState`;
building one binds every route (its validators are made here, once) and imports no web framework.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import PydanticSchemaGenerationError, PydanticUserError

from podroute.binding import Binder
from podroute.errors import HTTPError
from podroute.params import resolve_startup_params
from podroute.registry import Registry, Route, RouteDeclarationError, StartupHook, current_registry
from podroute.resources import Resource
from podroute.settings import AppSettings


@dataclass(frozen=True)
class Mount:
    """A resource served under a URL prefix (e.g. '/gpu'), with an optional docs tag."""

    resource: Resource
    prefix: str = ""
    tag: str | None = None

    def __post_init__(self) -> None:
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError(f"mount prefix {self.prefix!r} must start with '/' and not end with '/'")


@dataclass
class StartupState:
    """Progress of one mount's startup hooks: 'starting', 'ready' or 'failed'."""

    hooks: list[StartupHook]
    status: str = "starting"
    error: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    ready_after_s: float | None = None
    results: list[Any] = field(default_factory=list)
    """What each hook returned, in hook order (filled as they finish); `Startup[T]` reads it."""

    def __post_init__(self) -> None:
        if not self.hooks:
            self.status = "ready"
            self.ready_after_s = 0.0


@dataclass(frozen=True)
class BoundRoute:
    """A route as served: its mount, full path, binder, and the startup values it takes."""

    route: Route
    mount: Mount
    binder: Binder
    state: StartupState
    startup_args: tuple[tuple[str, int], ...] = ()
    """(parameter, hook index) for each `Startup[T]` parameter."""

    def startup_kwargs(self) -> dict[str, Any]:
        """The `Startup[T]` arguments, once the hooks have run."""
        return {name: self.state.results[index] for name, index in self.startup_args}

    @property
    def full_path(self) -> str:
        """The route's path including the mount prefix."""
        return f"{self.mount.prefix}{self.route.path}"


@dataclass
class PodRouteState:
    """What `create_app` attaches to the app as `app.extensions['podroute']`."""

    settings: AppSettings
    mounts: list[Mount]
    routes: list[BoundRoute]
    startup: list[StartupState]
    openapi: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        """'failed' if any mount failed, else 'starting' while any hook runs, else 'ready'."""
        statuses = {s.status for s in self.startup}
        if "failed" in statuses:
            return "failed"
        return "starting" if "starting" in statuses else "ready"


def not_ready_error(state: StartupState) -> HTTPError:
    """The 503 a route answers while its mount's startup hooks run, or after they failed."""
    if state.status == "failed":
        return HTTPError(503, "the worker failed to start; check its logs")
    return HTTPError(
        503,
        "the worker is still starting (startup hooks are running); retry shortly",
        headers={"Retry-After": "1"},
    )


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
        raise ValueError("an app needs at least one resource")
    prefixes = [m.prefix for m in mounts]
    if len(set(prefixes)) != len(prefixes):
        raise ValueError(f"two resources are mounted at the same prefix: {prefixes}")
    return mounts


def build_state(
    resources: Iterable[Resource | Mount],
    registry: Registry | None = None,
    settings: AppSettings | None = None,
) -> PodRouteState:
    """Bind the routes declared for `resources` (or `Mount`s) in `registry` (default: the current one).

    Raises `RouteDeclarationError` for a route whose parameters cannot be validated from a
    request, and ValueError for a resource without routes or two mounts at one prefix.
    """
    settings = settings or AppSettings.from_env()
    mounts = _as_mounts(resources)
    routes, startup = _bind_mounts(mounts, registry or current_registry())
    return PodRouteState(settings, mounts, routes, startup)
