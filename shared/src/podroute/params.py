"""Route parameters filled from outside the request: startup values and `Last-Event-ID`.

    @on_startup(api)
    async def load_model() -> Model:          # the return annotation names what it provides
        return await asyncio.to_thread(Model.load, "/runpod-volume/weights")

    @remote(api, method="POST", path="/predict")
    async def predict(text: str, model: Startup[Model]) -> dict:
        return model.predict(text)

    @remote(api, method="GET", path="/ticks")
    async def ticks(last_event_id: LastEventId = None) -> AsyncIterator[ServerSentEvent]:
        ...

A `Startup[T]` parameter receives the value returned by the resource's startup hook whose return
annotation is `T` (or a subclass of it); the match is checked when the app is built, so a route
that asks for a value no hook provides fails at start-up, not on a request. Requests never set
these parameters, and the docs do not list them. Called from Python, a route takes them as
ordinary arguments (`predict("hi", model=my_model)`).
"""

from __future__ import annotations

import inspect
import typing
from typing import Annotated, Any, TypeVar, get_args, get_origin

from podroute.registry import Route, RouteDeclarationError, StartupHook

_T = TypeVar("_T")


class _Marker:
    """Metadata in `Annotated[...]` saying where a parameter's value comes from."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


STARTUP = _Marker("Startup")
LAST_EVENT_ID = _Marker("LastEventId")

Startup = Annotated[_T, STARTUP]
"""`Startup[T]`: the value the resource's startup hook annotated `-> T` returned."""

LastEventId = Annotated[str | None, LAST_EVENT_ID]
"""The request's `Last-Event-ID` header (None when absent): where a resumed event stream restarts."""


def _has_marker(annotation: Any, marker: _Marker) -> bool:
    return get_origin(annotation) is Annotated and any(m is marker for m in annotation.__metadata__)


def startup_target(annotation: Any) -> Any | None:
    """The `T` of a `Startup[T]` annotation, or None for any other annotation."""
    if not _has_marker(annotation, STARTUP):
        return None
    return get_args(annotation)[0]


def is_last_event_id(annotation: Any) -> bool:
    """Whether a parameter is annotated `LastEventId`."""
    return _has_marker(annotation, LAST_EVENT_ID)


def _provides(hook: StartupHook, target: Any) -> bool:
    try:
        returned = typing.get_type_hints(hook).get("return")
    except (NameError, TypeError):
        return False
    if returned is None:
        return False
    if returned is target:
        return True
    return inspect.isclass(returned) and inspect.isclass(target) and issubclass(returned, target)


def resolve_startup_params(
    route: Route, wanted: dict[str, Any], hooks: list[StartupHook]
) -> tuple[tuple[str, int], ...]:
    """For each `Startup[T]` parameter of `route`, the index of the hook that returns a `T`.

    Raises RouteDeclarationError when no hook, or more than one, is annotated to return it.
    """
    resolved: list[tuple[str, int]] = []
    for name, target in wanted.items():
        matches = [index for index, hook in enumerate(hooks) if _provides(hook, target)]
        target_name = getattr(target, "__name__", repr(target))
        if not matches:
            raise RouteDeclarationError(
                f"{route.name}: parameter {name!r} asks for Startup[{target_name}] but no startup hook "
                f"of resource {route.resource.name!r} is annotated to return {target_name}; "
                f"declare one with @on_startup({route.resource.name}) ... -> {target_name}"
            )
        if len(matches) > 1:
            names = ", ".join(getattr(hooks[i], "__name__", "?") for i in matches)
            raise RouteDeclarationError(
                f"{route.name}: parameter {name!r} asks for Startup[{target_name}] and several startup "
                f"hooks return it ({names}); give each value its own type"
            )
        resolved.append((name, matches[0]))
    return tuple(resolved)
