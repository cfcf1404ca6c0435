"""Raw request paths -> the route templates of a build's manifest (`/users/42` -> `/users/{user_id}`).

Metrics are grouped by template, never by raw path, so their number stays that of the routes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

UNMATCHED = "(unmatched)"
"""The template of a path that no route of the build declares."""

_PARAMETER = re.compile(r"\{([^{}/]+)\}")
BUILTIN_ROUTES = ({"method": "GET", "path": "/ping"}, {"method": "GET", "path": "/docs"},
                  {"method": "GET", "path": "/openapi.json"})  # fmt: skip
"""Routes every podroute worker serves besides the build's own."""


def _pattern_of(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for match in _PARAMETER.finditer(template):
        parts.append(re.escape(template[position : match.start()]))
        parts.append("[^/]+")
        position = match.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts) + "/?")


class RouteTable:
    """The routes of one build, matched by method and path (static routes win over templated ones)."""

    def __init__(self, routes: Iterable[Mapping[str, Any]]) -> None:
        self._static: dict[tuple[str, str], str] = {}
        self._templated: list[tuple[str, re.Pattern[str], str]] = []
        for route in (*BUILTIN_ROUTES, *routes):
            method, path = str(route["method"]).upper(), str(route["path"])
            if _PARAMETER.search(path):
                self._templated.append((method, _pattern_of(path), path))
            else:
                self._static[(method, path.rstrip("/") or "/")] = path
        self._cache: dict[tuple[str, str], str] = {}

    def match(self, method: str, path: str) -> str:
        """The template serving `method path`, or UNMATCHED."""
        path = "/" + path.lstrip("/")
        key = (method, path)
        found = self._cache.get(key)
        if found is not None:
            return found
        found = self._static.get((method, path.rstrip("/") or "/"))
        if found is None:
            found = next(
                (t for m, pattern, t in self._templated if m == method and pattern.fullmatch(path)),
                UNMATCHED,
            )
        if len(self._cache) < 4096:  # raw paths with ids are unbounded; keep the cache bounded
            self._cache[key] = found
        return found
