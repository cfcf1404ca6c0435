"""Discover the resources and routes a project's services declare, through podroute's registry.

Which folders are services, and which module declares their routes, is the library's one rule
(`podroute.project`: the sub-packages of the services folder, `endpoint.py` when they have one), the
same that build and dev use. Importing user code runs it, so the dashboard never imports it in its
own process: `run_discovery` starts `python -m dashboard.discovery PROJECT_DIR` with a clean
environment (no dashboard secrets), a timeout, and reads JSON back. Results are cached by the
project's source fingerprint, in memory and in the data dir, so a visit with unchanged sources (even
after a restart) starts no process; any change to a file under the services folder runs it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dashboard import REPO_ROOT
from podroute.project import service_module, service_names, services_folder

logger = logging.getLogger("dashboard.discovery")


_SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", ".venv", "venv", ".git", ".mypy_cache", ".pytest_cache"}
)
_CHILD_ENV_DROP = ("DASHBOARD_", "DATABASE_URL")
_MAX_ERROR = 2000


class DiscoveryError(RuntimeError):
    """Discovery could not run at all (timeout, crash, unreadable output)."""


@dataclass(frozen=True, slots=True)
class DiscoveredRoute:
    """A route as its OpenAPI describes it."""

    method: str
    path: str
    name: str
    summary: str = ""
    parameters: list[dict[str, Any]] = field(default_factory=list)
    body_schema: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DiscoveredResource:
    """A resource declared in a service, with its config (`Resource.to_config()`) and routes."""

    service: str
    resource: str
    compute: str
    resource_type: str
    config: dict[str, Any]
    routes: list[DiscoveredRoute]


@dataclass(frozen=True, slots=True)
class ServiceError:
    """A service whose module failed to import or describe."""

    service: str
    message: str


@dataclass(frozen=True, slots=True)
class Discovery:
    """Everything found in a project's services, and what failed."""

    resources: list[DiscoveredResource]
    errors: list[ServiceError]
    fingerprint: str = ""

    def find(self, service: str, resource: str) -> DiscoveredResource | None:
        """The resource `resource` of `service`, or None."""
        return next((r for r in self.resources if r.service == service and r.resource == resource), None)

    def to_json(self) -> str:
        """Serialized for the parent process."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Discovery:
        """Parse what `to_json` wrote."""
        data = json.loads(text)
        resources = [
            DiscoveredResource(**{**r, "routes": [DiscoveredRoute(**route) for route in r["routes"]]})
            for r in data["resources"]
        ]
        return cls(resources, [ServiceError(**e) for e in data["errors"]], data.get("fingerprint", ""))


def services_dir_of(project_dir: Path) -> Path:
    """The services folder (the library's rule: `[tool.podroute] services`, default 'services')."""
    return services_folder(project_dir)


def fingerprint(project_dir: Path) -> str:
    """A hash of the names, sizes and modification times of the services' files."""
    digest = hashlib.sha256()
    root = services_dir_of(project_dir)
    for path in [project_dir / "pyproject.toml", *_walk(root)]:
        with contextlib.suppress(OSError):
            stat = path.stat()
            name = path.relative_to(project_dir) if path.is_relative_to(project_dir) else path
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        found.extend(Path(folder) / name for name in sorted(files) if name.endswith((".py", ".toml", ".txt")))
    return found


# --- in the child process -------------------------------------------------------------------------


def _resolve(schema: Any, components: dict[str, Any], depth: int = 0) -> Any:
    if depth > 8:
        return schema
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            target = components.get(ref.rsplit("/", 1)[-1], {})
            return _resolve(target, components, depth + 1)
        return {key: _resolve(value, components, depth + 1) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_resolve(item, components, depth + 1) for item in schema]
    return schema


def _routes_of(openapi: dict[str, Any], routes: list[Any]) -> list[DiscoveredRoute]:
    components = openapi.get("components", {}).get("schemas", {})
    described: list[DiscoveredRoute] = []
    for route in routes:
        operation = openapi["paths"].get(route.path, {}).get(route.method.lower(), {})
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        parameters = [
            {
                "name": p["name"],
                "in": p["in"],
                "required": bool(p.get("required")),
                "schema": _resolve(p.get("schema", {}), components),
            }
            for p in operation.get("parameters", [])
        ]
        described.append(
            DiscoveredRoute(
                method=route.method,
                path=route.path,
                name=route.name,
                summary=str(operation.get("summary", "")),
                parameters=parameters,
                body_schema=_resolve(body, components) if body is not None else None,
            )
        )
    return described


def _describe_service(service: str, module_name: str) -> list[DiscoveredResource]:
    from podroute.app import create_app
    from podroute.openapi import build_openapi
    from podroute.registry import Registry, use_registry
    from podroute.settings import AppSettings

    with use_registry(Registry()) as registry:
        importlib.import_module(module_name)
    found: list[DiscoveredResource] = []
    for entry in registry:
        resource = entry.resource
        routes: list[DiscoveredRoute] = []
        if entry.routes:
            app = create_app(resource, registry=registry, settings=AppSettings())
            routes = _routes_of(build_openapi(app.extensions["podroute"]), entry.routes)
        found.append(
            DiscoveredResource(
                service=service,
                resource=resource.name,
                compute=resource.compute,
                resource_type=type(resource).__name__,
                config=resource.to_config(),
                routes=routes,
            )
        )
    return found


def discover_in_process(project_dir: Path) -> Discovery:
    """Import every service of the project and describe its resources (runs user code!)."""
    project_dir = project_dir.resolve()
    if str(project_dir) not in sys.path:
        sys.path.insert(0, str(project_dir))
    resources: list[DiscoveredResource] = []
    errors: list[ServiceError] = []
    for service in service_names(project_dir):
        try:
            resources.extend(_describe_service(service, service_module(project_dir, service)))
        except Exception as error:  # user code may raise anything; report it per service
            errors.append(ServiceError(service, f"{type(error).__name__}: {error}"[:_MAX_ERROR]))
    return Discovery(resources, errors, fingerprint(project_dir))


def main(argv: list[str] | None = None) -> int:
    """`python -m dashboard.discovery PROJECT_DIR`: print the discovery as JSON on stdout."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dashboard.discovery PROJECT_DIR", file=sys.stderr)
        return 2
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # whatever user code prints must not corrupt the JSON
    try:
        result = discover_in_process(Path(args[0]))
    finally:
        sys.stdout = real_stdout
    real_stdout.write(result.to_json())
    real_stdout.flush()
    return 0


# --- in the dashboard ------------------------------------------------------------------------------


def child_environment(project_dir: Path) -> dict[str, str]:
    """The discovery process's environment: the dashboard's, minus its secrets and database URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CHILD_ENV_DROP)}
    paths = [str(project_dir), str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


async def run_discovery(project_dir: Path, timeout_s: float) -> Discovery:
    """Discover the project's services in a child process (raises DiscoveryError if it cannot)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dashboard.discovery",
        str(project_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(project_dir),
        env=child_environment(project_dir),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise DiscoveryError(
            f"importing the services took longer than {timeout_s:g}s; check them for slow imports"
        ) from None
    if stderr:
        logger.debug("discovery output", extra={"output": stderr.decode(errors="replace")[-_MAX_ERROR:]})
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise DiscoveryError(f"discovery failed (exit {process.returncode}): {tail[0][:_MAX_ERROR]}")
    try:
        return Discovery.from_json(stdout.decode())
    except (ValueError, KeyError, TypeError) as error:
        raise DiscoveryError(f"discovery printed something unreadable: {error}") from None


class DiscoveryCache:
    """Keeps a project's discovery under its source fingerprint: in memory, and as a JSON file in
    `cache_dir` (when given) that survives restarts. Only a changed fingerprint runs discovery."""

    def __init__(self, project_dir: Path, timeout_s: float, cache_dir: Path | None = None) -> None:
        self.project_dir = project_dir
        self.timeout_s = timeout_s
        self.cache_dir = cache_dir
        self._key = ""
        self._cached: Discovery | None = None
        self._lock = asyncio.Lock()

    def _file(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        project = hashlib.sha256(str(self.project_dir).encode()).hexdigest()[:12]
        return self.cache_dir / f"discovery-{project}-{key}.json"

    def _load(self, key: str) -> Discovery | None:
        path = self._file(key)
        if path is None or not path.is_file():
            return None
        try:
            return Discovery.from_json(path.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable: discover again and overwrite it

    def _store(self, key: str, discovery: Discovery) -> None:
        path = self._file(key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            for old in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.json"):
                old.unlink(missing_ok=True)
            scratch = path.with_suffix(".tmp")
            scratch.write_text(discovery.to_json())
            scratch.chmod(0o600)
            scratch.replace(path)
        except OSError as error:
            logger.warning("cannot cache the discovery", extra={"path": str(path), "error": str(error)})

    async def get(self) -> Discovery:
        """The project's current discovery (run again only when the services' sources changed)."""
        async with self._lock:
            key = await asyncio.to_thread(fingerprint, self.project_dir)
            if self._cached is not None and self._key == key:
                return self._cached
            found = await asyncio.to_thread(self._load, key)
            if found is None:
                found = await run_discovery(self.project_dir, self.timeout_s)
                await asyncio.to_thread(self._store, key, found)
                logger.info(
                    "discovered services",
                    extra={"resources": len(found.resources), "errors": len(found.errors)},
                )
            self._key, self._cached = key, found
            return found


if __name__ == "__main__":
    raise SystemExit(main())
