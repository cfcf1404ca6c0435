"""The control plane's shared vocabulary: targets, provider-side names, desired and actual state.

Both tools that deploy (the `podroute` CLI and the dashboard's Celery tasks) speak these types, so
a target deployed from either lands on the same provider endpoint and each sees what the other did.

- A `Target` is *what* is deployed *where*: (project, environment, service, resource).
- `endpoint_name(target)` is the one naming rule for provider-side endpoints; the `labels` of
  `target_labels(target)` are the project's marker (the local runtime stores them on the endpoint;
  RunPod carries them in the release template's env). Endpoints without the marker are never touched.
- `DesiredConfig` is what the user asked for: the code's resource declaration plus recorded
  overrides, with the source of every value (`resolve_config`).
- `ActualEndpoint` is what the provider reports it runs; `Reconciliation` compares the two.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

MARKER_LABEL = "podroute.project"
"""The label whose presence marks a provider endpoint as this tool's; its value is the project."""
ENVIRONMENT_LABEL = "podroute.environment"
SERVICE_LABEL = "podroute.service"
RESOURCE_LABEL = "podroute.resource"
NAME_MAX = 63
"""Provider-side endpoint names are at most this long (RunPod's limit)."""

SCALING_FIELDS = ("workersMin", "workersMax", "idleTimeout", "scalerValue", "executionTimeoutMs")
"""The fields a scale operation sets; they apply at once, without a new release."""

Source = Literal["code", "override"]


@dataclass(frozen=True, order=True)
class Target:
    """What is deployed where: one resource of one service, in one environment of one project."""

    project: str
    environment: str
    service: str
    resource: str

    @property
    def key(self) -> str:
        """`service/resource`, how both tools name a target within an environment."""
        return f"{self.service}/{self.resource}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def endpoint_name(target: Target) -> str:
    """The provider-side name of a target's endpoint: the same for every tool, retry and re-run.

    `pr-<project>-<environment>-<service>-<resource>` in lowercase letters, digits and dashes; when
    longer than 63 characters it is cut and ends in a hash of the whole, so names stay unique.
    """
    full = "-".join(_slug(part) for part in ("pr", target.project, target.environment, target.service))
    if _slug(target.resource) != _slug(target.service):
        full = f"{full}-{_slug(target.resource)}"
    if len(full) <= NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[: NAME_MAX - 9].rstrip('-')}-{digest}"


SECRET_NAME_MAX = 128
"""Provider-side secret names are at most this long (letters, digits, '_', '.', '-')."""


def env_secret_name(target: Target, key: str, version: str) -> str:
    """The provider-side secret holding one value of env variable `key` of a target (the dashboard's
    secret env values): `<endpoint_name(target)>-<KEY>-<version>`, where `version` fingerprints the
    value, so a changed value is a new name (a new release that rolls the workers over, while older
    releases keep the secret they were released with) and an unchanged one is the same name (a
    retried rollout makes nothing twice). Cut with a hash of the whole when over 128 characters."""
    base = f"{endpoint_name(target)}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', key)}"
    full = f"{base}-{version}"
    if len(full) <= SECRET_NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{base[: SECRET_NAME_MAX - len(version) - 10]}-{digest}-{version}"


def target_labels(target: Target) -> dict[str, str]:
    """The marker labels a provider endpoint of `target` carries."""
    return {
        MARKER_LABEL: target.project,
        ENVIRONMENT_LABEL: target.environment,
        SERVICE_LABEL: target.service,
        RESOURCE_LABEL: target.resource,
    }


def target_from_labels(labels: Mapping[str, str]) -> Target | None:
    """The target a marked endpoint belongs to; None for an endpoint without the full marker."""
    try:
        return Target(
            project=labels[MARKER_LABEL],
            environment=labels[ENVIRONMENT_LABEL],
            service=labels[SERVICE_LABEL],
            resource=labels[RESOURCE_LABEL],
        )
    except KeyError:
        return None


@dataclass(frozen=True)
class DesiredConfig:
    """A target's desired resource config and where each value comes from."""

    values: dict[str, Any]
    """Resource fields in Flash's names (`workersMax`, `env`, `gpus`, ...), as `Resource.to_config`."""
    sources: dict[str, Source]
    """Field -> "code" (the resource declaration) or "override" (a dashboard edit, `podroute scale`)."""
    env_sources: dict[str, Source] = field(default_factory=dict)
    """Env key -> where its value comes from ("env" in `sources` is "override" when any key is)."""

    def scaling(self, fields: tuple[str, ...] = SCALING_FIELDS) -> dict[str, int]:
        """The scaling part of the config, as a provider's `scale` takes it."""
        return {name: int(self.values[name]) for name in fields if name in self.values}


def resolve_config(declared: Mapping[str, Any], overrides: Mapping[str, Any]) -> DesiredConfig:
    """The one rule both tools use: the code's declaration, with each recorded override on top.

    `declared` is the resource config from the code (a build manifest's `resource`); `overrides`
    holds only the fields someone changed outside the code. `env` merges key by key (an override
    of one key keeps the others). An override equal to the declared value counts as code.
    """
    values: dict[str, Any] = {key: value for key, value in declared.items() if key != "env"}
    sources: dict[str, Source] = dict.fromkeys(values, "code")
    env = dict(declared.get("env", {}))
    for key, value in overrides.items():
        if key == "env":
            env.update(value)
            continue
        values[key] = value
        sources[key] = "code" if declared.get(key) == value else "override"
    values["env"] = env
    env_overridden = any(declared.get("env", {}).get(k) != v for k, v in overrides.get("env", {}).items())
    sources["env"] = "override" if env_overridden else "code"
    declared_env = declared.get("env", {})
    env_sources: dict[str, Source] = {
        key: "code" if key in declared_env and declared_env[key] == value else "override"
        for key, value in env.items()
    }
    return DesiredConfig(values=values, sources=sources, env_sources=env_sources)


@dataclass(frozen=True)
class ReleaseInfo:
    """One release of an endpoint as the provider keeps it; never changes once made."""

    number: int
    build: str
    """The artifact's sha256."""
    config: dict[str, Any]
    """The desired config it was released with (env values of secrets never included)."""
    deployed_by: str = ""
    """Who released it: "cli:<user>" or "dashboard:<user>"."""
    created_at: float = 0.0


@dataclass
class ActualEndpoint:
    """What a provider reports for one endpoint: the actual state a reconcile compares against."""

    id: str
    name: str
    url: str
    labels: dict[str, str] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)
    """The config it really runs: scaling fields, `env_keys`, `build`/`image`, compute fields."""
    release: ReleaseInfo | None = None
    releases: list[ReleaseInfo] = field(default_factory=list)
    workers: dict[str, int] = field(default_factory=dict)
    """Worker counts by state (RunPod's health API shape: idle, running, initializing, ...)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """The desired overrides recorded on the endpoint (`podroute scale`, a dashboard scaling change)."""
    details: dict[str, Any] = field(default_factory=dict)
    """The provider's own status body (worker rows, scaling decisions, failures, routes), for display."""

    @property
    def target(self) -> Target | None:
        """The target it belongs to, from its marker labels."""
        return target_from_labels(self.labels)


def release_config(config: DesiredConfig) -> dict[str, Any]:
    """What a release keeps of its config: every value except env values (`env_keys` instead).

    Env values may be secrets; they stay where the provider runs them (the runtime's state, a
    RunPod template) and are never copied into release metadata.
    """
    kept = {key: value for key, value in config.values.items() if key != "env"}
    kept["env_keys"] = sorted(config.values.get("env", {}))
    return kept


@dataclass(frozen=True)
class RecordedDeployment:
    """What a tool's record says is deployed for a target: the input side of a reconcile."""

    target: Target
    endpoint_id: str
    """The provider endpoint the record points at ("" when the target was never deployed)."""
    config: dict[str, Any]
    """The stored desired config values (as `DesiredConfig.values` or `release_config` keeps them)."""
    build: str = ""
    """The artifact sha256 the record says serves ("" when not known)."""


@dataclass(frozen=True)
class FieldDrift:
    """One field whose serving value differs from the stored (desired) one."""

    name: str
    stored: Any
    serving: Any


@dataclass(frozen=True)
class Drift:
    """A recorded deployment whose provider endpoint serves another config than the record says."""

    target: Target
    endpoint_id: str
    fields: tuple[FieldDrift, ...]


@dataclass
class Reconciliation:
    """Desired vs actual for one environment of one project."""

    drift: list[Drift] = field(default_factory=list)
    orphans: list[ActualEndpoint] = field(default_factory=list)
    """Provider endpoints carrying this project's marker that no record knows."""
    missing: list[Target] = field(default_factory=list)
    """Recorded deployments whose provider endpoint is gone."""

    @property
    def in_sync(self) -> bool:
        """True when nothing differs."""
        return not (self.drift or self.orphans or self.missing)
