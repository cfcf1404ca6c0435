"""The local runtime: deploys artifacts as worker processes behind a RunPod-like LB gateway.

    gateway   http://HOST:PORT/<endpoint_id>/<path>    Bearer <endpoint api key>
    health    http://HOST:PORT/v2/<endpoint_id>/health  worker counts, like RunPod's
    control   http://HOST:PORT/control/...              Bearer <runtime token>

Gateway answers follow RunPod's edge: 401 without the key, 400 `{"error": "no workers available"}`
when no worker becomes ready within the wait limit, 413 over 30 MB, 524 past the execution limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from quart import Quart, Response, request

from podroute.binding import read_body
from podroute.build import BuildError, extract_artifact
from podroute.resources import ResourceConfigError, resource_from_config
from podroute.runtime.environments import Environments
from podroute.runtime.pool import EndpointPool, NoWorkerError
from podroute.runtime.secret_routes import register_secret_routes
from podroute.runtime.secret_store import EncryptedSecretStore
from podroute.runtime.state import (
    SCALING_FIELDS,
    EndpointRecord,
    Release,
    StateFile,
    hash_key,
    load_or_create_token,
    new_api_key,
    new_endpoint_id,
)
from podroute.runtime.volumes import VolumeConfigError, parse_volumes, volume_mount_for
from podroute.runtime.workers import WorkerSpec
from podroute.secrets import check_secrets, missing_secrets_message
from podroute.settings import SettingsError

logger = logging.getLogger("podroute.runtime")

GATEWAY_LIMIT_BYTES = 30 * 1024 * 1024
WORKER_HEADER = "X-Runpod-Worker-Id"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "authorization",
        "content-length",
    }
)


def _float_env(key: str, default: float) -> float:
    raw = os.environ.get(key, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a number") from None


@dataclass(frozen=True)
class RuntimeSettings:
    """Where the runtime keeps its state and how its gateway behaves."""

    data_dir: Path = Path(".podroute/runtime")
    host: str = "localhost"
    port: int = 8800
    token: str | None = None
    environment_mode: str = "isolated"
    wait_limit_s: float = 120.0
    execution_limit_s: float = 330.0
    startup_timeout_s: float = 600.0
    public_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, Path] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The gateway's URL as clients reach it."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @classmethod
    def from_env(cls) -> RuntimeSettings:
        """Read `PODROUTE_RUNTIME_` + DIR, HOST, PORT, TOKEN, ENV_MODE, WAIT_S, EXECUTION_LIMIT_S, VOLUMES."""
        env = os.environ
        return cls(
            data_dir=Path(env.get("PODROUTE_RUNTIME_DIR", ".podroute/runtime")),
            host=env.get("PODROUTE_RUNTIME_HOST", "localhost"),
            port=int(env.get("PODROUTE_RUNTIME_PORT", "8800")),
            token=env.get("PODROUTE_RUNTIME_TOKEN") or None,
            environment_mode=env.get("PODROUTE_RUNTIME_ENV_MODE", "isolated"),
            wait_limit_s=_float_env("PODROUTE_RUNTIME_WAIT_S", 120.0),
            execution_limit_s=_float_env("PODROUTE_RUNTIME_EXECUTION_LIMIT_S", 330.0),
            volumes=parse_volumes(env.get("PODROUTE_RUNTIME_VOLUMES", "")),
        )


class ControlError(Exception):
    """A control API request cannot be carried out (status + message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")


class LocalRuntime:
    """Endpoints, builds and worker pools of one runtime process."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.token = settings.token or load_or_create_token(self.data_dir)
        self.state = StateFile(self.data_dir)
        self.secrets = EncryptedSecretStore(self.data_dir)
        self.environments = Environments(self.data_dir / "envs", settings.environment_mode)
        self.pools: dict[str, EndpointPool] = {}
        self.http: httpx.AsyncClient | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring every stored endpoint back to its configured minimum."""
        # no client timeout: the gateway applies the execution limit itself (524)
        self.http = httpx.AsyncClient(timeout=None, limits=httpx.Limits(max_connections=1000))  # noqa: S113
        for record in self.state.endpoints.values():
            self._start_pool(record)
        logger.info("runtime started with %d endpoint(s) in %s", len(self.pools), self.data_dir)

    async def stop(self) -> None:
        """Stop every worker (endpoints stay configured for the next start)."""
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))
        self.pools.clear()
        if self.http is not None:
            await self.http.aclose()

    def _start_pool(self, record: EndpointRecord) -> EndpointPool:
        pool = EndpointPool(record, self._worker_spec)
        self.pools[record.id] = pool
        pool.start()
        return pool

    # -- builds ---------------------------------------------------------------------------------

    def build_dir(self, sha: str) -> Path:
        """Where a stored build lives."""
        return self.data_dir / "builds" / sha

    def store_build(self, sha: str, data: bytes) -> dict[str, Any]:
        """Keep an uploaded artifact after checking its hash; returns its manifest."""
        if hashlib.sha256(data).hexdigest() != sha:
            raise ControlError(400, "the artifact's sha256 does not match the URL; upload it again")
        if sha in self.state.builds:
            return self.state.builds[sha]
        directory = self.build_dir(sha)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        (directory / "artifact.tar.gz").write_bytes(data)
        try:
            manifest = extract_artifact(directory / "artifact.tar.gz", directory / "root")
        except (BuildError, OSError, ValueError) as error:
            shutil.rmtree(directory, ignore_errors=True)
            raise ControlError(400, f"not a podroute artifact: {error}") from None
        self.state.builds[sha] = manifest
        self.state.save()
        return manifest

    async def _worker_spec(self, record: EndpointRecord) -> WorkerSpec:
        release = record.release
        manifest = self.state.builds[release.build]
        python = await self.environments.python_for(manifest["dependencies"])
        env = {
            **self.settings.extra_env,
            **self.secrets.resolve_env(release.env),  # decrypted only here, for the worker process
            "RUNPOD_ENDPOINT_ID": record.id,
            "PODROUTE_ACCESS_LOG": "0",
        }
        resource = manifest["resource"]
        volume = volume_mount_for(
            self.settings.volumes, resource.get("networkVolumeId", ""), resource.get("volumeMountPath", "")
        )
        return WorkerSpec(
            python=python,
            cwd=self.build_dir(release.build) / "root" / "app",
            target=manifest["target"],
            env=env,
            release_key=release.key,
            startup_timeout_s=self.settings.startup_timeout_s,
            volume=volume,
        )

    def _check_release(self, manifest: dict[str, Any], env: dict[str, str]) -> None:
        """Refuse a release whose secrets or network volume this runtime does not have."""
        missing = check_secrets({"env": env}, self.secrets)
        if missing:
            raise ControlError(422, missing_secrets_message(missing, "the local runtime"))
        resource = manifest["resource"]
        try:
            volume_mount_for(self.settings.volumes, resource.get("networkVolumeId", ""), "")
        except VolumeConfigError as error:
            raise ControlError(422, str(error)) from None

    # -- endpoints ------------------------------------------------------------------------------

    def _record(self, endpoint_id: str) -> EndpointRecord:
        record = self.state.endpoints.get(endpoint_id)
        if record is None:
            raise ControlError(404, f"no endpoint {endpoint_id!r}")
        return record

    def _check_build(self, sha: str) -> dict[str, Any]:
        manifest = self.state.builds.get(sha)
        if manifest is None:
            raise ControlError(
                400, f"unknown build {sha[:12]}; upload it first (PUT /control/builds/<sha256>)"
            )
        return manifest

    @staticmethod
    def _scaling(manifest: dict[str, Any], overrides: dict[str, Any]) -> dict[str, int]:
        config = {**manifest["resource"], **{k: v for k, v in overrides.items() if k in SCALING_FIELDS}}
        try:
            resource = resource_from_config(config)
        except ResourceConfigError as error:
            raise ControlError(422, str(error)) from None
        return {name: int(getattr(resource, name)) for name in SCALING_FIELDS}

    def create_endpoint(self, payload: dict[str, Any]) -> tuple[EndpointRecord, str]:
        """Create an endpoint serving a stored build; returns it with its (one-time) API key."""
        manifest = self._check_build(str(payload.get("build", "")))
        name = str(payload.get("name") or manifest["resource"]["name"])
        env = {**manifest["resource"].get("env", {}), **_env_of(payload)}
        self._check_release(manifest, env)
        key = new_api_key()
        record = EndpointRecord(
            id=new_endpoint_id(),
            name=name,
            key_sha256=hash_key(key),
            scaling=self._scaling(manifest, payload),
            releases=[Release(build=str(payload["build"]), env=env)],
        )
        self.state.endpoints[record.id] = record
        self.state.save()
        self._start_pool(record)
        logger.info("endpoint %s (%s) created with build %s", record.id, name, record.release.build[:12])
        return record, key

    def update_endpoint(self, endpoint_id: str, payload: dict[str, Any]) -> EndpointRecord:
        """Change build, env or scaling; a new build or env rolls workers over."""
        record = self._record(endpoint_id)
        build = str(payload.get("build") or record.release.build)
        manifest = self._check_build(build)
        env = _env_of(payload) if "env" in payload else record.release.env
        if "build" in payload or "env" in payload:
            self._check_release(manifest, env)
        release = Release(build=build, env=env)
        if release.key != record.release.key:
            record.releases.append(release)
            logger.info("endpoint %s rolling out release %s", record.id, release.key)
        record.scaling = self._scaling(manifest, {**record.scaling, **payload})
        self.state.save()
        self.pools[record.id].wake()
        return record

    def rollback(self, endpoint_id: str) -> EndpointRecord:
        """Serve the previous release again."""
        record = self._record(endpoint_id)
        previous = [r for r in record.releases if r.key != record.release.key]
        if not previous:
            raise ControlError(409, "there is no earlier release to roll back to")
        target = previous[-1]
        record.releases.append(Release(build=target.build, env=dict(target.env)))
        self.state.save()
        self.pools[record.id].wake()
        return record

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Stop every worker of the endpoint and forget it."""
        record = self._record(endpoint_id)
        pool = self.pools.pop(record.id)
        await pool.close()
        del self.state.endpoints[record.id]
        self.state.save()
        logger.info("endpoint %s deleted", record.id)

    def describe(self, record: EndpointRecord) -> dict[str, Any]:
        """An endpoint's configuration and live status."""
        manifest = self.state.builds[record.release.build]
        return {
            "id": record.id,
            "name": record.name,
            "url": f"{self.settings.base_url}/{record.id}",
            "build": record.release.build,
            "release": record.release.key,
            "releases": [
                {"build": r.build, "key": r.key, "created_at": r.created_at} for r in record.releases
            ],
            "service": manifest["service"],
            "target": manifest["target"],
            "routes": manifest["routes"],
            "env_keys": sorted(record.release.env),
            "scaling": record.scaling,
            **self.pools[record.id].describe(),
        }

    def worker_counts(self, endpoint_id: str) -> dict[str, Any]:
        """RunPod-style `/v2/<id>/health` body."""
        pool = self.pools[self._record(endpoint_id).id]
        states = [w.state for w in pool.workers]
        busy = sum(1 for w in pool.workers if w.state == "ready" and w.inflight)
        return {
            "jobs": {"inProgress": pool.inflight, "inQueue": pool.waiting},
            "workers": {
                "idle": sum(1 for w in pool.workers if w.state == "ready" and not w.inflight),
                "running": busy,
                "ready": states.count("ready"),
                "initializing": states.count("starting") + states.count("initializing"),
                "throttled": 0,
                "unhealthy": states.count("unhealthy"),
            },
        }

    # -- gateway --------------------------------------------------------------------------------

    async def proxy(self, endpoint_id: str, path: str) -> Response:
        """Forward one request to a worker of the endpoint, as RunPod's load balancer does."""
        record = self.state.endpoints.get(endpoint_id)
        if record is None:
            return _json({"error": f"endpoint {endpoint_id} not found"}, 404)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not record.accepts_key(auth[7:].strip()):
            return _json({"error": "unauthorized: send Authorization: Bearer <endpoint api key>"}, 401)
        length = request.content_length
        if length is not None and length > GATEWAY_LIMIT_BYTES:
            return _json({"error": "request body exceeds 30 MB"}, 413)
        body = await _read_limited(GATEWAY_LIMIT_BYTES)
        if body is None:
            return _json({"error": "request body exceeds 30 MB"}, 413)
        pool = self.pools[record.id]
        try:
            worker = await pool.acquire(self.settings.wait_limit_s, request.headers.get(WORKER_HEADER))
        except NoWorkerError:
            return _json({"error": "no workers available"}, 400)
        return await self._forward(pool, worker, path, body, record)

    async def _forward(
        self, pool: EndpointPool, worker: Any, path: str, body: bytes, record: EndpointRecord
    ) -> Response:
        assert self.http is not None
        limit = record.scaling["executionTimeoutMs"] / 1000 or self.settings.execution_limit_s
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        url = f"{worker.url}/{path}"
        if request.query_string:
            url += "?" + request.query_string.decode("latin-1")
        outgoing = self.http.build_request(request.method, url, headers=headers, content=body)
        released = False

        def finish() -> None:
            nonlocal released
            if not released:
                released = True
                pool.release(worker)

        try:
            upstream = await asyncio.wait_for(self.http.send(outgoing, stream=True), limit)
        except TimeoutError:
            finish()
            return _json({"error": f"request exceeded the {limit:g}s execution limit"}, 524)
        except httpx.HTTPError as error:
            finish()
            worker.state = "unhealthy" if worker.state == "ready" else worker.state
            worker.failure = f"connection failed: {error}"
            return _json({"error": "worker connection failed; retry the request"}, 502)
        except BaseException:  # the client went away (cancelled): the request is no longer in flight
            finish()
            raise
        response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
        response_headers[WORKER_HEADER] = worker.id
        if upstream.headers.get("content-type", "").startswith("text/event-stream"):
            return Response(_stream(upstream, finish), status=upstream.status_code, headers=response_headers)
        try:
            content = await asyncio.wait_for(_read_response(upstream), limit)
        except TimeoutError:
            return _json({"error": f"request exceeded the {limit:g}s execution limit"}, 524)
        except httpx.HTTPError:
            return _json({"error": "worker connection failed; retry the request"}, 502)
        finally:
            await upstream.aclose()
            finish()
        if content is None:
            return _json({"error": "response body exceeds 30 MB"}, 502)
        return Response(content, status=upstream.status_code, headers=response_headers)


def _env_of(payload: dict[str, Any]) -> dict[str, str]:
    env = payload.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ControlError(422, "env must be an object of string names to string values")
    return dict(env)


async def _read_limited(limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.body:
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_response(upstream: httpx.Response) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in upstream.aiter_raw():
        size += len(chunk)
        if size > GATEWAY_LIMIT_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _stream(upstream: httpx.Response, finish: Any) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    finally:
        await upstream.aclose()
        finish()


def create_runtime_app(settings: RuntimeSettings | None = None) -> Quart:
    """The runtime's Quart app: gateway, RunPod-style health and the control API."""
    settings = settings or RuntimeSettings.from_env()
    runtime = LocalRuntime(settings)
    app = Quart("podroute.runtime")
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024 * 1024
    app.extensions["podroute_runtime"] = runtime
    app.before_serving(runtime.start)
    app.after_serving(runtime.stop)
    _register_control(app, runtime)
    register_secret_routes(app, runtime.secrets)
    _register_gateway(app, runtime)
    return app


def _check_token(runtime: LocalRuntime) -> Response | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), runtime.token):
        return None
    return _json({"error": "unauthorized: send Authorization: Bearer <runtime token>"}, 401)


async def _payload() -> dict[str, Any]:
    raw = await request.get_data(as_text=False)
    try:
        payload = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise ControlError(400, "the body must be a JSON object") from None
    if not isinstance(payload, dict):
        raise ControlError(400, "the body must be a JSON object")
    return payload


def _register_control(app: Quart, runtime: LocalRuntime) -> None:
    @app.before_request
    async def authenticate() -> Response | None:
        if request.path.startswith("/control/"):
            return _check_token(runtime)
        return None

    @app.errorhandler(ControlError)
    async def control_error(error: ControlError) -> Response:
        return _json({"error": str(error)}, error.status)

    @app.get("/control/health")
    async def health() -> Response:
        return _json({"status": "ok", "endpoints": len(runtime.state.endpoints)})

    @app.put("/control/builds/<sha>")
    async def upload_build(sha: str) -> Response:
        data = await read_body(request)
        manifest = await asyncio.to_thread(runtime.store_build, sha, data)
        return _json({"build": sha, "manifest": manifest})

    @app.get("/control/endpoints")
    async def list_endpoints() -> Response:
        return _json({"endpoints": [runtime.describe(r) for r in runtime.state.endpoints.values()]})

    @app.post("/control/endpoints")
    async def create_endpoint() -> Response:
        record, key = runtime.create_endpoint(await _payload())
        return _json({**runtime.describe(record), "api_key": key}, 201)

    @app.get("/control/endpoints/<endpoint_id>")
    async def get_endpoint(endpoint_id: str) -> Response:
        return _json(runtime.describe(runtime._record(endpoint_id)))

    @app.patch("/control/endpoints/<endpoint_id>")
    async def update_endpoint(endpoint_id: str) -> Response:
        return _json(runtime.describe(runtime.update_endpoint(endpoint_id, await _payload())))

    @app.post("/control/endpoints/<endpoint_id>/rollback")
    async def rollback(endpoint_id: str) -> Response:
        return _json(runtime.describe(runtime.rollback(endpoint_id)))

    @app.delete("/control/endpoints/<endpoint_id>")
    async def delete_endpoint(endpoint_id: str) -> Response:
        await runtime.delete_endpoint(endpoint_id)
        return _json({"deleted": endpoint_id})


def _register_gateway(app: Quart, runtime: LocalRuntime) -> None:
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]

    @app.get("/v2/<endpoint_id>/health")
    async def runpod_health(endpoint_id: str) -> Response:
        record = runtime.state.endpoints.get(endpoint_id)
        auth = request.headers.get("Authorization", "")
        if record is None or not record.accepts_key(auth.removeprefix("Bearer ").strip()):
            return _json({"error": "unauthorized"}, 401)
        return _json(runtime.worker_counts(endpoint_id))

    async def gateway(endpoint_id: str, path: str = "") -> Response:
        return await runtime.proxy(endpoint_id, path)

    app.add_url_rule("/<endpoint_id>/", "gateway_root", gateway, methods=methods)
    app.add_url_rule("/<endpoint_id>/<path:path>", "gateway", gateway, methods=methods)
