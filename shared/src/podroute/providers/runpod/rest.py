"""RunPod's REST v2 API (`/v2/serverless`, `/v2/templates`): the primary transport."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from podroute.providers.base import DeployError
from podroute.providers.runpod.http import (
    Http,
    NotFoundError,
    RunPodApiError,
    RunPodSettings,
    TemplateInUseError,
)
from podroute.providers.runpod.records import (
    WORKER_STATES,
    Endpoint,
    EndpointConfig,
    Template,
    TemplateSpec,
    Workers,
)


class RestV2Api:
    """RunPod REST v2 (`/v2/serverless`, `/v2/templates`): type `LOAD_BALANCER`."""

    def __init__(self, settings: RunPodSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._http = Http(settings, sleep)
        self._base = settings.rest_url.rstrip("/")

    def __repr__(self) -> str:
        return f"RestV2Api({self._base!r})"

    def close(self) -> None:
        """Release connections."""
        self._http.close()

    def list_templates(self) -> list[Template]:
        """GET /v2/templates."""
        body = self._http.request("GET", f"{self._base}/templates", what="list templates", idempotent=True)
        return [self._template(t) for t in body.json().get("templates", [])]

    def create_template(self, name: str, spec: TemplateSpec) -> Template:
        """POST /v2/templates (201)."""
        payload = {
            "name": name,
            "image": spec.image,
            "args": "",
            "disk": spec.disk_gb,
            "ports": list(spec.ports),
            "env": dict(spec.env),
            "serverless": True,
            "category": "CPU" if spec.compute == "cpu" else "NVIDIA",
        }
        response = self._http.request(
            "POST", f"{self._base}/templates", json=payload, what=f"create template {name}", idempotent=False
        )
        return self._template(response.json())

    def delete_template(self, template: Template) -> None:
        """DELETE /v2/templates/{id} (204; 400 while bound)."""
        try:
            self._http.request(
                "DELETE",
                f"{self._base}/templates/{template.id}",
                what=f"delete template {template.name}",
                idempotent=True,
            )
        except NotFoundError:
            raise
        except RunPodApiError as error:
            if error.status == 400:
                raise TemplateInUseError(str(error), error.status, error.errors) from None
            raise

    def list_endpoints(self) -> list[Endpoint]:
        """GET /v2/serverless."""
        body = self._http.request("GET", f"{self._base}/serverless", what="list endpoints", idempotent=True)
        return [self._endpoint(e) for e in body.json().get("endpoints", [])]

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """GET /v2/serverless/{id}."""
        try:
            response = self._http.request(
                "GET", f"{self._base}/serverless/{endpoint_id}", what="read endpoint", idempotent=True
            )
        except NotFoundError:
            return None
        return self._endpoint(response.json())

    def create_endpoint(self, name: str, config: EndpointConfig, template: Template) -> Endpoint:
        """POST /v2/serverless with type LOAD_BALANCER (201)."""
        payload = {
            "name": name,
            "type": "LOAD_BALANCER",
            "templateId": template.id,
            **_v2_body(config, template),
        }
        response = self._http.request(
            "POST", f"{self._base}/serverless", json=payload, what=f"create endpoint {name}", idempotent=False
        )
        return self._endpoint(response.json())

    def update_endpoint(self, endpoint: Endpoint, config: EndpointConfig, template: Template) -> Endpoint:
        """PATCH /v2/serverless/{id} with every field (so nothing falls back to a default)."""
        response = self._http.request(
            "PATCH",
            f"{self._base}/serverless/{endpoint.id}",
            json=_v2_body(config, template),
            what=f"update endpoint {endpoint.name}",
            idempotent=True,
        )
        return self._endpoint(response.json())

    def delete_endpoint(self, endpoint_id: str) -> None:
        """DELETE /v2/serverless/{id} (204; also removes its bound template)."""
        self._http.request(
            "DELETE", f"{self._base}/serverless/{endpoint_id}", what="delete endpoint", idempotent=True
        )

    def workers(self, endpoint_id: str) -> Workers:
        """GET /v2/serverless/{id}/workers: a summary plus each worker with its release."""
        body = self._http.request(
            "GET", f"{self._base}/serverless/{endpoint_id}/workers", what="list workers", idempotent=True
        ).json()
        summary = {str(k): int(v) for k, v in (body.get("summary") or {}).items() if k != "total"}
        workers = [
            {
                "id": str(w.get("id")),
                "state": WORKER_STATES.get(str(w.get("status")), "unhealthy"),
                "status": str(w.get("status", "")).lower(),
                "stale": bool(w.get("isStale")),
            }
            for w in body.get("workers") or []
        ]
        summary["ready"] = sum(1 for w in workers if w["state"] == "ready")
        return Workers(counts=summary, workers=workers)

    @staticmethod
    def _template(raw: dict[str, Any]) -> Template:
        return Template(
            id=str(raw["id"]),
            name=str(raw["name"]),
            image=str(raw.get("image", "")),
            env=dict(raw.get("env") or {}),
        )

    @staticmethod
    def _endpoint(raw: dict[str, Any]) -> Endpoint:
        workers = raw.get("workers") or {}
        scaling = raw.get("scaling") or {}
        gpu = raw.get("gpu")
        cpu = raw.get("cpu")
        config = EndpointConfig(
            compute="cpu" if cpu else "gpu",
            gpu_pools=tuple((gpu or {}).get("pools") or ()),
            gpu_excluded=tuple((gpu or {}).get("excludedTypes") or ()),
            gpu_count=int((gpu or {}).get("count") or 1),
            min_cuda_version=str((gpu or {}).get("minCudaVersion") or ""),
            instance_ids=tuple(f"{c['id']}-{c['vcpuCount']}" for c in cpu or ()),
            workers_min=int(workers.get("min", 0)),
            workers_max=int(workers.get("max", 0)),
            idle_timeout=int(workers.get("idleTimeout", 0)),
            scaler_value=int(scaling.get("requestCount") or 0),
            execution_timeout_ms=int(raw.get("timeout") or 0),
            flashboot=raw.get("flashboot") not in (None, "OFF"),
            locations=tuple(raw.get("dataCenterIds") or ()),
            network_volume_id=next(iter(raw.get("networkVolumes") or ()), ""),
        )
        endpoint_type = "LB" if raw.get("type") == "LOAD_BALANCER" else str(raw.get("type"))
        return Endpoint(
            id=str(raw["id"]),
            name=str(raw["name"]),
            type=endpoint_type,
            config=config,
            image=str(raw.get("image", "")),
            env=dict(raw.get("env") or {}),
        )


def _v2_cpu(instance_ids: tuple[str, ...]) -> list[dict[str, Any]]:
    cpus = []
    for instance in instance_ids:
        flavor, vcpu = instance.split("-")[:2]
        count = int(vcpu)
        if count < 2 or count & (count - 1):
            raise DeployError(
                f"REST v2 needs a power-of-two vCPU count of at least 2, and {instance!r} has {count}: "
                "pick a bigger instance (e.g. cpu3c-2-4) or set PODROUTE_RUNPOD_API=graphql"
            )
        cpus.append({"id": flavor, "vcpuCount": count})
    return cpus


def _v2_body(config: EndpointConfig, template: Template) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image": template.image,
        "env": dict(template.env),
        "ports": ["80/http"],
        "workers": {"min": config.workers_min, "max": config.workers_max, "idleTimeout": config.idle_timeout},
        "scaling": {"type": "REQUEST_COUNT", "requestCount": config.scaler_value},
        "dataCenterIds": list(config.locations),
        "networkVolumes": [config.network_volume_id] if config.network_volume_id else [],
        "timeout": config.execution_timeout_ms,
        "flashboot": "FLASHBOOT" if config.flashboot else "OFF",
    }
    if config.compute == "cpu":
        body["cpu"] = _v2_cpu(config.instance_ids)
    else:
        gpu: dict[str, Any] = {
            "pools": list(config.gpu_pools),
            "excludedTypes": list(config.gpu_excluded),
            "count": config.gpu_count,
        }
        if config.min_cuda_version:
            gpu["minCudaVersion"] = config.min_cuda_version
        body["gpu"] = gpu
    return body
