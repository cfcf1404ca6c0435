"""The local runtime's endpoints: builds, releases and worker pools, behind a RunPod-like gateway.

`LocalRuntime` holds the endpoints and their builds, starts a worker pool per endpoint and serves
the control API's operations (`podroute.runtime.app` maps the HTTP routes onto it; a refusal is a
`ControlError` with its status). Every finished gateway request reaches
`LocalRuntime.observe_request` (a gateway observer), which files it in the metrics store by route
template, release and worker; the control API reads it back (`podroute.runtime.observability`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from podroute.build import BuildError, extract_artifact
from podroute.resources import DEFAULT_VOLUME_MOUNT_PATH, ResourceConfigError, resource_from_config
from podroute.runtime.environments import Environments
from podroute.runtime.gateway import RequestRecord
from podroute.runtime.metrics import MetricsStore, RequestFacts
from podroute.runtime.pool import EndpointPool
from podroute.runtime.routes import RouteTable
from podroute.runtime.secret_store import EncryptedSecretStore
from podroute.runtime.settings import RuntimeSettings
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
from podroute.runtime.volumes import VolumeConfigError, volume_mount_for
from podroute.runtime.workers import WorkerSpec
from podroute.secrets import check_secrets, missing_secrets_message

logger = logging.getLogger("podroute.runtime")


class ControlError(Exception):
    """A control API request cannot be carried out (status + message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
        self.metrics = MetricsStore(self.data_dir / "metrics.sqlite3", settings.metrics)
        self._route_tables: dict[str, RouteTable] = {}
        self._flusher: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bring every stored endpoint back to its configured minimum."""
        for record in self.state.endpoints.values():
            self._start_pool(record)
        self._flusher = asyncio.create_task(self.metrics.run_flusher())
        logger.info("runtime started with %d endpoint(s) in %s", len(self.pools), self.data_dir)

    async def stop(self) -> None:
        """Stop every worker (endpoints stay configured for the next start)."""
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))
        self.pools.clear()
        if self._flusher is not None:
            self._flusher.cancel()
        await asyncio.to_thread(self.metrics.close)

    def _start_pool(self, record: EndpointRecord) -> EndpointPool:
        pool = EndpointPool(record, self._worker_spec, metrics=self.metrics)
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
        resource = {**manifest["resource"], **release.config}
        volume = volume_mount_for(
            self.settings.volumes,
            str(resource.get("networkVolumeId") or ""),
            str(resource.get("volumeMountPath") or DEFAULT_VOLUME_MOUNT_PATH),
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

    def _check_release(self, resource: dict[str, Any], env: dict[str, str]) -> None:
        """Refuse a release (resource fields, env) whose secrets or network volume this runtime lacks."""
        missing = check_secrets({"env": env}, self.secrets)
        if missing:
            raise ControlError(422, missing_secrets_message(missing, "the local runtime"))
        try:
            volume_mount_for(self.settings.volumes, str(resource.get("networkVolumeId") or ""), "")
        except VolumeConfigError as error:
            raise ControlError(422, str(error)) from None

    # -- endpoints ------------------------------------------------------------------------------

    def record(self, endpoint_id: str) -> EndpointRecord:
        """The endpoint `endpoint_id`; ControlError 404 when there is none."""
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

    def _release_of(self, payload: dict[str, Any], manifest: dict[str, Any], env: dict[str, str]) -> Release:
        config = _config_of(payload)
        kept = {k: v for k, v in (config or manifest["resource"]).items() if k != "env"}
        kept["env_keys"] = sorted(env)
        return Release(
            build=str(payload["build"]), env=env, config=kept, deployed_by=str(payload.get("deployed_by", ""))
        )

    def create_endpoint(self, payload: dict[str, Any]) -> tuple[EndpointRecord, str]:
        """Create an endpoint serving a stored build; returns it with its API key.

        `config` (resource fields in Flash's names, `env` included) is the desired config of the
        first release; without it the build's resource declaration is used, with `env` on top.
        """
        manifest = self._check_build(str(payload.get("build", "")))
        name = str(payload.get("name") or manifest["resource"]["name"])
        config = _config_of(payload)
        env = _env_of(config) if config else {**manifest["resource"].get("env", {}), **_env_of(payload)}
        self._check_release({**manifest["resource"], **config}, env)
        key = new_api_key()
        record = EndpointRecord(
            id=new_endpoint_id(),
            name=name,
            key_sha256=hash_key(key),
            scaling=self._scaling(manifest, config or payload),
            releases=[],
            labels=_labels_of(payload),
        )
        record.add_release(self._release_of(payload, manifest, env))
        self.state.endpoints[record.id] = record
        self.state.keys[record.id] = key
        self.state.save()
        self._start_pool(record)
        logger.info("endpoint %s (%s) created with build %s", record.id, name, record.release.build[:12])
        return record, key

    def update_endpoint(self, endpoint_id: str, payload: dict[str, Any]) -> EndpointRecord:
        """Change build, env, config or scaling; a new build or env rolls workers over.

        With `config`, the build is released with that desired config (a new release unless the
        serving or newest release already is exactly that). Top-level scaling fields apply at once;
        `"record": true` also stores them as the endpoint's desired overrides.
        """
        record = self.record(endpoint_id)
        build = str(payload.get("build") or record.release.build)
        manifest = self._check_build(build)
        config = _config_of(payload)
        if config:
            env = _env_of(config)
            self._check_release({**manifest["resource"], **config}, env)
            release = self._release_of({**payload, "build": build}, manifest, env)
            self._serve(record, release)
            record.scaling = self._scaling(manifest, config)
        elif "build" in payload or "env" in payload:
            env = _env_of(payload) if "env" in payload else record.release.env
            self._check_release({**manifest["resource"], **record.release.config}, env)
            release = Release(build=build, env=env, config=dict(record.release.config))
            release.config["env_keys"] = sorted(env)
            self._serve(record, release)
        scaling = {k: v for k, v in payload.items() if k in SCALING_FIELDS}
        record.scaling = self._scaling(manifest, {**record.scaling, **scaling})
        if scaling and payload.get("record"):
            record.overrides.update(scaling)
        self.state.save()
        self.pools[record.id].wake()
        return record

    @staticmethod
    def _serve(record: EndpointRecord, release: Release) -> None:
        """Serve `release`; the serving or newest release when identical (a retried rollout)."""
        newest = record.releases[-1] if record.releases else None
        for candidate in (record.release, newest):
            if candidate is not None and _same_release(candidate, release):
                record.current = candidate.number
                return
        record.add_release(release)
        logger.info("endpoint %s rolling out release %s (#%d)", record.id, release.key, release.number)

    def rollback(self, endpoint_id: str, number: int | None = None) -> EndpointRecord:
        """Serve an earlier release again (default: the one before the serving one), with its config.

        The recorded overrides are cleared: that release's config is the desired state again.
        """
        record = self.record(endpoint_id)
        if number is None:
            earlier = [r.number for r in record.releases if r.number < record.release.number]
            if not earlier:
                raise ControlError(409, "there is no earlier release to roll back to")
            number = max(earlier)
        target = record.find_release(number)
        if target is None:
            known = ", ".join(str(r.number) for r in record.releases)
            raise ControlError(404, f"endpoint {endpoint_id} has no release {number} (it keeps {known})")
        record.current = target.number
        manifest = self._check_build(target.build)
        restored = {k: v for k, v in target.config.items() if k in SCALING_FIELDS}
        record.scaling = self._scaling(manifest, restored or record.scaling)
        record.overrides = {}
        self.state.save()
        self.pools[record.id].wake()
        return record

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Stop every worker of the endpoint and forget it."""
        record = self.record(endpoint_id)
        pool = self.pools.pop(record.id)
        await pool.close()
        del self.state.endpoints[record.id]
        self.state.save()
        logger.info("endpoint %s deleted", record.id)

    def api_key(self, endpoint_id: str) -> str:
        """The endpoint's API key; 409 for an endpoint created before keys were kept."""
        record = self.record(endpoint_id)
        key = self.state.keys.get(record.id)
        if key is None:
            raise ControlError(
                409,
                f"endpoint {endpoint_id} was created before the runtime kept API keys; delete and deploy "
                "it again to get a retrievable key",
            )
        return key

    def describe(self, record: EndpointRecord) -> dict[str, Any]:
        """An endpoint's configuration and live status."""
        manifest = self.state.builds[record.release.build]
        return {
            "id": record.id,
            "name": record.name,
            "url": f"{self.settings.base_url}/{record.id}",
            "labels": record.labels,
            "build": record.release.build,
            "release": record.release.key,
            "release_number": record.release.number,
            "releases": [
                {
                    "number": r.number,
                    "build": r.build,
                    "key": r.key,
                    "created_at": r.created_at,
                    "config": r.config,
                    "deployed_by": r.deployed_by,
                }
                for r in record.releases
            ],
            "overrides": record.overrides,
            "service": manifest["service"],
            "target": manifest["target"],
            "routes": manifest["routes"],
            "env_keys": sorted(record.release.env),
            "scaling": record.scaling,
            **self.pools[record.id].describe(),
        }

    def worker_counts(self, endpoint_id: str) -> dict[str, Any]:
        """RunPod-style `/v2/<id>/health` body."""
        pool = self.pools[self.record(endpoint_id).id]
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

    # -- observability --------------------------------------------------------------------------

    def load(self) -> dict[str, dict[str, Any]]:
        """In flight, waiting and workers by state of every endpoint (for the Prometheus gauges)."""
        result: dict[str, dict[str, Any]] = {}
        for endpoint_id, pool in self.pools.items():
            counts: dict[str, int] = {}
            for worker in pool.workers:
                counts[worker.state] = counts.get(worker.state, 0) + 1
            result[endpoint_id] = {"inflight": pool.inflight, "waiting": pool.waiting, "workers": counts}
        return result

    def routes_of(self, record: EndpointRecord, release_key: str) -> RouteTable:
        """The route table of the build a release runs (cached per release)."""
        table = self._route_tables.get(release_key)
        if table is None:
            build = next((r.build for r in record.releases if r.key == release_key), record.release.build)
            table = self._route_tables[release_key] = RouteTable(self.state.builds[build]["routes"])
        return table

    def observe_request(self, record: RequestRecord) -> None:
        """Gateway observer: file a finished request under its route template, release and worker.

        Requests to endpoints that do not exist are not recorded (their ids are whatever a client
        typed); the rest are, whether a worker served them or not (401, 400 no workers, 524...).
        """
        endpoint = self.state.endpoints.get(record.endpoint_id)
        if endpoint is None:
            return
        release = endpoint.release.key
        pool = self.pools.get(endpoint.id)
        if record.worker_id and pool is not None:
            for worker in pool.workers:
                if worker.id == record.worker_id:
                    release = worker.release_key
                    break
        path = record.path.split("?", 1)[0]
        self.metrics.record_request(
            RequestFacts(
                endpoint=endpoint.id,
                method=record.method,
                path=path,
                route=self.routes_of(endpoint, release).match(record.method, path),
                status=record.status,
                at=time.time() - record.duration_s,
                duration_s=record.duration_s,
                wait_s=record.waited_s,
                cold_start=record.cold_start,
                worker=record.worker_id or "",
                release=release,
                request_id=record.request_id,
                bytes_in=record.bytes_in,
                bytes_out=record.bytes_out,
            )
        )


def _same_release(a: Release, b: Release) -> bool:
    return a.key == b.key and a.config == b.config


def _config_of(payload: dict[str, Any]) -> dict[str, Any]:
    config = payload.get("config") or {}
    if not isinstance(config, dict):
        raise ControlError(422, "config must be an object of resource fields (workersMax, env, ...)")
    return dict(config)


def _labels_of(payload: dict[str, Any]) -> dict[str, str]:
    labels = payload.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ControlError(422, "labels must be an object of string names to string values")
    return dict(labels)


def _env_of(payload: dict[str, Any]) -> dict[str, str]:
    env = payload.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ControlError(422, "env must be an object of string names to string values")
    return dict(env)
