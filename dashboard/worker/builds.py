"""Builds: the endpoint's service built into an artifact in a child process, and its image.

User code never runs in the worker process: `podroute build --json` runs in a child with a clean
environment, and its machine-readable result is read back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dashboard.discovery import child_environment
from dashboard.images import ImageError, build_and_push, docker_unavailable
from dashboard.models import Build, Endpoint
from dashboard.worker.context import Context, append_log, note
from podroute.build import MANIFEST_NAME, BuildResult
from podroute.providers.base import DeployError

BUILD_TIMEOUT_S = 600
_SECRET_ENV = ("RUNPOD_API_KEY", "REDIS_URL", "CELERY_BROKER_URL", "PODROUTE_RUNTIME_TOKEN")


def build_result(build: Build) -> BuildResult:
    """The library's view of a stored build; DeployError when its artifact is gone."""
    directory = Path(build.directory)
    result = BuildResult(
        service=str(build.manifest.get("service", "")),
        resource=str(build.manifest.get("resource", {}).get("name", "")),
        directory=directory,
        manifest=build.manifest,
        cached=True,
    )
    if not result.artifact.is_file():
        raise DeployError(f"build #{build.id}'s artifact is missing at {result.artifact}; build again")
    return result


def run_build(context: Context, build_id: int) -> None:
    """Build the endpoint's service in a child process (user code never runs in the worker)."""
    with context.sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None
        endpoint = session.get(Endpoint, build.endpoint_id)
        assert endpoint is not None
    if not endpoint.service or not endpoint.resource:
        return _finish_build(
            context,
            build_id,
            error=(
                "this endpoint is not linked to code (Service and Resource in code are empty): "
                "import it from code, or fill both on the edit form"
            ),
        )
    project = context.settings.project_dir.resolve()
    note(context, Build, build_id, f"building service {endpoint.service} of {project}")
    command = [
        sys.executable, "-m", "podroute", "build", endpoint.service, "--project", str(project), "--json"
    ]  # fmt: skip
    env = {k: v for k, v in child_environment(project).items() if k not in _SECRET_ENV}
    process = subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def forward_progress() -> None:
        for line in process.stderr or []:
            note(context, Build, build_id, line.rstrip())

    reader = threading.Thread(target=forward_progress, daemon=True)
    reader.start()
    try:
        output = process.stdout.read() if process.stdout else ""
        process.wait(timeout=BUILD_TIMEOUT_S)
        reader.join(10)
    except subprocess.TimeoutExpired:
        process.kill()
        return _finish_build(
            context, build_id, error=f"the build took longer than {BUILD_TIMEOUT_S}s and was stopped"
        )
    if process.returncode != 0:
        return _finish_build(
            context, build_id, error=f"`podroute build` failed (exit {process.returncode}); see the log"
        )
    try:
        records = json.loads(output)["builds"]
    except (ValueError, KeyError, TypeError):
        return _finish_build(
            context, build_id, error="`podroute build --json` printed no build list; see the log"
        )
    found = next(
        (r for r in records if (r["service"], r["resource"]) == (endpoint.service, endpoint.resource)), None
    )
    if found is None:
        return _finish_build(
            context,
            build_id,
            error=(
                f"service {endpoint.service!r} has no resource {endpoint.resource!r}; "
                "check 'Resource in code' on the edit form"
            ),
        )
    directory = Path(found["directory"])
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    origin = "cached" if found["cached"] else "built"
    line = f"{endpoint.service}/{endpoint.resource}: {origin} {found['sha256'][:12]}  {found['artifact']}"
    _finish_build(context, build_id, directory=directory, manifest=manifest, line=line)
    if context.settings.docker_registry:
        publish_image(context, build_id)


def publish_image(
    context: Context, build_id: int, unavailable: Callable[[], str | None] = docker_unavailable
) -> None:
    """Build and push a finished build's image to DASHBOARD_DOCKER_REGISTRY and record its digest.

    The build stays succeeded either way: without Docker the log says why, and pasting a reference
    in the build panel still works.
    """
    problem = unavailable()
    if problem is not None:
        note(context, Build, build_id, f"image not built: {problem}")
        return
    with context.sessions() as session:
        row = session.get(Build, build_id)
        assert row is not None
    try:
        image = build_and_push(
            build_result(row),
            context.settings.docker_registry,
            lambda line: note(context, Build, build_id, line),
        )
    except (ImageError, DeployError, OSError, subprocess.TimeoutExpired) as error:
        note(context, Build, build_id, f"image not pushed: {error}")
        return
    with context.sessions.begin() as session:
        stored = session.get(Build, build_id)
        if stored is not None:
            stored.image = image
            append_log(stored, f"pushed image {image}")


def _finish_build(
    context: Context,
    build_id: int,
    *,
    error: str = "",
    directory: Path | None = None,
    manifest: dict[str, Any] | None = None,
    line: str = "",
) -> None:
    with context.sessions.begin() as session:
        build = session.get(Build, build_id)
        assert build is not None
        if error:
            build.status, build.error = "failed", error
            append_log(build, f"failed: {error}")
            return
        assert directory is not None and manifest is not None
        build.status, build.directory, build.manifest = "succeeded", str(directory), manifest
        build.artifact_hash = str(manifest["artifact_sha256"])
        append_log(build, line or f"built {build.artifact_hash[:12]}")


def fail_build(context: Context, build_id: int, message: str) -> None:
    """Mark a build failed (its task gave up)."""
    _finish_build(context, build_id, error=message)
