"""Endpoint configs <-> podroute resources. Validation is the library's: a config is valid exactly
when the podroute resource built from it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dashboard.models import Endpoint, EnvVar
from podroute.deploy.model import DesiredConfig, resolve_config
from podroute.resources import (
    CpuLoadBalancerSlsResource,
    LoadBalancerSlsResource,
    Resource,
)

COMMON_FIELDS: dict[str, str] = {
    "name": "name",
    "imageName": "image_name",
    "workersMin": "workers_min",
    "workersMax": "workers_max",
    "idleTimeout": "idle_timeout",
    "scalerValue": "scaler_value",
    "executionTimeoutMs": "execution_timeout_ms",
    "flashboot": "flashboot",
    "locations": "locations",
    "networkVolumeId": "network_volume_id",
    "volumeMountPath": "volume_mount_path",
}
"""Flash field name -> Endpoint column, for fields every resource has."""

GPU_FIELDS: dict[str, str] = {"gpus": "gpus", "gpuCount": "gpu_count", "minCudaVersion": "min_cuda_version"}
"""Flash field name -> Endpoint column, for GPU resources only."""

CPU_FIELDS: dict[str, str] = {"instanceIds": "instance_ids"}
"""Flash field name -> Endpoint column, for CPU resources only."""

FIELD_LABELS: dict[str, str] = {
    "name": "Name",
    "service": "Service",
    "resource": "Resource in code",
    "compute": "Compute",
    "imageName": "Image",
    "gpus": "GPU pools",
    "gpuCount": "GPUs per worker",
    "minCudaVersion": "Minimum CUDA version",
    "instanceIds": "CPU instances",
    "workersMin": "Min workers",
    "workersMax": "Max workers",
    "idleTimeout": "Idle timeout (s)",
    "scalerValue": "Requests per worker",
    "executionTimeoutMs": "Execution timeout (ms)",
    "flashboot": "FlashBoot",
    "locations": "Locations",
    "networkVolumeId": "Network volume",
    "volumeMountPath": "Volume mount path",
    "env": "Environment",
}
"""Human labels of the form fields (Flash names plus the dashboard's own)."""


def resource_class(compute: str) -> type[Resource]:
    """The deployable resource class for 'gpu' or 'cpu' (a config describes a deployment)."""
    return CpuLoadBalancerSlsResource if compute == "cpu" else LoadBalancerSlsResource


def field_map(compute: str) -> dict[str, str]:
    """Flash field name -> Endpoint column for a compute kind."""
    return {**COMMON_FIELDS, **(CPU_FIELDS if compute == "cpu" else GPU_FIELDS)}


@dataclass
class EndpointDraft:
    """A validated config ready to store: the resource plus what only the dashboard knows."""

    resource: Resource
    service: str
    resource_name: str
    secret_keys: set[str] = field(default_factory=set)

    @property
    def compute(self) -> str:
        """'gpu' or 'cpu'."""
        return self.resource.compute


def endpoint_fields(endpoint: Endpoint, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The Flash fields of a stored endpoint (env taken from `env`, or from its loaded variables)."""
    fields = {flash: getattr(endpoint, column) for flash, column in field_map(endpoint.compute).items()}
    fields["env"] = env if env is not None else {var.key: var.value for var in endpoint.env_vars}
    return fields


def resource_of(endpoint: Endpoint) -> Resource:
    """Rebuild the podroute resource a stored endpoint describes (raises ResourceConfigError)."""
    return resource_class(endpoint.compute)(**endpoint_fields(endpoint))


def apply_draft(endpoint: Endpoint, draft: EndpointDraft) -> None:
    """Copy a validated draft onto an endpoint row, environment included."""
    resource = draft.resource
    endpoint.compute = resource.compute
    endpoint.service = draft.service
    endpoint.resource = draft.resource_name
    for flash, column in field_map(resource.compute).items():
        value = getattr(resource, flash)
        setattr(endpoint, column, list(value) if isinstance(value, list) else value)
    current = {var.key: var for var in endpoint.env_vars}
    wanted = resource.env
    endpoint.env_vars = [
        _env_var(current.get(key), key, value, key in draft.secret_keys)
        for key, value in sorted(wanted.items())
    ]


def _env_var(existing: EnvVar | None, key: str, value: str, secret: bool) -> EnvVar:
    var = existing or EnvVar(key=key)
    var.value = value
    var.secret = secret
    return var


SECRET_MASK = "***"  # noqa: S105
"""What the audit log and the UI show in place of a secret value."""


@dataclass(frozen=True)
class ConfigState:
    """An endpoint's config at one moment, raw (secret values included: never show or log it)."""

    fields: dict[str, Any]
    env: dict[str, tuple[str, bool]]


def state_of(endpoint: Endpoint) -> ConfigState:
    """Capture an endpoint's config (call before changing it, to diff afterwards)."""
    fields: dict[str, Any] = {
        "service": endpoint.service,
        "resource": endpoint.resource,
        "compute": endpoint.compute,
    }
    for flash, column in field_map(endpoint.compute).items():
        value = getattr(endpoint, column)
        fields[flash] = list(value) if isinstance(value, list) else value
    return ConfigState(fields, {var.key: (var.value, var.secret) for var in endpoint.env_vars})


def _env_change(old: tuple[str, bool] | None, new: tuple[str, bool] | None) -> list[Any] | None:
    if old == new:
        return None
    secret = bool((old and old[1]) or (new and new[1]))
    if not secret:
        return [old[0] if old else None, new[0] if new else None]
    before = SECRET_MASK if old else None
    after = (SECRET_MASK + (" (changed)" if old else "")) if new else None
    return [before, after]


def describe_changes(before: ConfigState | None, after: ConfigState) -> dict[str, list[Any]]:
    """Field -> [old, new] for every difference; secret values appear only as '***'."""
    old_fields = before.fields if before else {}
    changes = {
        key: [old_fields.get(key), after.fields.get(key)]
        for key in sorted(set(old_fields) | set(after.fields))
        if old_fields.get(key) != after.fields.get(key)
    }
    old_env = before.env if before else {}
    for key in sorted(set(old_env) | set(after.env)):
        change = _env_change(old_env.get(key), after.env.get(key))
        if change is not None:
            changes[f"env.{key}"] = change
    return changes


def masked_env(endpoint: Endpoint) -> list[tuple[str, str, bool]]:
    """(key, value or '***', secret) for display; secret values never leave the server."""
    return [(var.key, SECRET_MASK if var.secret else var.value, var.secret) for var in endpoint.env_vars]


_NOT_RESOURCE_FIELDS = ("service", "resource", "compute", "name")
"""Snapshot fields that say where a config comes from, not how the resource runs."""


def snapshot_values(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A deployment snapshot's resource values in Flash's names, `env` included (a secret variable
    as the snapshot holds it: a version marker, or the provider secret reference the worker puts
    in its place; never a value)."""
    fields = snapshot.get("fields", {})
    values = {key: value for key, value in fields.items() if key not in _NOT_RESOURCE_FIELDS}
    values["env"] = dict(snapshot.get("env", {}))
    return values


def desired_config(snapshot: dict[str, Any], declared: dict[str, Any]) -> DesiredConfig:
    """The desired config a snapshot releases, resolved by the library's one rule against the code's
    declaration (`declared`: a build manifest's `resource`), so every value knows its source."""
    code = {key: value for key, value in declared.items() if key not in ("type", "scalerType", "name")}
    return resolve_config(code, snapshot_values(snapshot))


def config_sources(endpoint: Endpoint, declared: dict[str, Any] | None) -> dict[str, str]:
    """Field -> "code" or "override" for an endpoint's stored config, env keys as `env.<KEY>`
    (the library's `resolve_config` decides; empty without the code's declaration)."""
    if declared is None:
        return {}
    env = {var.key: var.value for var in endpoint.env_vars}
    desired = desired_config({"fields": state_of(endpoint).fields, "env": env}, declared)
    return {**desired.sources, **{f"env.{key}": source for key, source in desired.env_sources.items()}}


def snapshot_from_release(endpoint: Endpoint, config: dict[str, Any]) -> dict[str, Any]:
    """A snapshot for a release another tool made (the CLI): the values its release recorded, on
    the config's identity fields. Env values are not in releases: keys only, shown masked."""
    fields: dict[str, Any] = {
        "service": endpoint.service, "resource": endpoint.resource, "compute": endpoint.compute
    }  # fmt: skip
    fields.update({key: value for key, value in config.items() if key not in ("env", "env_keys", "name")})
    keys = sorted(config.get("env_keys", config.get("env", {})))
    return {"fields": fields, "env": dict.fromkeys(keys, SECRET_MASK), "secrets": keys}
