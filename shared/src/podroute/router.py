"""A precompiled router: (method, path) -> handler and path parameters, built once per app.

Static paths are found by one dict lookup; paths with `{param}` segments by one compiled regular
expression per method (every pattern of that method as one alternation, the matching alternative
found from the last group that closed). A trailing slash is ignored, as Werkzeug does with
`strict_slashes = False`. Methods are plain strings, so a kind of route that is not an HTTP
method (a WebSocket route keyed "WEBSOCKET") fits the same tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from podroute.registry import PATH_PARAM_PATTERN

H = TypeVar("H")

_SEGMENT = "[^/]+"
"""What one `{param}` matches: a non-empty path segment (Werkzeug's default converter)."""


@dataclass(frozen=True)
class Match(Generic[H]):
    """A resolved route: its handler and the path parameters as strings."""

    handler: H
    params: dict[str, str]


@dataclass(frozen=True)
class _Pattern(Generic[H]):
    regex: re.Pattern[str]
    routes: dict[int, tuple[H, tuple[tuple[str, int], ...]]]
    """Group index of each alternative -> its handler and (parameter name, group index) pairs."""


def _normalise(path: str) -> str:
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


class Router(Generic[H]):
    """Routes by method and path; build with `add`, then `compile` once before `resolve`."""

    def __init__(self) -> None:
        self._static: dict[str, dict[str, H]] = {}
        self._dynamic: dict[str, list[tuple[str, H]]] = {}
        self._patterns: dict[str, _Pattern[H]] = {}

    def add(self, method: str, path: str, handler: H) -> None:
        """Register `handler` for `method` on `path` (a template like `/users/{user_id}`)."""
        if PATH_PARAM_PATTERN.search(path):
            self._dynamic.setdefault(method, []).append((path, handler))
        else:
            self._static.setdefault(_normalise(path), {})[method] = handler

    def compile(self) -> None:
        """Build one regular expression per method for the parametrised paths."""
        self._patterns = {method: _compile(routes) for method, routes in self._dynamic.items()}

    def resolve(self, method: str, path: str) -> Match[H] | None:
        """The route for `method` on `path`, or None (no such path, or not for this method)."""
        path = _normalise(path)
        static = self._static.get(path)
        if static is not None:
            handler = static.get(method)
            if handler is not None:
                return Match(handler, {})
        pattern = self._patterns.get(method)
        if pattern is None:
            return None
        found = pattern.regex.match(path)
        if found is None:
            return None
        handler, groups = pattern.routes[found.lastindex or 0]
        return Match(handler, {name: found.group(index) for name, index in groups})

    def methods_for(self, path: str) -> set[str]:
        """Every method some route answers on `path` (empty when the path is unknown)."""
        path = _normalise(path)
        methods = set(self._static.get(path, {}))
        for method, pattern in self._patterns.items():
            if pattern.regex.match(path):
                methods.add(method)
        return methods


def _template_regex(path: str, prefix: str) -> tuple[str, list[str]]:
    names: list[str] = []
    parts: list[str] = []
    last = 0
    for found in PATH_PARAM_PATTERN.finditer(path):
        parts.append(re.escape(path[last : found.start()]))
        name = found.group(1)
        names.append(name)
        parts.append(f"(?P<{prefix}_{len(names)}>{_SEGMENT})")
        last = found.end()
    parts.append(re.escape(path[last:]))
    return "".join(parts), names


def _compile(routes: Iterable[tuple[str, H]]) -> _Pattern[H]:
    alternatives: list[str] = []
    layout: list[tuple[H, list[str]]] = []
    for index, (path, handler) in enumerate(routes):
        body, names = _template_regex(_normalise(path), f"p{index}")
        alternatives.append(f"(?P<r{index}>{body})")
        layout.append((handler, names))
    regex = re.compile("^(?:" + "|".join(alternatives) + ")$")
    table: dict[int, tuple[H, tuple[tuple[str, int], ...]]] = {}
    for index, (handler, names) in enumerate(layout):
        group = regex.groupindex[f"r{index}"]
        params = tuple((name, regex.groupindex[f"p{index}_{n + 1}"]) for n, name in enumerate(names))
        table[group] = (handler, params)
    return _Pattern(regex, table)
