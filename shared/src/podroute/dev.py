"""The development server: every service of a project in one app, with a home page and reload.

Each service is mounted under `/<service>` (`/gpu/compute`, `/cpu/transform`, ...), with one merged
OpenAPI document and `/docs`. Default address `localhost:8888` (`FLASH_HOST` / `FLASH_PORT`).
"""

from __future__ import annotations

import dataclasses
import html
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from quart import Quart, Response

from podroute.app import create_app, podroute_state
from podroute.discovery import Service, discover_services
from podroute.openapi import build_openapi
from podroute.registry import Registry
from podroute.settings import AppSettings
from podroute.state import BoundRoute, Mount

DEV_TITLE = "PodRoute dev server"
_IGNORED_DIRS = frozenset({".git", ".nox", ".venv", "venv", "node_modules", "__pycache__", ".podroute"})


def service_mounts(services: list[Service]) -> list[Mount]:
    """One mount per resource: `/<service>`, or `/<service>/<resource>` when a service has several."""
    mounts = []
    for service in services:
        for entry in service.entries:
            several = len(service.entries) > 1
            suffix = f"/{entry.resource.name}" if several else ""
            tag = f"{service.name}/{entry.resource.name}" if several else service.name
            mounts.append(Mount(entry.resource, prefix=f"/{service.name}{suffix}", tag=tag))
    return mounts


def create_dev_app(project: Path, settings: AppSettings | None = None) -> Quart:
    """The dev app of `project`: its services discovered, mounted and documented together."""
    registry = Registry()
    services = discover_services(project.resolve(), registry)
    settings = dataclasses.replace(settings or AppSettings.from_env(), title=DEV_TITLE)
    app = create_app(*service_mounts(services), registry=registry, settings=settings)
    _add_home_page(app)
    return app


def _add_home_page(app: Quart) -> None:
    async def home() -> Response:
        return Response(render_home(app), content_type="text/html; charset=utf-8")

    app.add_url_rule("/", "podroute_home", home, methods=["GET"])


def render_home(app: Quart) -> str:
    """The home page: each service with its routes, linking to `/docs`."""
    state = podroute_state(app)
    if state.openapi is None:
        state.openapi = build_openapi(state)
    health = html.escape(state.settings.health_path)
    sections = []
    for mount in state.mounts:
        rows = "".join(
            f"<tr><td><code>{b.route.method}</code></td><td><code>{html.escape(b.full_path)}</code></td>"
            f"<td>{html.escape(_summary(state.openapi, b))}</td></tr>"
            for b in state.routes
            if b.mount is mount
        )
        title = html.escape(
            f"{mount.tag or mount.resource.name}: {mount.resource.kind} resource {mount.resource.name}"
        )
        sections.append(f"<h2>{title}</h2><table>{rows}</table>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{DEV_TITLE}</title></head><body><h1>{DEV_TITLE}</h1>"
        "<p>Interactive docs: <a href='/docs'>/docs</a> · OpenAPI: <a href='/openapi.json'>/openapi.json</a>"
        f" · health: <a href='{health}'>{health}</a></p>" + "".join(sections) + "</body></html>"
    )


def _summary(openapi: dict[str, Any], bound: BoundRoute) -> str:
    if bound.route.is_websocket:
        return str(openapi["x-websockets"][bound.full_path]["summary"])
    return str(openapi["paths"][bound.full_path][bound.route.method.lower()]["summary"])


def _source_files(project: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(project):
        dirs[:] = [d for d in dirs if d not in _IGNORED_DIRS and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                yield Path(root, name)


def _snapshot(project: Path) -> dict[Path, float]:
    snapshot = {}
    for path in _source_files(project):
        try:
            snapshot[path] = path.stat().st_mtime
        except FileNotFoundError:
            continue
    return snapshot


def run_with_reload(child_args: list[str], project: Path, interval: float = 0.5) -> int:
    """Run `python -m podroute <child_args>` and restart it whenever a .py file changes."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        child = subprocess.Popen([sys.executable, "-m", "podroute", *child_args])
        snapshot = _snapshot(project)
        while not stopping:
            time.sleep(interval)
            current = _snapshot(project)
            if current != snapshot:
                changed = sorted(
                    str(p.relative_to(project))
                    for p in set(current) ^ set(snapshot)
                    | {p for p in current if snapshot.get(p) != current[p]}
                )
                print(f"podroute dev: {', '.join(changed[:3])} changed; reloading", file=sys.stderr)
                break
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0
