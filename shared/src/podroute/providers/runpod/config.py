"""How PodRoute's config maps onto a RunPod endpoint: the endpoint record a config asks for,
the scaling checks, and the docker commands that make a build's image."""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Mapping
from typing import Any

from podroute.build import BuildResult
from podroute.catalog import GPU_ANY, GPU_POOLS, pool_of
from podroute.providers.base import DeployError
from podroute.providers.runpod.records import EndpointConfig

SCALING_FIELDS = ("workersMin", "workersMax", "idleTimeout", "scalerValue", "executionTimeoutMs")
"""What a scale applies at once (a full-record update of the endpoint, no new release)."""


class SecretStr(str):
    """A string that never shows itself in a repr (an API key inside a dataclass, a log, a traceback)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


RUNPOD_VOLUME_PATH = "/runpod-volume"
"""Where RunPod serverless workers see their endpoint's network volume (it cannot be moved)."""


def volume_env(resource: Mapping[str, Any]) -> dict[str, str]:
    """`RUNPOD_VOLUME_PATH` for a resource with a network volume (what the local runtime sets too)."""
    return {"RUNPOD_VOLUME_PATH": RUNPOD_VOLUME_PATH} if resource.get("networkVolumeId") else {}


def endpoint_config(resource: Mapping[str, Any], compute: str) -> EndpointConfig:
    """The endpoint configuration a build's resource (`manifest["resource"]`) asks for.

    DeployError for a network volume at another mount path than RunPod's fixed one.
    """
    mount_path = str(resource.get("volumeMountPath") or RUNPOD_VOLUME_PATH)
    if resource.get("networkVolumeId") and mount_path != RUNPOD_VOLUME_PATH:
        raise DeployError(
            f"RunPod serverless mounts network volumes at {RUNPOD_VOLUME_PATH}, not {mount_path}: "
            f"remove volumeMountPath (or set it to {RUNPOD_VOLUME_PATH}) to deploy to RunPod"
        )
    pools: list[str] = []
    excluded: list[str] = []
    if compute == "gpu":
        chosen = list(resource.get("gpus") or [GPU_ANY])
        if GPU_ANY in chosen:
            pools = list(GPU_POOLS)
        else:
            pools = [g for g in chosen if g in GPU_POOLS]
            for gpu_type in (g for g in chosen if g not in GPU_POOLS):
                pool = pool_of(gpu_type)
                if pool is None or pool in pools:
                    continue
                pools.append(pool)
                excluded += [t for t in GPU_POOLS[pool] if t not in chosen]
    return EndpointConfig(
        compute="cpu" if compute == "cpu" else "gpu",
        gpu_pools=tuple(pools),
        gpu_excluded=tuple(excluded),
        gpu_count=int(resource.get("gpuCount", 1)) if compute == "gpu" else 0,
        min_cuda_version=str(resource.get("minCudaVersion", "")) if compute == "gpu" else "",
        instance_ids=tuple(resource.get("instanceIds") or ()) if compute == "cpu" else (),
        workers_min=int(resource.get("workersMin", 0)),
        workers_max=int(resource.get("workersMax", 1)),
        idle_timeout=int(resource.get("idleTimeout", 60)),
        scaler_value=int(resource.get("scalerValue", 4)),
        execution_timeout_ms=int(resource.get("executionTimeoutMs", 0)),
        flashboot=bool(resource.get("flashboot", True)),
        locations=tuple(resource.get("locations") or ()),
        network_volume_id=str(resource.get("networkVolumeId", "")),
    )


def image_instructions(build: BuildResult) -> str:
    """The exact commands that turn a build's Docker context into a pushed image."""
    repository = os.environ.get("PODROUTE_IMAGE_REPOSITORY", "docker.io/YOUR_USER").rstrip("/")
    image = f"{repository}/{build.service}-{build.resource}:{build.sha256[:12]}".lower()
    context = build.directory / "context"
    return (
        f"  mkdir -p {shlex.quote(str(context))}\n"
        f"  tar -xzf {shlex.quote(str(build.artifact))} -C {shlex.quote(str(context))}\n"
        f"  docker build --platform linux/amd64 -t {image} {shlex.quote(str(context))}\n"
        f"  docker push {image}"
    )


def validate_scaling(current: EndpointConfig, scaling: Mapping[str, Any]) -> EndpointConfig:
    """`current` with `scaling` applied; DeployError naming every bad field."""
    unknown = sorted(set(scaling) - set(SCALING_FIELDS))
    problems = [f"{name}: unknown setting; use {', '.join(SCALING_FIELDS)}" for name in unknown]
    values = {**current.scaling(), "executionTimeoutMs": current.execution_timeout_ms}
    for name in SCALING_FIELDS:
        if name in scaling:
            value = scaling[name]
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name}: must be a whole number, got {value!r}")
            else:
                values[name] = value
    if not problems:
        if values["workersMin"] < 0 or values["workersMax"] < 0:
            problems.append("workersMin/workersMax: must be 0 or more")
        if values["workersMin"] > values["workersMax"]:
            problems.append(
                f"workersMin ({values['workersMin']}) must not exceed workersMax ({values['workersMax']})"
            )
        if not 1 <= values["idleTimeout"] <= 3600:
            problems.append(f"idleTimeout: must be between 1 and 3600 seconds, got {values['idleTimeout']}")
        if values["scalerValue"] < 1:
            problems.append(f"scalerValue: must be 1 or more, got {values['scalerValue']}")
        if values["executionTimeoutMs"] < 0:
            problems.append(f"executionTimeoutMs: must be 0 or more, got {values['executionTimeoutMs']}")
    if problems:
        raise DeployError("invalid scaling:\n  " + "\n  ".join(problems))
    return dataclasses.replace(
        current,
        workers_min=values["workersMin"],
        workers_max=values["workersMax"],
        idle_timeout=values["idleTimeout"],
        scaler_value=values["scalerValue"],
        execution_timeout_ms=values["executionTimeoutMs"],
    )
