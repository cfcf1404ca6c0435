"""`podroute build`: a manifest, a deterministic artifact and a Dockerfile per resource.

The artifact is a gzip'd tar whose root is also a Docker build context:

    podroute-manifest.json   resource config, routes, dependencies, python version, fingerprint
    requirements.txt         third-party dependencies (podroute's own, the service's, the routes')
    Dockerfile               runs `python -m podroute serve MODULE:RESOURCE` on PORT
    app/<services>/...       the service's sources, with their parent packages
    app/podroute/...         the podroute library itself, so the worker runs the same version

Same sources give a byte-identical archive (sorted entries, fixed timestamps, owners and modes).
Builds are cached by a fingerprint of everything that goes in, so unchanged sources rebuild at
once. `.env` files, caches, tests and hidden files are never included.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import json
import platform
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import podroute
from podroute.discovery import DiscoveryError, import_routes, isolated_imports
from podroute.project import service_module, service_names, services_folder
from podroute.registry import Registry, ResourceEntry

MANIFEST_NAME = "podroute-manifest.json"
ARTIFACT_NAME = "artifact.tar.gz"
MANIFEST_FORMAT = 1
_LIBRARY_DIR = Path(podroute.__file__).parent
_EXCLUDED_DIRS = frozenset({"__pycache__", "tests", "test", "node_modules", "build", "dist"})
_EXCLUDED_FILE = re.compile(r"^(\.env.*|.*\.py[cod]|test_.*\.py|.*_test\.py|.*\.egg-info|\.DS_Store)$")
_TORCH_PACKAGES = re.compile(r"^(torch|torchvision|torchaudio|triton)\b", re.IGNORECASE)

Progress = Callable[[str], None]


class BuildError(Exception):
    """A service cannot be built; the message says which and why."""


@dataclass(frozen=True)
class BuildResult:
    """One built resource: where its artifact and manifest are, and whether it came from cache."""

    service: str
    resource: str
    directory: Path
    manifest: dict[str, Any]
    cached: bool

    @property
    def artifact(self) -> Path:
        """The artifact archive."""
        return self.directory / ARTIFACT_NAME

    @property
    def sha256(self) -> str:
        """The artifact's hash (its identity when deploying)."""
        return str(self.manifest["artifact_sha256"])


def _included(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    if any(part in _EXCLUDED_DIRS or part.startswith(".") for part in parts[:-1]):
        return False
    return not (parts[-1].startswith(".") or _EXCLUDED_FILE.match(parts[-1]))


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and _included(p, root))


def _requirement_lines(text: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def library_requirements() -> list[str]:
    """podroute's own runtime dependencies (no extras), as installed."""
    requirements = importlib.metadata.requires("podroute") or []
    return sorted(r for r in requirements if "extra ==" not in r)


@dataclass(frozen=True)
class _Sources:
    """Everything that goes into one service's artifacts, mapped to archive paths."""

    files: dict[str, Path]
    requirements: list[str]

    def fingerprint(self, python_version: str) -> str:
        digest = hashlib.sha256()
        digest.update(
            f"format={MANIFEST_FORMAT};python={python_version};podroute={podroute.__version__}\n".encode()
        )
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + self.files[name].read_bytes() + b"\0")
        digest.update("\n".join(self.requirements).encode())
        return digest.hexdigest()


def _collect_sources(project: Path, service_dir: Path) -> _Sources:
    files: dict[str, Path] = {}
    package_dir = service_dir.parent
    while package_dir != project and (package_dir / "__init__.py").is_file():
        files[f"app/{package_dir.relative_to(project).as_posix()}/__init__.py"] = package_dir / "__init__.py"
        package_dir = package_dir.parent
    for path in _files_under(service_dir):
        files[f"app/{path.relative_to(project).as_posix()}"] = path
    for path in _files_under(_LIBRARY_DIR):
        files[f"app/podroute/{path.relative_to(_LIBRARY_DIR).as_posix()}"] = path
    service_requirements = service_dir / "requirements.txt"
    requirements = library_requirements()
    if service_requirements.is_file():
        requirements += _requirement_lines(service_requirements.read_text())
    return _Sources(files, requirements)


def _dockerfile(compute: str, python_version: str, target: str) -> str:
    template_name = f"worker-{compute}.Dockerfile.in"
    template = (_LIBRARY_DIR / "templates" / template_name).read_text()
    return template.replace("{python_version}", python_version).replace("{target}", target)


def _tar_entry(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


def write_artifact(path: Path, members: dict[str, bytes]) -> str:
    """Write a deterministic tar.gz of `members` (archive name -> bytes); returns its sha256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(members):
            archive.addfile(*_tar_entry(name, members[name]))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
        gz.write(buffer.getvalue())
    data = compressed.getvalue()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _resource_manifest(
    service: str, module: str, entry: ResourceEntry, sources: _Sources, fingerprint: str, python_version: str
) -> dict[str, Any]:
    route_deps = sorted({dep for route in entry.routes for dep in route.dependencies})
    return {
        "format": MANIFEST_FORMAT,
        "service": service,
        "module": module,
        "target": f"{module}:{entry.resource.name}",
        "resource": entry.resource.to_config(),
        "compute": entry.resource.compute,
        "routes": [
            {"method": r.method, "path": r.path, "function": r.name, "module": r.function.__module__}
            for r in entry.routes
        ],
        "startup_hooks": [getattr(h, "__name__", repr(h)) for h in entry.startup_hooks],
        "dependencies": sorted(set(sources.requirements) | set(route_deps)),
        "python_version": python_version,
        "podroute_version": podroute.__version__,
        "source_fingerprint": fingerprint,
    }


def _members(manifest: dict[str, Any], sources: _Sources) -> dict[str, bytes]:
    requirements = manifest["dependencies"]
    image_requirements = requirements
    if manifest["compute"] == "gpu":  # the CUDA/torch base image provides torch, as Flash does
        image_requirements = [r for r in requirements if not _TORCH_PACKAGES.match(r)]
    members = {name: path.read_bytes() for name, path in sources.files.items()}
    members[MANIFEST_NAME] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    members["requirements.txt"] = ("\n".join(requirements) + "\n").encode()
    members["requirements-image.txt"] = ("\n".join(image_requirements) + "\n").encode()
    members["Dockerfile"] = _dockerfile(
        manifest["compute"], manifest["python_version"], manifest["target"]
    ).encode()
    return members


def _cached_results(service: str, out: Path, fingerprint: str) -> list[BuildResult] | None:
    index = out / service / fingerprint[:16] / "index.json"
    if not index.is_file():
        return None
    results = []
    for resource in json.loads(index.read_text()):
        directory = index.parent / resource
        manifest_path = directory / MANIFEST_NAME
        if not (manifest_path.is_file() and (directory / ARTIFACT_NAME).is_file()):
            return None
        manifest = json.loads(manifest_path.read_text())
        results.append(BuildResult(service, resource, directory, manifest, cached=True))
    return results


def build_service(project: Path, service: str, out: Path, progress: Progress = print) -> list[BuildResult]:
    """Build every load-balanced resource of one service (cached by source fingerprint)."""
    service_dir = services_folder(project) / service
    if not (service_dir / "__init__.py").is_file():
        raise BuildError(f"no service {service!r}: {service_dir} is not a Python package")
    python_version = ".".join(platform.python_version_tuple()[:2])
    sources = _collect_sources(project, service_dir)
    fingerprint = sources.fingerprint(python_version)
    cached = _cached_results(service, out, fingerprint)
    if cached is not None:
        progress(f"{service}: unchanged, using cached build {fingerprint[:12]}")
        return cached
    progress(f"{service}: importing routes")
    module = service_module(project, service)
    registry = Registry()
    with isolated_imports(project):
        import_routes(module, registry)
    entries = list(registry)
    if not entries:
        raise BuildError(f"{service}: {module} declares no resources; add @remote routes")
    target_dir = out / service / fingerprint[:16]
    results = []
    for entry in entries:
        if not entry.routes:
            raise BuildError(
                f"{service}: resource {entry.resource.name!r} has no routes; declare some with @remote"
            )
        manifest = _resource_manifest(service, module, entry, sources, fingerprint, python_version)
        directory = target_dir / entry.resource.name
        directory.mkdir(parents=True, exist_ok=True)
        progress(f"{service}: packing {entry.resource.name} ({len(sources.files)} files)")
        manifest["artifact_sha256"] = write_artifact(directory / ARTIFACT_NAME, _members(manifest, sources))
        (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        results.append(BuildResult(service, entry.resource.name, directory, manifest, cached=False))
    (target_dir / "index.json").write_text(json.dumps([r.resource for r in results]))
    return results


def project_services(project: Path) -> list[str]:
    """Names of the project's services (sub-packages of the services folder)."""
    folder = services_folder(project)
    if not folder.is_dir():
        raise BuildError(f"no services folder at {folder}")
    return service_names(project)


def build_project(
    project: Path, services: Iterable[str] = (), out: Path | None = None, progress: Progress = print
) -> list[BuildResult]:
    """Build the named services of `project` (all of them by default) into `out`."""
    project = project.resolve()
    out = out or project / ".podroute" / "builds"
    names = list(services) or project_services(project)
    known = project_services(project)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BuildError(f"unknown service(s) {', '.join(unknown)}; the project has: {', '.join(known)}")
    results = []
    for name in names:
        try:
            results += build_service(project, name, out, progress)
        except DiscoveryError as error:
            raise BuildError(f"{name}: {error}") from None
    return results


def extract_artifact(artifact: Path, destination: Path) -> dict[str, Any]:
    """Safely unpack an artifact (no absolute paths, no '..', no links) and return its manifest."""
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    with tarfile.open(artifact, mode="r:gz") as archive:
        for member in archive.getmembers():
            target = (root / member.name).resolve()
            if not member.isfile() or not target.is_relative_to(root):
                raise BuildError(f"refusing unsafe archive entry {member.name!r}")
        archive.extractall(root, filter="data")
    manifest: dict[str, Any] = json.loads((root / MANIFEST_NAME).read_text())
    return manifest
