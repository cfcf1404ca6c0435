"""RunPod's management API, spoken two ways: REST v2 (primary) and GraphQL (fallback).

Both transports offer the same small set of operations on normalized records (`Template`,
`Endpoint`, `Workers`), so `podroute.runpod.RunPodProvider` never sees which one it talks to.
See `runpod.py` for why REST v2 is the primary one.

Every HTTP call goes through `_Http`, which:

- sends `Authorization: Bearer <RUNPOD_API_KEY>` and a descriptive User-Agent (never the key in a
  URL, a log line, an exception or a repr);
- retries what cannot do harm twice: failed connects (nothing was sent), 429 (refused, waiting
  `Retry-After` or the `RateLimit` reset, whichever is longer), and, for idempotent calls only,
  5xx answers and connections lost after sending;
- for a non-idempotent call (a create) that may or may not have been applied, raises
  `AmbiguousResultError` instead, so the caller looks the record up by name before trying again.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

import podroute
from podroute.client import RetryPolicy, retry_after_seconds
from podroute.deploy import DeployError, ProviderUnavailableError

log = logging.getLogger("podroute.runpod")

ApiKind = Literal["rest", "graphql"]
RELEASE_ENV = "PODROUTE_RELEASE"
BUILD_ENV = "PODROUTE_BUILD"
_TRANSIENT_GRAPHQL = (
    "try again later",
    "internal server error",
    "service unavailable",
    "too many requests",
    "temporarily unavailable",
)
_RATE_LIMIT_RESET = re.compile(r";t=(\d+)")


@dataclass(frozen=True)
class RunPodSettings:
    """Where RunPod's APIs are and how patiently to talk to them.

    `from_env()` reads the variables RunPod's own tools honour, so tests point it at a fake.
    `endpoint_url` is the data-plane URL of an endpoint, `{id}` standing for its id.
    """

    api_key: str = field(repr=False)
    api: ApiKind = "rest"
    graphql_url: str = "https://api.runpod.io/graphql"
    rest_url: str = "https://api.runpod.io/v2"
    serverless_url: str = "https://api.runpod.ai/v2"
    endpoint_url: str = "https://{id}.api.runpod.ai"
    timeout_s: float = 30.0
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(attempts=6, backoff_base_s=0.5, backoff_max_s=15.0)
    )
    poll_interval_s: float = 2.0
    template_release_wait_s: float = 180.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RunPodSettings:
        """Settings from the environment (keyword overrides win).

        | variable | default |
        | --- | --- |
        | `RUNPOD_API_KEY` | required |
        | `PODROUTE_RUNPOD_API` | `rest` (REST v2) or `graphql` |
        | `RUNPOD_API_BASE_URL` | `https://api.runpod.io` (GraphQL is at `/graphql`) |
        | `RUNPOD_REST_V2_API_URL` | `https://api.runpod.io/v2` |
        | `RUNPOD_SERVERLESS_API_URL` | `https://api.runpod.ai/v2` (the `/<id>/health` API) |
        | `RUNPOD_ENDPOINT_BASE_URL` | `https://api.runpod.ai` (endpoint `<id>` at `https://<id>.<host>`) |

        A `RUNPOD_ENDPOINT_BASE_URL` containing `{id}` is used as is (`http://127.0.0.1:9000/lb/{id}`).

        `RUNPOD_REST_API_URL` (REST v1) is deliberately unused: v1 cannot create load balancers.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        api_key = env.get("RUNPOD_API_KEY", "").strip()
        if api_key:
            values["api_key"] = api_key
        api = env.get("PODROUTE_RUNPOD_API", "").strip().lower()
        if api:
            if api not in ("rest", "graphql"):
                raise DeployError(f"PODROUTE_RUNPOD_API must be 'rest' or 'graphql', got {api!r}")
            values["api"] = api
        if base := env.get("RUNPOD_API_BASE_URL"):
            values["graphql_url"] = base.rstrip("/") + "/graphql"
        if rest := env.get("RUNPOD_REST_V2_API_URL"):
            values["rest_url"] = rest.rstrip("/")
        if serverless := env.get("RUNPOD_SERVERLESS_API_URL"):
            values["serverless_url"] = serverless.rstrip("/")
        if endpoint := env.get("RUNPOD_ENDPOINT_BASE_URL"):
            values["endpoint_url"] = endpoint_url_template(endpoint)
        values.update(overrides)
        if not values.get("api_key"):
            raise DeployError(
                "RUNPOD_API_KEY is not set: create an API key with read/write access to serverless "
                "at https://console.runpod.io/user/settings and export RUNPOD_API_KEY=<key>"
            )
        return cls(**values)

    def url_of(self, endpoint_id: str) -> str:
        """The data-plane base URL of an endpoint."""
        return self.endpoint_url.replace("{id}", endpoint_id)


def endpoint_url_template(base: str) -> str:
    """`https://api.runpod.ai` -> `https://{id}.api.runpod.ai` (as Flash does); `{id}` kept as is."""
    base = base.rstrip("/")
    if "{id}" in base:
        return base
    scheme, _, host = base.partition("://")
    return f"{scheme}://{{id}}.{host}" if host else f"https://{{id}}.{scheme}"


class RunPodApiError(DeployError):
    """RunPod refused a request; `status` is the HTTP status, `errors` the field problems it listed."""

    def __init__(self, message: str, status: int = 0, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []


class RunPodAuthError(RunPodApiError):
    """The API key was refused (401/403)."""


class RunPodUnavailableError(ProviderUnavailableError):
    """RunPod kept failing (5xx, 429, lost connections) through every retry; try again later."""


class AmbiguousResultError(DeployError):
    """A non-idempotent call failed after it was sent: it may or may not have been applied."""


class NotFoundError(RunPodApiError):
    """The record does not exist (any more)."""


class TemplateInUseError(RunPodApiError):
    """A template cannot be deleted yet: an endpoint or pod uses it (or used it moments ago)."""


class _Http:
    """The one place that sends requests to RunPod (auth, retries, error mapping)."""

    def __init__(self, settings: RunPodSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=settings.timeout_s,
            follow_redirects=False,
            headers={
                "Authorization": f"Bearer {settings.api_key}",
                "User-Agent": f"podroute/{podroute.__version__} (+runpod provider)",
            },
        )

    def __repr__(self) -> str:
        return f"<RunPod HTTP client api={self.settings.api}>"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def request(
        self, method: str, url: str, *, what: str, idempotent: bool, json: Any = None
    ) -> httpx.Response:
        """Send one logical request, retrying as the module docstring says; returns a < 400 answer.

        401/403 raise RunPodAuthError, 404 NotFoundError, other 4xx RunPodApiError with the fields
        RunPod named.
        """
        policy = self.settings.retry
        last = ""
        for attempt in range(policy.attempts):
            wait: float | None = None
            try:
                response = self._client.request(method, url, json=json)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
                last = f"cannot connect ({type(error).__name__})"
            except httpx.TransportError as error:
                last = f"connection lost after sending ({type(error).__name__})"
                if not idempotent:
                    raise AmbiguousResultError(f"RunPod {what}: {last}") from None
            else:
                log.debug("runpod %s %s -> %s", method, _path_of(url), response.status_code)
                if response.status_code == 429:
                    last = "rate limited (429)"
                    wait = _rate_limit_wait(response)
                elif response.status_code >= 500:
                    last = f"server error {response.status_code}"
                    if not idempotent:
                        raise AmbiguousResultError(f"RunPod {what}: {last}")
                else:
                    _raise_for_client_error(response, what)
                    return response
            if attempt + 1 < policy.attempts:
                delay = policy.delay(attempt, wait)
                log.info("runpod %s: %s; retrying in %.2fs", what, last, delay)
                self._sleep(delay)
        raise RunPodUnavailableError(
            f"RunPod {what} still failing after {policy.attempts} tries (last: {last}); "
            "check https://uptime.runpod.io and try again later"
        )


def _path_of(url: str) -> str:
    return httpx.URL(url).path


def _rate_limit_wait(response: httpx.Response) -> float | None:
    """max(Retry-After, the RateLimit header's reset), as runpod-mcp does."""
    candidates = [s for s in (retry_after_seconds(response),) if s is not None]
    candidates += [float(m) for m in _RATE_LIMIT_RESET.findall(response.headers.get("RateLimit", ""))[:1]]
    return max(candidates) if candidates else None


def _problem_message(response: httpx.Response) -> tuple[str, list[str]]:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase, []
    if not isinstance(body, dict):
        return str(body)[:300], []
    errors = [str(e) for e in body.get("errors") or [] if not isinstance(e, dict)]
    errors += [str(e.get("message")) for e in body.get("errors") or [] if isinstance(e, dict)]
    detail = str(body.get("detail") or body.get("message") or body.get("error") or body.get("title") or "")
    return detail, errors


def _raise_for_client_error(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status < 400:
        return
    detail, errors = _problem_message(response)
    listed = f" ({'; '.join(errors)})" if errors else ""
    if status in (401, 403):
        raise RunPodAuthError(
            f"RunPod refused the API key for {what} ({status}): check that RUNPOD_API_KEY is a current "
            "key with read/write access to serverless (https://console.runpod.io/user/settings)",
            status,
        )
    error_type = NotFoundError if status == 404 else RunPodApiError
    raise error_type(f"RunPod refused {what} ({status}): {detail}{listed}", status, errors)


# --- normalized records -------------------------------------------------------------------------


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


_WORKER_STATES = {
    "IDLE": "ready",
    "RUNNING": "ready",
    "INITIALIZING": "initializing",
    "THROTTLED": "throttled",
    "UNHEALTHY": "unhealthy",
}


def _health_workers(http: _Http, settings: RunPodSettings, endpoint_id: str) -> Workers:
    """The data plane's `GET /v2/<id>/health` worker counts (counts only, no per-worker rows)."""
    response = http.request(
        "GET", f"{settings.serverless_url}/{endpoint_id}/health", what="health check", idempotent=True
    )
    raw = response.json().get("workers") or {}
    counts = {str(k): int(v) for k, v in raw.items()}
    return Workers(counts=counts, workers=[])


# --- REST v2 ------------------------------------------------------------------------------------


class RestV2Api:
    """RunPod REST v2 (`/v2/serverless`, `/v2/templates`): type `LOAD_BALANCER`."""

    def __init__(self, settings: RunPodSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._http = _Http(settings, sleep)
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
                "state": _WORKER_STATES.get(str(w.get("status")), "unhealthy"),
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


# --- GraphQL ------------------------------------------------------------------------------------

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
        self._http = _Http(settings, sleep)

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
        """Run any other operation (e.g. secrets) with the same auth, retries and error mapping."""
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
        return _health_workers(self._http, self.settings, endpoint_id)

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


def api_for(settings: RunPodSettings, sleep: Callable[[float], None] = time.sleep) -> RunPodApi:
    """The transport `settings.api` names."""
    return GraphQLApi(settings, sleep) if settings.api == "graphql" else RestV2Api(settings, sleep)
