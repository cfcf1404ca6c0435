"""Finding routes in user code: a `MODULE[:RESOURCE]` target, or every service of a project.

What a service is, and where a project keeps them, is `podroute.project`'s rule.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from podroute.project import service_module, service_names, services_folder
from podroute.registry import Registry, ResourceEntry, use_registry
from podroute.resources import Resource

_LIBRARY_DIR = str(Path(__file__).parent)


class DiscoveryError(Exception):
    """User code could not be imported, or it declares no (or ambiguous) resources."""


@dataclass(frozen=True)
class Service:
    """One service of a project: its name (the folder) and the resources it declares."""

    name: str
    module: str
    entries: tuple[ResourceEntry, ...]


def _describe_import_error(module: str, error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    user_frames = [
        f for f in frames if "importlib" not in f.filename and not f.filename.startswith(_LIBRARY_DIR)
    ]
    where = f" ({user_frames[-1].filename}, line {user_frames[-1].lineno})" if user_frames else ""
    if isinstance(error, SyntaxError) and error.filename:
        where = f" ({error.filename}, line {error.lineno})"
    return f"cannot import {module}{where}: {type(error).__name__}: {error}"


def import_routes(module: str, registry: Registry) -> ModuleType:
    """Import `module` with `registry` current, so its `@remote` routes are recorded there."""
    with use_registry(registry):
        try:
            if module in sys.modules:
                return importlib.reload(sys.modules[module])
            return importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name and module.startswith(error.name):
                raise DiscoveryError(
                    f"no module named {module!r}; run from the project root or check the name"
                ) from None
            raise DiscoveryError(_describe_import_error(module, error)) from error
        except Exception as error:
            raise DiscoveryError(_describe_import_error(module, error)) from error


def load_target(target: str, registry: Registry | None = None) -> tuple[Resource, Registry]:
    """Import `MODULE[:RESOURCE]` and return the resource to serve with its registry.

    RESOURCE is a module attribute or a resource name; it may be left out when the module declares
    exactly one resource.
    """
    module_name, _, resource_name = target.partition(":")
    registry = registry or Registry()
    module = import_routes(module_name, registry)
    entries = list(registry)
    if not entries:
        raise DiscoveryError(f"{module_name} declares no routes; decorate functions with @remote")
    if resource_name:
        attribute = getattr(module, resource_name, None)
        for entry in entries:
            if entry.resource is attribute or entry.resource.name == resource_name:
                return entry.resource, registry
        names = ", ".join(e.resource.name for e in entries)
        raise DiscoveryError(f"{module_name} has no resource {resource_name!r}; it declares: {names}")
    if len(entries) > 1:
        names = ", ".join(e.resource.name for e in entries)
        raise DiscoveryError(f"{module_name} declares several resources ({names}); pick one: {target}:NAME")
    return entries[0].resource, registry


def _forget_modules_from_elsewhere(package: str, project: Path) -> None:
    """Drop cached modules of `package` that were imported from another project folder."""
    for name, module in list(sys.modules.items()):
        if name != package and not name.startswith(package + "."):
            continue
        locations = [getattr(module, "__file__", None), *getattr(module, "__path__", [])]
        if not any(loc and Path(loc).resolve().is_relative_to(project) for loc in locations):
            del sys.modules[name]


def prepare_imports(project: Path) -> str:
    """Put `project` first on sys.path and forget stale copies of its services package.

    Returns the services package name (e.g. 'services').
    """
    folder = services_folder(project)
    if str(project) in sys.path:
        sys.path.remove(str(project))
    sys.path.insert(0, str(project))
    package = ".".join(folder.relative_to(project).parts)
    _forget_modules_from_elsewhere(package, project)
    return package


@contextlib.contextmanager
def isolated_imports(project: Path) -> Iterator[str]:
    """Import from `project` inside the block, then put sys.path and sys.modules back as they were.

    For one-shot reads of a project's routes (a build) from a process that may import another
    project's package of the same name before or after. Yields the services package name.
    """
    saved_path = list(sys.path)
    package = ".".join(services_folder(project).relative_to(project).parts)

    def ours(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    saved_modules = {name: module for name, module in sys.modules.items() if ours(name)}
    try:
        yield prepare_imports(project)
    finally:
        sys.path[:] = saved_path
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(saved_modules)


def discover_services(project: Path, registry: Registry) -> list[Service]:
    """Import every service of the project into `registry`; one `Service` per sub-package."""
    folder = services_folder(project)
    if not folder.is_dir():
        raise DiscoveryError(f"no services folder at {folder}; create it or set [tool.podroute] services")
    prepare_imports(project)
    services = []
    for name in service_names(project):
        module = service_module(project, name)
        before = {e.resource.name for e in registry}
        import_routes(module, registry)
        entries = tuple(e for e in registry if e.resource.name not in before)
        if entries:
            services.append(Service(name, module, entries))
    if not services:
        raise DiscoveryError(f"no service in {folder} declares routes; add @remote functions")
    return services
