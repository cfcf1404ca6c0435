"""RunPod's records, normalized: what `RestV2Api` and `GraphQLApi` both return, and the protocol
they both implement, so the provider never sees which API it talks to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from podroute.providers.runpod.http import Http, RunPodSettings

RELEASE_ENV = "PODROUTE_RELEASE"
BUILD_ENV = "PODROUTE_BUILD"


@dataclass(frozen=True)
class TemplateSpec:
    """What a release's template holds: the image and how to run it."""

    image: str
    env: dict[str, str]
    compute: Literal["gpu", "cpu"]
    ports: tuple[str, ...] = ("80/http",)
    disk_gb: int = 20


@dataclass(frozen=True)
class Template:
    """A serverless template as RunPod reports it."""

    id: str
    name: str
    image: str
    env: dict[str, str]


@dataclass(frozen=True)
class EndpointConfig:
    """An LB endpoint's complete configuration (what a full-record update sends)."""

    compute: Literal["gpu", "cpu"]
    gpu_pools: tuple[str, ...] = ()
    gpu_excluded: tuple[str, ...] = ()
    gpu_count: int = 1
    min_cuda_version: str = ""
    instance_ids: tuple[str, ...] = ()
    workers_min: int = 0
    workers_max: int = 1
    idle_timeout: int = 60
    scaler_value: int = 4
    execution_timeout_ms: int = 0
    flashboot: bool = True
    locations: tuple[str, ...] = ()
    network_volume_id: str = ""

    def scaling(self) -> dict[str, int]:
        """The four scaling settings, under the names users know."""
        return {
            "workersMin": self.workers_min,
            "workersMax": self.workers_max,
            "idleTimeout": self.idle_timeout,
            "scalerValue": self.scaler_value,
        }


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as RunPod reports it; `env` and `image` are what its workers run."""

    id: str
    name: str
    type: str
    config: EndpointConfig
    image: str
    env: dict[str, str]
    template_id: str | None = None

    @property
    def release(self) -> int:
        """PodRoute's release number of what the endpoint serves (0 when unknown)."""
        value = self.env.get(RELEASE_ENV, "0")
        return int(value) if value.isdigit() else 0


@dataclass(frozen=True)
class Workers:
    """Workers by state; `workers` lists each one when the API says (REST v2), else empty."""

    counts: dict[str, int]
    workers: list[dict[str, Any]]

    @property
    def ready(self) -> int:
        """Workers passing their health check (idle or running), of the current release if known."""
        if self.workers:
            return sum(1 for w in self.workers if w["state"] == "ready" and not w["stale"])
        return self.counts.get("ready", self.counts.get("idle", 0) + self.counts.get("running", 0))


class RunPodApi(Protocol):
    """What the provider needs from RunPod; `RestV2Api` and `GraphQLApi` implement it."""

    def list_templates(self) -> list[Template]:
        """Every template of the account (no pagination exists)."""

    def create_template(self, name: str, spec: TemplateSpec) -> Template:
        """Create a serverless template (may raise AmbiguousResultError)."""

    def delete_template(self, template: Template) -> None:
        """Delete a template; NotFoundError when gone, TemplateInUseError while in use."""

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint of the account."""

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """One endpoint, or None when it does not exist."""

    def create_endpoint(self, name: str, config: EndpointConfig, template: Template) -> Endpoint:
        """Create an LB endpoint serving `template` (may raise AmbiguousResultError)."""

    def update_endpoint(self, endpoint: Endpoint, config: EndpointConfig, template: Template) -> Endpoint:
        """Replace the endpoint's whole record (idempotent)."""

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint; NotFoundError when it is already gone."""

    def workers(self, endpoint_id: str) -> Workers:
        """The endpoint's workers by state."""

    def close(self) -> None:
        """Release connections."""


WORKER_STATES = {
    "IDLE": "ready",
    "RUNNING": "ready",
    "INITIALIZING": "initializing",
    "THROTTLED": "throttled",
    "UNHEALTHY": "unhealthy",
}


def health_workers(http: Http, settings: RunPodSettings, endpoint_id: str) -> Workers:
    """The data plane's `GET /v2/<id>/health` worker counts (counts only, no per-worker rows)."""
    response = http.request(
        "GET", f"{settings.serverless_url}/{endpoint_id}/health", what="health check", idempotent=True
    )
    raw = response.json().get("workers") or {}
    counts = {str(k): int(v) for k, v in raw.items()}
    return Workers(counts=counts, workers=[])
