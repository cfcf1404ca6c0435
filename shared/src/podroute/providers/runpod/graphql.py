"""RunPod's GraphQL API (`saveTemplate`, `saveEndpoint` with type `LB`): the route Flash uses,
kept as the fallback (`PODROUTE_RUNPOD_API=graphql`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from podroute.providers.runpod.http import (
    AmbiguousResultError,
    Http,
    NotFoundError,
    RunPodApiError,
    RunPodSettings,
    RunPodUnavailableError,
    TemplateInUseError,
)
from podroute.providers.runpod.records import (
    Endpoint,
    EndpointConfig,
    Template,
    TemplateSpec,
    Workers,
    health_workers,
)

_TRANSIENT_GRAPHQL = (
    "try again later",
    "internal server error",
    "service unavailable",
    "too many requests",
    "temporarily unavailable",
)

_TEMPLATE_FIELDS = "id name imageName isServerless env { key value }"
_ENDPOINT_FIELDS = (
    "id name type templateId gpuIds gpuCount instanceIds workersMin workersMax idleTimeout scalerType "
    "scalerValue executionTimeoutMs locations networkVolumeId minCudaVersion flashBootType "
    f"template {{ {_TEMPLATE_FIELDS} }}"
)
_LIST_TEMPLATES = f"query {{ myself {{ podTemplates {{ {_TEMPLATE_FIELDS} }} }} }}"
_SAVE_TEMPLATE = (
    "mutation SaveTemplate($input: SaveTemplateInput) "
    f"{{ saveTemplate(input: $input) {{ {_TEMPLATE_FIELDS} }} }}"
)
_DELETE_TEMPLATE = "mutation DeleteTemplate($name: String!) { deleteTemplate(templateName: $name) }"
_LIST_ENDPOINTS = f"query {{ myself {{ endpoints {{ {_ENDPOINT_FIELDS} }} }} }}"
_GET_ENDPOINT = f"query Endpoint($id: String!) {{ myself {{ endpoint(id: $id) {{ {_ENDPOINT_FIELDS} }} }} }}"
_SAVE_ENDPOINT = (
    "mutation SaveEndpoint($input: EndpointInput!) "
    f"{{ saveEndpoint(input: $input) {{ {_ENDPOINT_FIELDS} }} }}"
)
_DELETE_ENDPOINT = "mutation DeleteEndpoint($id: String!) { deleteEndpoint(id: $id) }"


class GraphQLApi:
    """RunPod GraphQL (`saveTemplate`, `saveEndpoint` with type `LB`): the route Flash uses."""

    def __init__(self, settings: RunPodSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._http = Http(settings, sleep)

    def __repr__(self) -> str:
        return f"GraphQLApi({self.settings.graphql_url!r})"

    def close(self) -> None:
        """Release connections."""
        self._http.close()

    def _run(self, query: str, variables: dict[str, Any], *, what: str, idempotent: bool) -> dict[str, Any]:
        """POST one operation; GraphQL errors (HTTP 200) become RunPodApiError, transient ones retried."""
        attempts = self.settings.retry.attempts
        for attempt in range(attempts):
            response = self._http.request(
                "POST",
                self.settings.graphql_url,
                json={"query": query, "variables": variables},
                what=what,
                idempotent=idempotent,
            )
            body = response.json()
            errors = [str(e.get("message", e)) for e in body.get("errors") or []]
            if not errors:
                data: dict[str, Any] = body.get("data") or {}
                return data
            message = "; ".join(errors)
            transient = any(marker in message.lower() for marker in _TRANSIENT_GRAPHQL)
            if not transient:
                lowered = message.lower()
                if "not found" in lowered or "does not exist" in lowered:
                    raise NotFoundError(f"RunPod refused {what}: {message}", 200, errors)
                if "in use" in lowered or "bound" in lowered:
                    raise TemplateInUseError(f"RunPod refused {what}: {message}", 200, errors)
                raise RunPodApiError(f"RunPod refused {what}: {message}", 200, errors)
            if not idempotent:
                raise AmbiguousResultError(f"RunPod {what}: {message}")
            if attempt + 1 < attempts:
                self._sleep(self.settings.retry.delay(attempt))
        raise RunPodUnavailableError(f"RunPod {what} still failing after {attempts} tries; try again later")

    def execute(
        self, query: str, variables: dict[str, Any], *, what: str, idempotent: bool
    ) -> dict[str, Any]:
        """Run another operation (the secrets of `podroute.providers.runpod.secrets`) with the same
        auth, retries and error mapping; `idempotent` False: an unclear outcome is never resent."""
        return self._run(query, variables, what=what, idempotent=idempotent)

    def list_templates(self) -> list[Template]:
        """myself { podTemplates }."""
        data = self._run(_LIST_TEMPLATES, {}, what="list templates", idempotent=True)
        return [self._template(t) for t in (data.get("myself") or {}).get("podTemplates") or []]

    def create_template(self, name: str, spec: TemplateSpec) -> Template:
        """saveTemplate without an id (creates; names are unique per account)."""
        template_input = {
            "name": name,
            "imageName": spec.image,
            "isServerless": True,
            "containerDiskInGb": spec.disk_gb,
            "volumeInGb": 0,
            "dockerArgs": "",
            "ports": ",".join(spec.ports),
            "env": [{"key": k, "value": v} for k, v in spec.env.items()],
            "containerRegistryAuthId": "",
            "readme": "",
        }
        data = self._run(
            _SAVE_TEMPLATE, {"input": template_input}, what=f"create template {name}", idempotent=False
        )
        return self._template(data["saveTemplate"])

    def delete_template(self, template: Template) -> None:
        """deleteTemplate(templateName:) (by name)."""
        self._run(
            _DELETE_TEMPLATE,
            {"name": template.name},
            what=f"delete template {template.name}",
            idempotent=True,
        )

    def list_endpoints(self) -> list[Endpoint]:
        """myself { endpoints }."""
        data = self._run(_LIST_ENDPOINTS, {}, what="list endpoints", idempotent=True)
        return [self._endpoint(e) for e in (data.get("myself") or {}).get("endpoints") or []]

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """myself { endpoint(id:) } (null when it does not exist)."""
        data = self._run(_GET_ENDPOINT, {"id": endpoint_id}, what="read endpoint", idempotent=True)
        raw = (data.get("myself") or {}).get("endpoint")
        return self._endpoint(raw) if raw else None

    def create_endpoint(self, name: str, config: EndpointConfig, template: Template) -> Endpoint:
        """saveEndpoint without an id, type LB, scalerType REQUEST_COUNT."""
        data = self._run(
            _SAVE_ENDPOINT,
            {"input": _graphql_input(name, config, template)},
            what=f"create endpoint {name}",
            idempotent=False,
        )
        return self._endpoint(data["saveEndpoint"])

    def update_endpoint(self, endpoint: Endpoint, config: EndpointConfig, template: Template) -> Endpoint:
        """saveEndpoint with the id and the complete record (it replaces the whole record)."""
        endpoint_input = {"id": endpoint.id, **_graphql_input(endpoint.name, config, template)}
        data = self._run(
            _SAVE_ENDPOINT,
            {"input": endpoint_input},
            what=f"update endpoint {endpoint.name}",
            idempotent=True,
        )
        return self._endpoint(data["saveEndpoint"])

    def delete_endpoint(self, endpoint_id: str) -> None:
        """deleteEndpoint(id:)."""
        self._run(_DELETE_ENDPOINT, {"id": endpoint_id}, what="delete endpoint", idempotent=True)

    def workers(self, endpoint_id: str) -> Workers:
        """GraphQL has no worker list: the data plane's health API gives counts by state."""
        return health_workers(self._http, self.settings, endpoint_id)

    @staticmethod
    def _template(raw: dict[str, Any]) -> Template:
        env = {str(item["key"]): str(item["value"]) for item in raw.get("env") or []}
        return Template(
            id=str(raw["id"]), name=str(raw["name"]), image=str(raw.get("imageName", "")), env=env
        )

    @classmethod
    def _endpoint(cls, raw: dict[str, Any]) -> Endpoint:
        pools, excluded = [], []
        for item in str(raw.get("gpuIds") or "").split(","):
            item = item.strip()
            if item.startswith("-"):
                excluded.append(item[1:])
            elif item:
                pools.append(item)
        instance_ids = tuple(raw.get("instanceIds") or ())
        config = EndpointConfig(
            compute="cpu" if instance_ids else "gpu",
            gpu_pools=tuple(pools),
            gpu_excluded=tuple(excluded),
            gpu_count=int(raw.get("gpuCount") or 0),
            min_cuda_version=str(raw.get("minCudaVersion") or ""),
            instance_ids=instance_ids,
            workers_min=int(raw.get("workersMin") or 0),
            workers_max=int(raw.get("workersMax") or 0),
            idle_timeout=int(raw.get("idleTimeout") or 0),
            scaler_value=int(raw.get("scalerValue") or 0),
            execution_timeout_ms=int(raw.get("executionTimeoutMs") or 0),
            flashboot=raw.get("flashBootType") not in (None, "OFF"),
            locations=tuple(p for p in str(raw.get("locations") or "").split(",") if p),
            network_volume_id=str(raw.get("networkVolumeId") or ""),
        )
        template = cls._template(raw["template"]) if raw.get("template") else None
        return Endpoint(
            id=str(raw["id"]),
            name=str(raw["name"]),
            type=str(raw.get("type") or "QB"),
            config=config,
            image=template.image if template else "",
            env=template.env if template else {},
            template_id=str(raw.get("templateId") or "") or None,
        )


def _graphql_input(name: str, config: EndpointConfig, template: Template) -> dict[str, Any]:
    gpu_ids = ",".join([*config.gpu_pools, *(f"-{t}" for t in config.gpu_excluded)])
    endpoint_input: dict[str, Any] = {
        "name": name,
        "type": "LB",
        "templateId": template.id,
        "gpuIds": gpu_ids if config.compute == "gpu" else "",
        "gpuCount": config.gpu_count if config.compute == "gpu" else 0,
        "workersMin": config.workers_min,
        "workersMax": config.workers_max,
        "idleTimeout": config.idle_timeout,
        "scalerType": "REQUEST_COUNT",
        "scalerValue": config.scaler_value,
        "executionTimeoutMs": config.execution_timeout_ms,
        "flashBootType": "FLASHBOOT" if config.flashboot else "OFF",
        "locations": ",".join(config.locations),
        "networkVolumeId": config.network_volume_id,
    }
    if config.compute == "cpu":
        endpoint_input["instanceIds"] = list(config.instance_ids)
    elif config.min_cuda_version:
        endpoint_input["minCudaVersion"] = config.min_cuda_version
    return endpoint_input
