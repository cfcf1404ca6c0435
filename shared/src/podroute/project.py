"""What a project is: its name, its services folder, and the one rule for "what is a service".

A project keeps its services in a folder (default `services/`, or `[tool.podroute] services` in
`pyproject.toml`). A service is a sub-package of that folder (a folder with `__init__.py`); its
routes are declared in its `endpoint` module, or in the package itself when it has none. Build,
dev, discovery and the dashboard all list services with `service_names` and import them by
`service_module`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def _podroute_table(project: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    pyproject = project / "pyproject.toml"
    if not pyproject.is_file():
        return {}, {}
    data = tomllib.loads(pyproject.read_text())
    return data.get("tool", {}).get("podroute", {}), data.get("project", {})


def services_folder(project: Path) -> Path:
    """The folder holding the project's services (`[tool.podroute] services`, default 'services')."""
    table, _ = _podroute_table(project)
    return project / str(table.get("services", "services"))


def service_names(project: Path) -> list[str]:
    """The project's services, sorted: the sub-packages of its services folder ([] without one)."""
    folder = services_folder(project)
    if not folder.is_dir():
        return []
    return sorted(child.name for child in folder.iterdir() if (child / "__init__.py").is_file())


def service_module(project: Path, service: str) -> str:
    """The module that declares a service's routes: `<package>.<service>.endpoint` when the service
    has an `endpoint.py`, else the service package itself."""
    service_dir = services_folder(project) / service
    module = ".".join(service_dir.relative_to(project).parts)
    return f"{module}.endpoint" if (service_dir / "endpoint.py").is_file() else module


def project_name(project: Path) -> str:
    """The project's name in the marker labels of its endpoints: `[tool.podroute] name`, else
    `[project] name`, else the folder's name. The CLI and the dashboard both use it, so they mark
    and find the same endpoints."""
    table, metadata = _podroute_table(project)
    name = table.get("name") or metadata.get("name")
    return str(name) if name else project.resolve().name
