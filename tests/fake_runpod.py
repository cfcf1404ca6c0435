"""A fake RunPod (the only fake in the test suite): management APIs, health API and LB data plane.

A plain ASGI app, served by real Hypercorn on loopback (`fake_runpod_server()`), that behaves as
`shared/reference/runpod-contract.md` says:

- **REST v2** `/v2/serverless[/{id}[/workers]]`, `/v2/templates[/{id}]`: Bearer auth, unknown
  fields 422 (problem+json listing them), `type` required and immutable, `REQUEST_COUNT` only for
  `LOAD_BALANCER`, exactly one of gpu/cpu, power-of-two vCPUs, 201 on create, 204 on delete,
  `RateLimit` headers, unique template names, templateId resolved once at create (no link).
- **GraphQL** `/graphql`: `saveTemplate`, `saveEndpoint` (upsert on `id`, full-record replace:
  omitted fields fall back to defaults), `myself { podTemplates | endpoints | endpoint(id) }`,
  `deleteEndpoint` (only at workersMin = workersMax = 0), `deleteTemplate(templateName)` (not
  while an endpoint uses it, nor for `template_release_s` after); errors as HTTP 200 `errors`;
  Bearer or `?api_key=`; a workers quota across endpoints. Secrets: `myself { secrets }`,
  `secretCreate(input: {name, value, description})` (names of letters, digits, `_`, `.`, `-`;
  unique), `secretDelete(id)`; values are kept in `secret_values` and never returned.
- **Catalog and billing** (REST v2): `GET /v2/catalog/gpus|cpus` (`price.serverless` USD per
  GPU-hour, `price.serverlessPerVcpu` USD per vCPU-hour; 400 when `include` is sent without
  `product`) and `GET /v2/billing/serverless` (`startTime, endTime, bucketSize, serverlessId`
  filters over `billing_records`, which tests fill).
- **Data plane**: `/dataplane/v2/{id}/health` (workers by state) and `/lb/{id}/...` (401 without
  the key, "no workers available" 400 when none gets ready in time, `X-Runpod-Worker-Id`), with
  workers simulated over time: scale from zero on requests, `workersMin`, `workersMax`,
  `idleTimeout`, cold start, rolling replacement on a new release, unhealthy for broken images.

`inject()` makes the next matching requests fail: 429 (with Retry-After), 500, a slow answer, or a
dropped connection, before or after the request has been applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from podroute.catalog import GPU_POOLS, GPU_TYPES
from tests.helpers import hypercorn_server

API_KEY = "rpa_FAKE0123456789SECRETKEYSECRETKEY"
Reply = tuple[int, dict[str, str], Any]
_ALNUM = string.ascii_lowercase + string.digits


def _new_id(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


class _Invalid(Exception):
    def __init__(self, status: int, detail: str, errors: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []


@dataclass
class Fault:
    """One injected failure: `kind` is 429, 500, slow or drop; `match` a substring of the signature."""

    kind: str
    match: str
    times: int = 1
    after: bool = True
    retry_after: str = "1"
    delay_s: float = 0.0


@dataclass
class _Worker:
    id: str
    version: int
    state: str
    ready_at: float


@dataclass
class _Endpoint:
    id: str
    name: str
    type: str  # LB or QB (v2 LOAD_BALANCER / QUEUE)
    compute: str
    config: dict[str, Any]
    image: str = ""
    env: dict[str, str] = field(default_factory=dict)
    template_id: str | None = None
    linked: bool = False  # GraphQL: image and env come from the template
    version: int = 1
    workers: list[_Worker] = field(default_factory=list)
    last_request: float = 0.0
    bound_template: str | None = None


GRAPHQL_ENDPOINT_DEFAULTS: dict[str, Any] = {
    "gpuIds": "",
    "gpuCount": 1,
    "instanceIds": [],
    "workersMin": 0,
    "workersMax": 3,
    "idleTimeout": 5,
    "scalerType": "QUEUE_DELAY",
    "scalerValue": 4,
    "executionTimeoutMs": 600000,
    "locations": "",
    "networkVolumeId": "",
    "flashBootType": "OFF",
    "minCudaVersion": "",
}
_GRAPHQL_ENDPOINT_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "name": str,
    "type": str,
    "templateId": str,
    "template": dict,
    "gpuIds": str,
    "gpuCount": int,
    "instanceIds": list,
    "workersMin": int,
    "workersMax": int,
    "idleTimeout": int,
    "scalerType": str,
    "scalerValue": int,
    "executionTimeoutMs": int,
    "locations": str,
    "networkVolumeId": str,
    "flashBootType": str,
    "minCudaVersion": str,
    "allowedCudaVersions": str,
    "workersPFBTarget": int,
}
_GRAPHQL_TEMPLATE_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "name": str,
    "imageName": str,
    "isServerless": bool,
    "containerDiskInGb": int,
    "volumeInGb": int,
    "volumeMountPath": str,
    "dockerArgs": str,
    "ports": str,
    "env": list,
    "containerRegistryAuthId": str,
    "readme": str,
    "isPublic": bool,
    "startSsh": bool,
}
_V2_CREATE_FIELDS = {
    "name",
    "type",
    "templateId",
    "image",
    "args",
    "disk",
    "ports",
    "env",
    "registry",
    "gpu",
    "cpu",
    "workers",
    "scaling",
    "dataCenterIds",
    "networkVolumes",
    "timeout",
    "flashboot",
}
_V2_UPDATE_FIELDS = _V2_CREATE_FIELDS - {"type", "templateId", "name"}
_V2_TEMPLATE_FIELDS = {
    "name",
    "image",
    "args",
    "disk",
    "ports",
    "env",
    "registry",
    "serverless",
    "public",
    "category",
    "mounts",
    "allowedCudaVersions",
    "startSsh",
    "startJupyter",
}


class FakeRunPod:
    """The fake's state and its ASGI app (`self`); thread-safe for tests that look inside."""

    def __init__(
        self,
        *,
        cold_start_s: float = 0.15,
        no_worker_timeout_s: float = 1.0,
        template_release_s: float = 0.0,
        workers_quota: int = 30,
    ) -> None:
        self.api_key = API_KEY
        self.cold_start_s = cold_start_s
        self.no_worker_timeout_s = no_worker_timeout_s
        self.template_release_s = template_release_s
        self.workers_quota = workers_quota
        self.broken_images: set[str] = set()
        self.templates: dict[str, dict[str, Any]] = {}
        self.endpoints: dict[str, _Endpoint] = {}
        self.released_at: dict[str, float] = {}
        self.calls: list[str] = []
        self.unsafe_deletes: list[str] = []
        self.faults: list[Fault] = []
        self.requests_by_header: list[dict[str, str]] = []
        self.gpu_prices: dict[str, float] = {"ADA_24": 1.10, "AMPERE_24": 0.68, "HOPPER_141": 5.58}
        """USD per GPU-hour by pool, as the catalog quotes `price.serverless`."""
        self.cpu_price_per_vcpu = 0.03
        self.billing_records: list[dict[str, Any]] = []
        """`/v2/billing/serverless` records: {startTime, endTime, totalAmount, gpuAmount, ...}."""
        self.secrets: dict[str, dict[str, str]] = {}
        self.secret_values: dict[str, str] = {}
        self.request_bodies: list[bytes] = []
        self._lock = threading.RLock()

    # --- test controls ---------------------------------------------------------------------

    def inject(self, kind: str, match: str, **options: Any) -> Fault:
        """Fail the next request whose signature contains `match` (see `Fault`)."""
        fault = Fault(kind, match, **options)
        with self._lock:
            self.faults.append(fault)
        return fault

    def count(self, signature: str) -> int:
        """How many requests had a signature containing `signature`."""
        with self._lock:
            return sum(1 for call in self.calls if signature in call)

    def lb_endpoints(self) -> list[_Endpoint]:
        """Every endpoint of the account."""
        with self._lock:
            return list(self.endpoints.values())

    # --- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        """The ASGI entry point."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode())
        method, path = scope["method"], scope["path"]
        signature = self._signature(method, path, body)
        with self._lock:
            self.calls.append(signature)
            self.request_bodies.append(body)
            self.requests_by_header.append(headers)
            fault = self._take_fault(signature)
        if fault and fault.kind == "429":
            await self._send(
                send, 429, {"Retry-After": fault.retry_after}, _problem(429, "rate limit exceeded")
            )
            return
        if fault and not fault.after:
            await self._fail(send, fault)
            return
        status, extra, payload = await self._dispatch(method, path, headers, query, body)
        if fault:
            await self._fail(send, fault)
            return
        await self._send(send, status, extra, payload)

    def _take_fault(self, signature: str) -> Fault | None:
        for fault in self.faults:
            if fault.match in signature and fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                return fault
        return None

    async def _fail(self, send: Any, fault: Fault) -> None:
        if fault.kind == "500":
            await self._send(send, 500, {}, _problem(500, "internal server error"))
        elif fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
            await self._send(send, 200, {}, {})
        else:  # drop: a partial answer, then the connection closes
            start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"500")]}
            await send(start)
            await send({"type": "http.response.body", "body": b'{"data"', "more_body": True})
            raise ConnectionAbortedError("fake RunPod dropped the connection (injected)")

    @staticmethod
    async def _send(send: Any, status: int, headers: dict[str, str], payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        content_type = "application/problem+json" if status >= 400 and "title" in (payload or {}) else None
        pairs = [(b"content-length", str(len(data)).encode())]
        if payload is not None:
            pairs.append((b"content-type", (content_type or "application/json").encode()))
        pairs += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": pairs})
        await send({"type": "http.response.body", "body": data})

    @staticmethod
    def _signature(method: str, path: str, body: bytes) -> str:
        if path == "/graphql":
            try:
                query = json.loads(body).get("query", "")
            except ValueError:
                query = ""
            return f"graphql {_graphql_operation(query)}"
        return f"{method} {path}"

    async def _dispatch(
        self, method: str, path: str, headers: dict[str, str], query: dict[str, list[str]], body: bytes
    ) -> Reply:
        if path == "/openapi.json":
            return 200, {}, {"openapi": "3.1.0", "info": {"title": "fake RunPod", "version": "0"}}
        if path.startswith("/lb/"):
            return await self._load_balancer(method, path, headers)
        authorized = headers.get("authorization") == f"Bearer {self.api_key}"
        if path == "/graphql":
            authorized = authorized or query.get("api_key") == [self.api_key]
            if not authorized:
                return 401, {}, {"errors": [{"message": "Unauthorized"}]}
            return self._graphql(body)
        if not authorized:
            return 401, {}, _problem(401, "missing or invalid API key")
        if method == "GET" and path.startswith(("/v2/catalog/", "/v2/billing/")):
            return self._catalog_or_billing(path, query)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            return 400, {}, _problem(400, "request body is not JSON")
        with self._lock:
            try:
                status, extra, payload = self._rest(method, path, data)
            except _Invalid as error:
                status, extra, payload = error.status, {}, _problem(error.status, error.detail, error.errors)
        rate = {"RateLimit": '"minute";r=59;t=60', "RateLimit-Policy": '"minute";q=60;w=60'}
        return status, {**rate, **extra}, payload

    # --- catalog and billing --------------------------------------------------------------------

    def _catalog_or_billing(self, path: str, query: dict[str, list[str]]) -> Reply:
        if path in ("/v2/catalog/gpus", "/v2/catalog/cpus") and "include" in query and "product" not in query:
            return 400, {}, _problem(400, "include requires product (e.g. product=SERVERLESS)")
        if path == "/v2/catalog/gpus":
            gpus = [
                {"id": gpu, "name": gpu.replace("NVIDIA ", ""), "pool": pool, "memory": 0,
                 "price": {"serverless": self.gpu_prices[pool]}}
                for pool, types in GPU_POOLS.items() if pool in self.gpu_prices for gpu in types
            ]  # fmt: skip
            return 200, {}, {"gpus": gpus}
        if path == "/v2/catalog/cpus":
            cpus = [{"id": f"{flavor}-2-4", "price": {"serverlessPerVcpu": self.cpu_price_per_vcpu}}
                    for flavor in ("cpu3c", "cpu3g", "cpu5c")]  # fmt: skip
            return 200, {}, {"cpus": cpus}
        if path == "/v2/billing/serverless":
            records = list(self.billing_records)
            if "serverlessId" in query:
                records = [r for r in records if r["serverlessId"] == query["serverlessId"][0]]
            if "startTime" in query:
                records = [r for r in records if r["endTime"] > query["startTime"][0]]
            if "endTime" in query:
                records = [r for r in records if r["startTime"] < query["endTime"][0]]
            return 200, {}, records
        return 404, {}, _problem(404, f"no route GET {path}")

    # --- REST v2 -------------------------------------------------------------------------------

    def _rest(self, method: str, path: str, data: Any) -> Reply:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["dataplane"] and len(parts) == 4 and parts[3] == "health" and method == "GET":
            endpoint = self._get(parts[2])
            self._tick(endpoint)
            return 200, {}, {"jobs": {"completed": 0, "failed": 0, "inProgress": 0, "inQueue": 0,
                                      "retried": 0}, "workers": self._counts(endpoint)}  # fmt: skip
        if parts[:2] == ["v2", "serverless"]:
            if len(parts) == 2 and method == "GET":
                return 200, {}, {"endpoints": [self._v2_endpoint(e) for e in self.endpoints.values()]}
            if len(parts) == 2 and method == "POST":
                return 201, {}, self._v2_endpoint(self._v2_create(data))
            if len(parts) == 3:
                endpoint = self._get(parts[2])
                if method == "GET":
                    return 200, {}, self._v2_endpoint(endpoint)
                if method == "PATCH":
                    return 200, {}, self._v2_endpoint(self._v2_update(endpoint, data))
                if method == "DELETE":
                    if endpoint.config["workersMin"] or endpoint.config["workersMax"]:
                        self.unsafe_deletes.append(endpoint.id)
                    self._remove_endpoint(endpoint)
                    return 204, {}, None
            if len(parts) == 4 and parts[3] == "workers" and method == "GET":
                return 200, {}, self._v2_workers(self._get(parts[2]))
        if parts[:2] == ["v2", "templates"]:
            if len(parts) == 2 and method == "GET":
                return 200, {}, {"templates": [self._v2_template(t) for t in self.templates.values()]}
            if len(parts) == 2 and method == "POST":
                return 201, {}, self._v2_template(self._v2_create_template(data))
            if len(parts) == 3:
                template = self.templates.get(parts[2])
                if template is None:
                    raise _Invalid(404, f"template {parts[2]} not found")
                if method == "GET":
                    return 200, {}, self._v2_template(template)
                if method == "DELETE":
                    self._check_template_free(template)
                    del self.templates[template["id"]]
                    return 204, {}, None
        raise _Invalid(404, f"no route {method} {path}")

    def _get(self, endpoint_id: str) -> _Endpoint:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None:
            raise _Invalid(404, f"endpoint {endpoint_id} not found")
        return endpoint

    def _v2_check(self, data: Any, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise _Invalid(422, "Request validation failed.", ["$: expected an object"])
        extra = sorted(set(data) - allowed)
        if extra:
            names = ", ".join(f"'{name}'" for name in extra)
            raise _Invalid(
                422, "Request validation failed.", [f"$: additional properties {names} not allowed"]
            )
        return data

    def _v2_compute(self, data: dict[str, Any], errors: list[str]) -> tuple[str, dict[str, Any]]:
        gpu, cpu = data.get("gpu"), data.get("cpu")
        if (gpu is None) == (cpu is None):
            raise _Invalid(400, "exactly one of 'gpu' or 'cpu' is required")
        if gpu is not None:
            pools = gpu.get("pools") if isinstance(gpu, dict) else None
            if not isinstance(pools, list) or not pools:
                errors.append("$.gpu.pools: expected a non-empty array")
            else:
                errors += [f"$.gpu.pools: unknown pool {p!r}" for p in pools if p not in GPU_POOLS]
                excluded = gpu.get("excludedTypes", [])
                errors += [f"$.gpu.excludedTypes: unknown {t!r}" for t in excluded if t not in GPU_TYPES]
            if not isinstance(gpu.get("count", 1), int) or gpu.get("count", 1) < 1:
                errors.append("$.gpu.count: expected an integer >= 1")
            if gpu.get("allowedCudaVersions") and gpu.get("minCudaVersion"):
                raise _Invalid(400, "allowedCudaVersions and minCudaVersion cannot both be set")
            return "gpu", {"gpu": gpu}
        if not isinstance(cpu, list) or not cpu:
            errors.append("$.cpu: expected a non-empty array")
            return "cpu", {}
        for index, item in enumerate(cpu):
            count = item.get("vcpuCount") if isinstance(item, dict) else None
            if not isinstance(count, int) or count < 2 or count & (count - 1):
                errors.append(f"$.cpu[{index}].vcpuCount: must be a power of two >= 2")
        return "cpu", {"cpu": cpu}

    def _v2_common(self, data: dict[str, Any], errors: list[str], endpoint_type: str) -> dict[str, Any]:
        config: dict[str, Any] = {}
        workers = data.get("workers", {})
        for key, default in (("min", 0), ("max", 3), ("idleTimeout", 10)):
            value = workers.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errors.append(f"$.workers.{key}: expected an integer >= 0")
            config[{"min": "workersMin", "max": "workersMax"}.get(key, key)] = value
        if isinstance(config["idleTimeout"], int) and not 1 <= config["idleTimeout"] <= 3600:
            errors.append("$.workers.idleTimeout: must be between 1 and 3600")
        scaling = data.get("scaling")
        if scaling is not None:
            if scaling.get("type") == "REQUEST_COUNT":
                value = scaling.get("requestCount")
                if not isinstance(value, int) or value < 1:
                    errors.append("$.scaling.requestCount: expected an integer >= 1")
            elif scaling.get("type") == "QUEUE_DELAY":
                if endpoint_type == "LB":
                    errors.append("$.scaling.type: LOAD_BALANCER endpoints require REQUEST_COUNT")
            else:
                errors.append("$.scaling.type: must be QUEUE_DELAY or REQUEST_COUNT")
            config["scalerType"] = scaling.get("type")
            config["scalerValue"] = scaling.get("requestCount") or scaling.get("queueDelay")
        if "timeout" in data and (not isinstance(data["timeout"], int) or data["timeout"] < 0):
            errors.append("$.timeout: expected an integer >= 0")
        if data.get("flashboot", "OFF") not in ("OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"):
            errors.append("$.flashboot: must be OFF, FLASHBOOT or PRIORITY_FLASHBOOT")
        if "env" in data and not (
            isinstance(data["env"], dict) and all(isinstance(v, str) for v in data["env"].values())
        ):
            errors.append("$.env: expected an object of strings")
        if "ports" in data and not isinstance(data["ports"], list):
            errors.append("$.ports: expected an array of strings like '8000/http'")
        config.update(
            timeout=data.get("timeout", 0),
            flashboot=data.get("flashboot", "OFF"),
            dataCenterIds=data.get("dataCenterIds", []),
            networkVolumes=data.get("networkVolumes", []),
        )
        return config

    def _v2_create(self, data: Any) -> _Endpoint:
        data = self._v2_check(data, _V2_CREATE_FIELDS)
        errors = [f"$: missing property '{name}'" for name in ("name", "type", "scaling") if name not in data]
        if errors:
            raise _Invalid(422, "Request validation failed.", errors)
        if data["type"] not in ("QUEUE", "LOAD_BALANCER"):
            raise _Invalid(422, "Request validation failed.", ["$.type: must be QUEUE or LOAD_BALANCER"])
        if not isinstance(data["name"], str) or not data["name"]:
            raise _Invalid(422, "Request validation failed.", ["$.name: expected a non-empty string"])
        endpoint_type = "LB" if data["type"] == "LOAD_BALANCER" else "QB"
        template = None
        if "templateId" in data:
            template = self.templates.get(data["templateId"])
            if template is None:
                raise _Invalid(404, f"template {data['templateId']} not found")
            if not template["serverless"]:
                raise _Invalid(422, "Request validation failed.", ["$.templateId: not a serverless template"])
        elif "image" not in data:
            raise _Invalid(422, "Request validation failed.", ["$: missing property 'image'"])
        compute, compute_config = self._v2_compute(data, errors)
        config = {**self._v2_common(data, errors, endpoint_type), **compute_config}
        if errors:
            raise _Invalid(422, "Request validation failed.", errors)
        self._check_quota(config["workersMax"], None)
        endpoint = _Endpoint(
            id=_new_id(14),
            name=data["name"],
            type=endpoint_type,
            compute=compute,
            config=config,
            image=data.get("image") or (template or {}).get("image", ""),
            env={**(template or {}).get("env", {}), **data.get("env", {})},
        )
        if template is None:  # an inline image gets a template bound to the endpoint
            bound = self._store_template(
                f"{endpoint.name}__{endpoint.id}", endpoint.image, endpoint.env, True
            )
            bound["boundEndpointId"] = endpoint.id
            endpoint.bound_template = bound["id"]
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    def _v2_update(self, endpoint: _Endpoint, data: Any) -> _Endpoint:
        if isinstance(data, dict) and "type" in data:
            raise _Invalid(422, "Request validation failed.", ["$: additional properties 'type' not allowed"])
        data = self._v2_check(data, _V2_UPDATE_FIELDS)
        errors: list[str] = []
        merged = self._v2_render_input(endpoint)
        merged.update(data)
        if ("gpu" in data and endpoint.compute == "cpu") or ("cpu" in data and endpoint.compute == "gpu"):
            raise _Invalid(400, "the compute family of an endpoint cannot change")
        merged.pop("gpu" if endpoint.compute == "cpu" else "cpu", None)
        _compute, compute_config = self._v2_compute(merged, errors)
        config = {**self._v2_common(merged, errors, endpoint.type), **compute_config}
        if errors:
            raise _Invalid(422, "Request validation failed.", errors)
        self._check_quota(config["workersMax"], endpoint.id)
        new_image = merged.get("image", endpoint.image)
        new_env = merged.get("env", endpoint.env)
        if (new_image, new_env) != (endpoint.image, endpoint.env):
            endpoint.version += 1
        endpoint.image, endpoint.env, endpoint.config = new_image, dict(new_env), config
        self._tick(endpoint)
        return endpoint

    def _v2_render_input(self, endpoint: _Endpoint) -> dict[str, Any]:
        rendered = self._v2_endpoint(endpoint)
        keep = _V2_UPDATE_FIELDS
        return {k: v for k, v in rendered.items() if k in keep and v is not None}

    def _v2_endpoint(self, endpoint: _Endpoint) -> dict[str, Any]:
        image, env = self._image_env(endpoint)
        config = endpoint.config
        base = f"https://{endpoint.id}.api.runpod.ai"
        rendered: dict[str, Any] = {
            "id": endpoint.id,
            "name": endpoint.name,
            "type": "LOAD_BALANCER" if endpoint.type == "LB" else "QUEUE",
            "requestUrls": {"base": base, "health": f"{base}/ping"},
            "image": image,
            "args": "",
            "disk": 20,
            "ports": ["80/http"],
            "env": env,
            "registry": None,
            "workers": {
                "min": config["workersMin"],
                "max": config["workersMax"],
                "idleTimeout": config["idleTimeout"],
            },
            "scaling": {
                "type": config.get("scalerType", "REQUEST_COUNT"),
                "requestCount": config["scalerValue"],
            },
            "dataCenterIds": config.get("dataCenterIds", []),
            "networkVolumes": config.get("networkVolumes", []),
            "timeout": config.get("timeout", 0),
            "flashboot": config.get("flashboot", "OFF"),
            "createdAt": "2026-11-26T12:00:00Z",
        }
        if endpoint.compute == "cpu":
            rendered["cpu"] = config.get("cpu") or [
                {"id": i.split("-")[0], "vcpuCount": int(i.split("-")[1])}
                for i in config.get("instanceIds", [])
            ]
        else:
            rendered["gpu"] = config.get("gpu") or _gpu_from_ids(config.get("gpuIds", ""), config)
        return rendered

    def _v2_workers(self, endpoint: _Endpoint) -> dict[str, Any]:
        self._tick(endpoint)
        counts = self._counts(endpoint)
        summary = {k: counts[k] for k in ("running", "idle", "initializing", "throttled", "unhealthy")}
        summary["total"] = len(endpoint.workers)
        workers = [
            {
                "id": w.id,
                "status": w.state,
                "isStale": w.version < endpoint.version,
                "version": w.version,
                "gpuCount": 1,
                "image": self._image_env(endpoint)[0],
                "uptimeSeconds": 1,
            }
            for w in endpoint.workers
        ]
        return {"endpointVersion": endpoint.version, "summary": summary, "workers": workers}

    def _v2_create_template(self, data: Any) -> dict[str, Any]:
        data = self._v2_check(data, _V2_TEMPLATE_FIELDS)
        errors = [f"$: missing property '{name}'" for name in ("name", "image") if name not in data]
        if "env" in data and not isinstance(data["env"], dict):
            errors.append("$.env: expected an object of strings")
        if "ports" in data and not isinstance(data["ports"], list):
            errors.append("$.ports: expected an array of strings")
        if errors:
            raise _Invalid(422, "Request validation failed.", errors)
        self._check_unique(data["name"])
        return self._store_template(
            data["name"], data["image"], data.get("env", {}), data.get("serverless", False)
        )

    @staticmethod
    def _v2_template(template: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": template["id"],
            "name": template["name"],
            "image": template["image"],
            "env": template["env"],
            "serverless": template["serverless"],
            "ports": ["80/http"],
        }

    # --- shared rules --------------------------------------------------------------------------

    def _store_template(self, name: str, image: str, env: dict[str, str], serverless: bool) -> dict[str, Any]:
        template = {
            "id": _new_id(10),
            "name": name,
            "image": image,
            "env": dict(env),
            "serverless": serverless,
        }
        self.templates[template["id"]] = template
        return template

    def _check_unique(self, name: str) -> None:
        if any(t["name"] == name for t in self.templates.values()):
            raise _Invalid(400, f"a template named {name!r} already exists; template names must be unique")

    def _check_quota(self, workers_max: int, replacing: str | None) -> None:
        others = sum(e.config["workersMax"] for e in self.endpoints.values() if e.id != replacing)
        if others + workers_max > self.workers_quota:
            raise _Invalid(
                400,
                f"Max workers across all endpoints must not exceed your workers quota ({self.workers_quota})",
            )

    def _check_template_free(self, template: dict[str, Any]) -> None:
        users = [e.id for e in self.endpoints.values() if e.linked and e.template_id == template["id"]]
        bound = template.get("boundEndpointId")
        if users or bound in self.endpoints:
            raise _Invalid(400, f"template {template['name']} is in use by endpoint {(users or [bound])[0]}")
        if time.monotonic() < self.released_at.get(template["id"], 0.0):
            raise _Invalid(400, f"template {template['name']} is in use (released moments ago); try again")

    def _remove_endpoint(self, endpoint: _Endpoint) -> None:
        del self.endpoints[endpoint.id]
        if endpoint.template_id:
            self.released_at[endpoint.template_id] = time.monotonic() + self.template_release_s
        if endpoint.bound_template:
            self.templates.pop(endpoint.bound_template, None)

    def _image_env(self, endpoint: _Endpoint) -> tuple[str, dict[str, str]]:
        if endpoint.linked and endpoint.template_id in self.templates:
            template = self.templates[endpoint.template_id]
            return template["image"], dict(template["env"])
        return endpoint.image, dict(endpoint.env)

    # --- workers ---------------------------------------------------------------------------------

    def _tick(self, endpoint: _Endpoint) -> None:
        """Advance the endpoint's workers to now (cold starts, scaling, rolling replacement)."""
        now = time.monotonic()
        image = self._image_env(endpoint)[0]
        config = endpoint.config
        for worker in endpoint.workers:
            if worker.state == "INITIALIZING" and now >= worker.ready_at:
                worker.state = "UNHEALTHY" if image in self.broken_images else "IDLE"
        current = [w for w in endpoint.workers if w.version == endpoint.version]
        if any(w.state == "IDLE" for w in current) or config["workersMax"] == 0:
            endpoint.workers = current
        busy = now - endpoint.last_request < config["idleTimeout"] if endpoint.last_request else False
        desired = min(config["workersMax"], max(config["workersMin"], 1 if busy else 0))
        current = [w for w in endpoint.workers if w.version == endpoint.version]
        while len(current) < desired:
            worker = _Worker(_new_id(14), endpoint.version, "INITIALIZING", now + self.cold_start_s)
            endpoint.workers.append(worker)
            current.append(worker)
        extra = len(current) - desired
        if extra > 0:
            doomed = {w.id for w in current[-extra:]}
            endpoint.workers = [w for w in endpoint.workers if w.id not in doomed]

    def _counts(self, endpoint: _Endpoint) -> dict[str, int]:
        counts = {"idle": 0, "initializing": 0, "ready": 0, "running": 0, "throttled": 0, "unhealthy": 0}
        for worker in endpoint.workers:
            counts[worker.state.lower()] += 1
            if worker.state in ("IDLE", "RUNNING"):
                counts["ready"] += 1
        return counts

    async def _load_balancer(self, method: str, path: str, headers: dict[str, str]) -> Reply:
        _, _, endpoint_id, *rest = path.split("/")
        route = "/" + "/".join(rest)
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {}, {"error": "Unauthorized"}
        deadline = time.monotonic() + self.no_worker_timeout_s
        while True:
            with self._lock:
                endpoint = self.endpoints.get(endpoint_id)
                if endpoint is None:
                    return 404, {}, {"error": "endpoint not found"}
                if endpoint.type != "LB":
                    return 400, {}, {"error": "not allowed for QB API"}
                endpoint.last_request = time.monotonic()
                self._tick(endpoint)
                ready = [w for w in endpoint.workers if w.state == "IDLE" and w.version == endpoint.version]
                if ready:
                    image, env = self._image_env(endpoint)
                    worker_header = {"X-Runpod-Worker-Id": ready[0].id}
                    if route == "/ping":
                        return 200, worker_header, {"status": "healthy"}
                    body = {
                        "method": method,
                        "path": route,
                        "image": image,
                        "release": env.get("PODROUTE_RELEASE"),
                    }
                    return 200, worker_header, body
            if time.monotonic() >= deadline:
                return 400, {}, {"error": "no workers available"}
            await asyncio.sleep(0.02)

    # --- GraphQL ---------------------------------------------------------------------------------

    def _graphql(self, body: bytes) -> Reply:
        try:
            request = json.loads(body)
            query, variables = request["query"], request.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return 400, {}, {"errors": [{"message": "body must be {query, variables}"}]}
        operation = _graphql_operation(query)
        handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "saveTemplate": lambda v: self._gql_save_template(v.get("input")),
            "saveEndpoint": lambda v: self._gql_save_endpoint(v.get("input")),
            "deleteEndpoint": lambda v: self._gql_delete_endpoint(v.get("id")),
            "deleteTemplate": lambda v: self._gql_delete_template(v.get("name")),
            "podTemplates": lambda v: {
                "podTemplates": [self._gql_template(t) for t in self.templates.values()]
            },
            "endpoints": lambda v: {"endpoints": [self._gql_endpoint(e) for e in self.endpoints.values()]},
            "endpoint": lambda v: {"endpoint": self._gql_get_endpoint(v.get("id"))},
            "secrets": lambda v: {"secrets": [dict(s) for s in self.secrets.values()]},
            "secretCreate": lambda v: self._gql_create_secret(v.get("input")),
            "secretDelete": lambda v: self._gql_delete_secret(v.get("id")),
        }
        handler = handlers.get(operation)
        if handler is None:
            return 200, {}, {"errors": [{"message": f"unsupported operation {operation!r}"}], "data": None}
        with self._lock:
            try:
                result = handler(variables)
            except _Invalid as error:
                return 200, {}, {"errors": [{"message": error.detail}], "data": None}
        key = "myself" if operation in ("podTemplates", "endpoints", "endpoint", "secrets") else operation
        return 200, {}, {"data": {key: result}}

    @staticmethod
    def _typecheck(data: Any, types: dict[str, type | tuple[type, ...]], what: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise _Invalid(200, f"Variable '$input' of required type '{what}!' was not provided.")
        for key, value in data.items():
            expected = types.get(key)
            if expected is None:
                raise _Invalid(200, f"Field '{key}' is not defined by type '{what}'.")
            if value is not None and (
                not isinstance(value, expected) or (expected is int and isinstance(value, bool))
            ):
                raise _Invalid(200, f"Field '{key}' of type '{what}' has the wrong type: {value!r}")
        return data

    def _gql_save_template(self, data: Any) -> dict[str, Any]:
        data = self._typecheck(data, _GRAPHQL_TEMPLATE_TYPES, "SaveTemplateInput")
        for name in ("name", "imageName", "env"):
            if data.get(name) is None:
                raise _Invalid(200, f"Field 'SaveTemplateInput.{name}' of required type was not provided.")
        env = {}
        for item in data["env"]:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("key"), str)
                and isinstance(item.get("value"), str)
            ):
                raise _Invalid(200, "Field 'env' expects [EnvironmentVariableInput {key, value}] of strings")
            env[item["key"]] = item["value"]
        if data.get("isServerless") and data.get("volumeInGb", 0) != 0:
            raise _Invalid(200, "volumeInGb must be 0 for serverless templates")
        if "id" in data:
            template = self.templates.get(data["id"])
            if template is None:
                raise _Invalid(200, f"Template {data['id']} not found")
            if template["name"] != data["name"]:
                self._check_unique(data["name"])
            template.update(name=data["name"], image=data["imageName"], env=env)
            for endpoint in self.endpoints.values():
                if endpoint.linked and endpoint.template_id == template["id"]:
                    endpoint.version += 1
        else:
            self._check_unique(data["name"])
            template = self._store_template(
                data["name"], data["imageName"], env, bool(data.get("isServerless"))
            )
        return self._gql_template(template)

    @staticmethod
    def _gql_template(template: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": template["id"],
            "name": template["name"],
            "imageName": template["image"],
            "isServerless": template["serverless"],
            "env": [{"key": k, "value": v} for k, v in template["env"].items()],
            "boundEndpointId": template.get("boundEndpointId"),
        }

    def _gql_save_endpoint(self, data: Any) -> dict[str, Any]:
        data = self._typecheck(data, _GRAPHQL_ENDPOINT_TYPES, "EndpointInput")
        if "templateId" in data and "template" in data:
            raise _Invalid(200, "templateId and template cannot both be given")
        for name in ("name", "gpuIds"):
            if data.get(name) is None:
                raise _Invalid(
                    200, f"Field 'EndpointInput.{name}' of required type 'String!' was not provided."
                )
        endpoint_type = data.get("type", "QB")
        if endpoint_type not in ("QB", "LB"):
            raise _Invalid(200, f"type must be QB or LB, got {endpoint_type!r}")
        config = {
            **GRAPHQL_ENDPOINT_DEFAULTS,
            **{k: v for k, v in data.items() if k in GRAPHQL_ENDPOINT_DEFAULTS},
        }
        if endpoint_type == "LB" and config["scalerType"] != "REQUEST_COUNT":
            raise _Invalid(200, "load balancer endpoints must use scalerType REQUEST_COUNT")
        if config["scalerType"] not in ("QUEUE_DELAY", "REQUEST_COUNT"):
            raise _Invalid(
                200, f"scalerType must be QUEUE_DELAY or REQUEST_COUNT, got {config['scalerType']!r}"
            )
        if config["scalerValue"] < 1:
            raise _Invalid(200, "scalerValue must be at least 1")
        if not 1 <= config["idleTimeout"] <= 3600:
            raise _Invalid(200, "idleTimeout must be between 1 and 3600")
        if config["workersMin"] < 0 or config["workersMax"] < 0:
            raise _Invalid(200, "workersMin and workersMax must be 0 or more")
        if config["flashBootType"] not in ("OFF", "FLASHBOOT", "PRIORITY_FLASHBOOT"):
            raise _Invalid(200, f"flashBootType must be OFF or FLASHBOOT, got {config['flashBootType']!r}")
        compute = "cpu" if config["instanceIds"] else "gpu"
        if compute == "gpu":
            for item in (p.strip() for p in config["gpuIds"].split(",") if p.strip()):
                known = item[1:] in GPU_TYPES if item.startswith("-") else item in GPU_POOLS
                if not known:
                    raise _Invalid(200, f"gpuIds: unknown GPU pool or type {item!r}")
            if not config["gpuIds"]:
                raise _Invalid(200, "gpuIds: a GPU endpoint needs at least one pool")
        template_id = data.get("templateId")
        if template_id is None or template_id not in self.templates:
            raise _Invalid(200, f"templateId {template_id!r} does not exist")
        if not self.templates[template_id]["serverless"]:
            raise _Invalid(200, "the template is not a serverless template (isServerless: true)")
        self._check_quota(config["workersMax"], data.get("id"))
        if "id" in data:
            endpoint = self.endpoints.get(data["id"])
            if endpoint is None:
                raise _Invalid(200, f"Endpoint {data['id']} not found")
            if endpoint_type != endpoint.type:
                raise _Invalid(200, "the endpoint type cannot change after creation")
            if endpoint.template_id != template_id:
                endpoint.version += 1
            endpoint.name, endpoint.config, endpoint.template_id, endpoint.compute = (
                data["name"],
                config,
                template_id,
                compute,
            )
            self._tick(endpoint)
        else:
            endpoint = _Endpoint(
                id=_new_id(14),
                name=data["name"],
                type=endpoint_type,
                compute=compute,
                config=config,
                template_id=template_id,
                linked=True,
            )
            self.endpoints[endpoint.id] = endpoint
        return self._gql_endpoint(endpoint)

    def _gql_endpoint(self, endpoint: _Endpoint) -> dict[str, Any]:
        config = endpoint.config
        template = self.templates.get(endpoint.template_id or "")
        gpu_ids = config.get("gpuIds")
        if gpu_ids is None:  # made through REST v2
            gpu = config.get("gpu") or {}
            gpu_ids = ",".join([*gpu.get("pools", []), *(f"-{t}" for t in gpu.get("excludedTypes", []))])
        return {
            "id": endpoint.id,
            "name": endpoint.name,
            "type": endpoint.type,
            "templateId": endpoint.template_id,
            "gpuIds": gpu_ids,
            "gpuCount": config.get("gpuCount", 1),
            "instanceIds": config.get("instanceIds", []),
            "workersMin": config["workersMin"],
            "workersMax": config["workersMax"],
            "idleTimeout": config["idleTimeout"],
            "scalerType": config.get("scalerType"),
            "scalerValue": config["scalerValue"],
            "executionTimeoutMs": config.get("executionTimeoutMs", 0),
            "locations": config.get("locations", ""),
            "networkVolumeId": config.get("networkVolumeId", ""),
            "minCudaVersion": config.get("minCudaVersion", ""),
            "flashBootType": config.get("flashBootType", "OFF"),
            "version": endpoint.version,
            "template": self._gql_template(template) if template and endpoint.linked else None,
        }

    def _gql_get_endpoint(self, endpoint_id: Any) -> dict[str, Any] | None:
        endpoint = self.endpoints.get(str(endpoint_id))
        return self._gql_endpoint(endpoint) if endpoint else None

    def _gql_delete_endpoint(self, endpoint_id: Any) -> None:
        endpoint = self.endpoints.get(str(endpoint_id))
        if endpoint is None:
            raise _Invalid(200, f"Endpoint {endpoint_id} not found")
        if endpoint.config["workersMin"] or endpoint.config["workersMax"]:
            raise _Invalid(200, "workersMin and workersMax must both be 0 before deleting an endpoint")
        self._remove_endpoint(endpoint)

    def _gql_create_secret(self, data: Any) -> dict[str, Any]:
        data = self._typecheck(data, {"name": str, "value": str, "description": str}, "SecretCreateInput")
        for name in ("name", "value"):
            if not data.get(name):
                raise _Invalid(
                    200, f"Field 'SecretCreateInput.{name}' of required type 'String!' was not provided."
                )
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", data["name"]):
            raise _Invalid(200, "secret names may contain only letters, digits, '_', '.' and '-'")
        if any(s["name"] == data["name"] for s in self.secrets.values()):
            raise _Invalid(200, f"a secret named {data['name']!r} already exists")
        secret = {
            "id": _new_id(12),
            "name": data["name"],
            "description": data.get("description") or "",
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.secrets[secret["id"]] = secret
        self.secret_values[secret["id"]] = data["value"]
        return {"id": secret["id"], "name": secret["name"]}

    def _gql_delete_secret(self, secret_id: Any) -> None:
        if str(secret_id) not in self.secrets:
            raise _Invalid(200, f"Secret {secret_id} not found")
        del self.secrets[str(secret_id)], self.secret_values[str(secret_id)]

    def _gql_delete_template(self, name: Any) -> None:
        template = next((t for t in self.templates.values() if t["name"] == name), None)
        if template is None:
            raise _Invalid(200, f"Template {name!r} not found")
        self._check_template_free(template)
        del self.templates[template["id"]]


def _graphql_operation(query: str) -> str:
    """The root field of a GraphQL document (`myself` answers with the field it selects)."""
    match = re.search(r"\{\s*(\w+)", query)
    if not match:
        return ""
    root = match.group(1)
    if root != "myself":
        return root
    inner = re.search(r"myself\s*\{\s*(\w+)", query)
    return inner.group(1) if inner else root


def _gpu_from_ids(gpu_ids: str, config: dict[str, Any]) -> dict[str, Any]:
    items = [p.strip() for p in gpu_ids.split(",") if p.strip()]
    return {
        "pools": [p for p in items if not p.startswith("-")],
        "excludedTypes": [p[1:] for p in items if p.startswith("-")],
        "count": config.get("gpuCount", 1),
    }


def _problem(status: int, detail: str, errors: list[str] | None = None) -> dict[str, Any]:
    titles = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity",
              429: "Too Many Requests", 500: "Internal Server Error"}  # fmt: skip
    problem: dict[str, Any] = {"title": titles.get(status, "Error"), "status": status, "detail": detail}
    if errors:
        problem["errors"] = errors
    return problem


@contextlib.contextmanager
def fake_runpod_server(fake: FakeRunPod | None = None) -> Iterator[tuple[FakeRunPod, str]]:
    """Serve a FakeRunPod on real Hypercorn on loopback; yields (fake, base URL)."""
    fake = fake or FakeRunPod()
    with hypercorn_server(fake) as base:  # type: ignore[arg-type]
        yield fake, base
