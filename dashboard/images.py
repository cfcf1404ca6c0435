"""Container images for builds: RunPod runs images, so each build deployed there needs one.

Two ways to get one:

- **Paste** (always available): the build panel shows the exact commands
  (`podroute.providers.runpod.config.image_instructions`) and a field for the pushed reference, checked by
  `check_image_reference` and stored on the build row.
- **Build and push** (when `DASHBOARD_DOCKER_REGISTRY` is set and a Docker engine answers): after
  a successful build the worker unpacks the build's Docker context, runs `docker build` and
  `docker push`, and records the pushed digest (`repo@sha256:...`). Without a reachable engine it
  says so in the build log and the paste path stays open.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from podroute.build import BuildResult

_DOMAIN = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::(?P<tag>[\w][\w.-]{{0,127}}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
"""A Docker image reference (`[registry[:port]/]path[:tag][@sha256:digest]`)."""
DOCKER_TIMEOUT_S = 1800
_DIGEST = re.compile(r"digest: (sha256:[a-f0-9]{64})")

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
"""Runs one command and returns its result (output captured as text)."""


class ImageError(ValueError):
    """An image reference is invalid, or building/pushing failed; the message says what to do."""


def check_image_reference(text: str) -> str:
    """The reference, stripped; ImageError saying what is wrong when it is not a pinned reference."""
    reference = text.strip()
    if not reference:
        raise ImageError("enter the image reference you pushed, e.g. ghcr.io/acme/api:3f2a9c1b7d4e")
    if len(reference) > 500:
        raise ImageError("an image reference is at most 500 characters")
    match = IMAGE_REFERENCE.match(reference)
    if match is None:
        raise ImageError(
            f"{reference!r} is not an image reference: use [registry/]name:tag or name@sha256:<digest>, "
            "lowercase, without spaces or a scheme (no https://)"
        )
    if not match.group("tag") and not match.group("digest"):
        raise ImageError(
            f"{reference!r} has no tag or digest: add the tag you pushed (…:v1) or the digest "
            "(…@sha256:…), so every deploy of this build runs the same image"
        )
    return reference


def image_name(build: BuildResult, registry: str) -> str:
    """Where the dashboard pushes a build's image: `<registry>/<service>-<resource>:<sha256[:12]>`."""
    return f"{registry.rstrip('/')}/{build.service}-{build.resource}:{build.sha256[:12]}".lower()


@dataclass(frozen=True)
class DockerPlan:
    """The commands that build and push one build's image."""

    image: str
    context: str
    commands: tuple[tuple[str, ...], ...]


def docker_plan(build: BuildResult, registry: str, docker: str = "docker") -> DockerPlan:
    """Build, push, then read back the pushed digest, for `build`'s Docker context."""
    image = image_name(build, registry)
    context = str(build.directory / "context")
    return DockerPlan(
        image=image,
        context=context,
        commands=(
            (docker, "build", "--platform", "linux/amd64", "-t", image, context),
            (docker, "push", image),
            (docker, "image", "inspect", "--format", "{{index .RepoDigests 0}}", image),
        ),
    )


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), capture_output=True, text=True, timeout=DOCKER_TIMEOUT_S, check=False
    )


def docker_unavailable(docker: str = "docker", run: Runner = _run) -> str | None:
    """Why images cannot be built here (no CLI, no engine), or None when Docker answers."""
    fallback = "paste the image reference in the build panel instead, or unset DASHBOARD_DOCKER_REGISTRY"
    if shutil.which(docker) is None:
        return f"the docker command is not installed on the worker; {fallback}"
    try:
        result = run((docker, "version", "--format", "{{.Server.Version}}"))
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"running `{docker} version` failed ({error}); {fallback}"
    if result.returncode != 0 or not result.stdout.strip():
        detail = (result.stderr.strip().splitlines() or ["no answer"])[-1][:200]
        return f"no Docker engine answers ({detail}); start Docker on the worker, or {fallback}"
    return None


def build_and_push(
    build: BuildResult,
    registry: str,
    log: Callable[[str], None],
    *,
    docker: str = "docker",
    run: Runner = _run,
) -> str:
    """Build and push `build`'s image; returns the pushed `image@sha256:...`; ImageError on failure."""
    plan = docker_plan(build, registry, docker)
    with tarfile.open(build.artifact) as archive:
        archive.extractall(plan.context, filter="data")
    digest = ""
    for command in plan.commands:
        log("$ " + " ".join(command))
        result = run(command)
        if result.returncode != 0:
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-5:]
            raise ImageError(
                f"`{' '.join(command[:2])}` failed (exit {result.returncode}): {' / '.join(tail)}; "
                "fix it and build again, or paste an image reference"
            )
        found = _DIGEST.search(result.stdout)
        digest = found.group(1) if found else digest
        if command[1] == "image" and "@sha256:" in result.stdout:
            digest = result.stdout.strip().rsplit("@", 1)[1]
    if not digest:
        raise ImageError(f"pushed {plan.image} but Docker reported no digest; paste the reference instead")
    return f"{plan.image.rsplit(':', 1)[0]}@{digest}"
