"""The RunPod provider: deploy builds as load-balanced serverless endpoints on RunPod.

**REST v2 is the primary API, GraphQL the fallback** (`PODROUTE_RUNPOD_API=graphql`). REST v1 is
not an option: it cannot create load balancers. REST v2 is RunPod's current API; GraphQL is
deprecated and retires in early 2027, so a deploy tool built on it would stop working within
months. v2 also has a published schema that rejects unknown fields with an RFC 9457 body naming
each bad field (errors users can act on), a documented 429 + `Retry-After` rate limit, and a
worker list that marks workers of an older release (`isStale`), so readiness can wait for a
worker of *the new* release. GraphQL stays behind the same interface (`podroute.runpod_api`)
because it is the route Flash and the console have proven for LB endpoints; if v2 misbehaves for
an account, one variable switches over. Both are tested against the same fake.

How a deployment maps onto RunPod (both APIs):

- **One serverless template per release**, named `<endpoint name>__r<N>`, holding the image and
  the worker env (`PORT`/`PORT_HEALTH` 80, the resource's env, `PODROUTE_RELEASE=N`,
  `PODROUTE_BUILD=<artifact sha256>`). Templates are never edited: the set of them *is* the
  release history, kept on RunPod, so every process (CLI, Celery worker) sees the same one.
  The newest `KEEP_RELEASES` are kept.
- **One LB endpoint** (`type` LB / LOAD_BALANCER, `REQUEST_COUNT` scaling) serving one of them.
  Update = a new release template, then a full-record update of the endpoint pointing at it;
  rollback = a full-record update pointing at the previous release (no rebuild); scale = a
  full-record update with the new scaling (GraphQL's `saveEndpoint` replaces the whole record,
  so every field is always sent, read back from the live endpoint first).
- **Safe to retry.** Creates look up by name first and adopt what a lost answer created; an
  ambiguous create (connection lost after sending, 5xx) is followed by another lookup, never by a
  blind resend. So a retried deployment ends with exactly one endpoint and one template per release.
- **Delete** scales to zero, deletes the endpoint, then each release template (waiting while
  RunPod still counts one as in use), then lists by name to prove nothing is left.

RunPod runs images, so `upload()` cannot upload code: each build needs an image reference, from
`images` (by artifact sha256 or `service/resource`), the build manifest's `image`, or the
resource's `imageName`. Without one, DeployError prints the docker commands that make it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shlex
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from podroute.build import BuildResult
from podroute.catalog import GPU_ANY, GPU_POOLS, pool_of
from podroute.deploy import DeployError, EndpointInfo, EndpointNotFoundError, Progress
from podroute.runpod_api import (
    BUILD_ENV,
    RELEASE_ENV,
    AmbiguousResultError,
    Endpoint,
    EndpointConfig,
    NotFoundError,
    RunPodApi,
    RunPodApiError,
    RunPodSettings,
    RunPodUnavailableError,
    Template,
    TemplateInUseError,
    TemplateSpec,
    api_for,
)
from podroute.runpod_secrets import RunPodSecrets
from podroute.secrets import check_secrets, missing_secrets_message

log = logging.getLogger("podroute.runpod")

KEEP_RELEASES = 5
"""Release templates kept per endpoint (older ones are deleted after a successful rollout)."""

SCALING_FIELDS = ("workersMin", "workersMax", "idleTimeout", "scalerValue")
RUNPOD_VOLUME_PATH = "/runpod-volume"
"""Where RunPod serverless workers see their endpoint's network volume."""
_T = TypeVar("_T")


class SecretStr(str):
    """A string that never shows itself in a repr (an API key inside a dataclass, a log, a traceback)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


def endpoint_config(resource: Mapping[str, Any], compute: str) -> EndpointConfig:
    """The endpoint configuration a build's resource (`manifest["resource"]`) asks for."""
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
    values = current.scaling()
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
    if problems:
        raise DeployError("invalid scaling:\n  " + "\n  ".join(problems))
    return dataclasses.replace(
        current,
        workers_min=values["workersMin"],
        workers_max=values["workersMax"],
        idle_timeout=values["idleTimeout"],
        scaler_value=values["scalerValue"],
    )


class RunPodProvider:
    """The `Provider` interface on RunPod's management API (see the module docstring)."""

    def __init__(
        self,
        settings: RunPodSettings | None = None,
        *,
        images: Mapping[str, str] | None = None,
        api: RunPodApi | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or RunPodSettings.from_env()
        self.images = dict(images or {})
        self.api = api or api_for(self.settings, sleep)
        self.secrets = RunPodSecrets(self.settings, sleep)
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"RunPodProvider(api={self.settings.api!r})"

    @property
    def poll_interval_s(self) -> float:
        """How often deploy polls status: RunPod's API is rate limited."""
        return self.settings.poll_interval_s

    def close(self) -> None:
        """Release the HTTP connections."""
        self.api.close()
        self.secrets.close()

    # --- the Provider interface -------------------------------------------------------------

    def upload(self, build: BuildResult) -> None:
        """Check that the build has an image (RunPod pulls images; there is nothing to upload)."""
        self.image_for(build)

    def create(self, build: BuildResult, name: str, env: dict[str, str]) -> EndpointInfo:
        """Create the LB endpoint (or adopt the one a lost answer created) serving `build`."""
        config = endpoint_config(build.manifest["resource"], build.manifest["compute"])
        existing = self._own_endpoint(name)
        spec = self._spec(build, env, base={})
        self._check_secrets(spec)
        template = self._ensure_release(name, spec, existing.release if existing else 0)
        if existing is not None:
            log.info("runpod: endpoint %s already exists (%s); bringing it up to date", name, existing.id)
            endpoint = self.api.update_endpoint(existing, config, template)
        else:
            endpoint = self._ensure(
                lambda: self._own_endpoint(name),
                lambda: self.api.create_endpoint(name, config, template),
                f"create endpoint {name}",
            )
        return self._info(endpoint, with_key=True)

    def update(
        self, endpoint_id: str, *, build: BuildResult | None = None, env: dict[str, str] | None = None
    ) -> EndpointInfo:
        """Roll over to a new release (new image and/or env); live scaling settings are kept."""
        endpoint = self._endpoint(endpoint_id)
        serving = self._serving(endpoint)
        base = {k: v for k, v in serving.env.items() if k not in (RELEASE_ENV, BUILD_ENV)}
        config = endpoint.config
        if build is not None:
            spec = self._spec(build, env or {}, base=base)
            wanted = endpoint_config(build.manifest["resource"], build.manifest["compute"])
            config = dataclasses.replace(
                wanted,
                workers_min=config.workers_min,
                workers_max=config.workers_max,
                idle_timeout=config.idle_timeout,
                scaler_value=config.scaler_value,
            )
        else:
            build_env = {BUILD_ENV: serving.env[BUILD_ENV]} if BUILD_ENV in serving.env else {}
            spec = TemplateSpec(
                image=serving.image, env={**base, **(env or {}), **build_env}, compute=config.compute
            )
        self._check_secrets(spec)
        template = self._ensure_release(endpoint.name, spec, endpoint.release)
        updated = self.api.update_endpoint(endpoint, config, template)
        self._prune(endpoint.name, keep=updated.release)
        return self._info(updated)

    def scale(self, endpoint_id: str, scaling: dict[str, int]) -> EndpointInfo:
        """Apply workersMin/workersMax/idleTimeout/scalerValue at once (a full-record update)."""
        endpoint = self._endpoint(endpoint_id)
        config = validate_scaling(endpoint.config, scaling)
        return self._info(self.api.update_endpoint(endpoint, config, self._serving(endpoint)))

    def rollback(self, endpoint_id: str) -> EndpointInfo:
        """Point the endpoint at the release before the one it serves (no rebuild)."""
        endpoint = self._endpoint(endpoint_id)
        releases = self._releases(endpoint.name)
        earlier = [n for n in releases if n < endpoint.release]
        if not earlier:
            raise DeployError(
                f"endpoint {endpoint.name} serves release {endpoint.release} and RunPod keeps no earlier "
                "one; deploy the build you want instead"
            )
        target = releases[max(earlier)]
        log.info("runpod: rolling %s back to %s (%s)", endpoint.name, target.name, target.image)
        return self._info(self.api.update_endpoint(endpoint, endpoint.config, target))

    def delete(self, endpoint_id: str) -> None:
        """Scale to zero, delete the endpoint and its release templates, then check nothing is left."""
        endpoint = self.api.get_endpoint(endpoint_id)
        if endpoint is None:
            log.info("runpod: endpoint %s is already gone", endpoint_id)
            return
        self.purge(endpoint.name)

    def status(self, endpoint_id: str) -> EndpointInfo:
        """Configuration, release and workers by state (shaped like the local runtime's status)."""
        endpoint = self._endpoint(endpoint_id)
        workers = self.api.workers(endpoint_id)
        rows = workers.workers or [
            {"id": f"{state}-{index + 1}", "state": state, "status": state, "stale": False}
            for state in ("ready", "initializing", "throttled", "unhealthy")
            for index in range(workers.counts.get(state, 0))
        ]
        for row in rows:
            row["release"] = None if row["stale"] else endpoint.release
        info = self._info(endpoint)
        info.status.update(
            counts={k: v for k, v in workers.counts.items() if v},
            workers=rows,
            ready=workers.ready,
        )
        return info

    def find(self, name: str) -> list[EndpointInfo]:
        """The endpoints PodRoute made under `name` (endpoints someone else named so are ignored)."""
        return [self._info(endpoint) for endpoint in self._own_endpoints(name)]

    # --- beyond the interface -----------------------------------------------------------------

    def purge(self, name: str) -> None:
        """Remove every endpoint PodRoute made under `name`, and its templates; verify by listing."""
        for endpoint in self._own_endpoints(name):
            if endpoint.config.workers_min or endpoint.config.workers_max:
                zero = dataclasses.replace(endpoint.config, workers_min=0, workers_max=0)
                self.api.update_endpoint(endpoint, zero, self._serving(endpoint))
            with contextlib.suppress(NotFoundError):
                self.api.delete_endpoint(endpoint.id)
        for template in self._releases(name).values():
            self._delete_template(template)
        left = [e.id for e in self._own_endpoints(name)] + [t.name for t in self._releases(name).values()]
        if left:
            raise DeployError(
                f"RunPod still lists {', '.join(left)} after deleting {name}; run the delete again, "
                "or remove them in the console (https://console.runpod.io/serverless)"
            )

    def history(self, endpoint_id: str) -> list[dict[str, Any]]:
        """The releases RunPod keeps for an endpoint, oldest first, marking the one it serves."""
        endpoint = self._endpoint(endpoint_id)
        return [
            {
                "release": number,
                "template": template.name,
                "image": template.image,
                "build": template.env.get(BUILD_ENV, ""),
                "current": number == endpoint.release,
            }
            for number, template in sorted(self._releases(endpoint.name).items())
        ]

    def wait_until_ready(self, info: EndpointInfo, timeout_s: float, progress: Progress) -> EndpointInfo:
        """Wait for a ready worker of the current release, then `GET <url>/ping` 200."""
        deadline = time.monotonic() + timeout_s
        last = ""
        status = info
        while time.monotonic() < deadline:
            status = self.status(info.id)
            counts = status.status["counts"]
            line = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no workers yet"
            if line != last:
                progress(f"  workers: {line}")
                last = line
            ready = status.status["ready"] > 0
            code = self._ping(status.url, timeout=10.0 if ready else 1.0)
            if ready and code == 200:
                return status
            self._sleep(self.settings.poll_interval_s)
        raise DeployError(
            f"endpoint {info.id} had no healthy worker within {timeout_s:.0f}s (last seen: {last}); "
            "unhealthy workers usually mean the image does not listen on PORT (80) or crashes at start: "
            "see the worker logs at https://console.runpod.io/serverless"
        )

    def image_for(self, build: BuildResult) -> str:
        """The image reference of a build; DeployError with the docker commands when there is none."""
        key = f"{build.service}/{build.resource}"
        image = (
            self.images.get(build.sha256)
            or self.images.get(key)
            or build.manifest.get("image")
            or build.manifest["resource"].get("imageName")
        )
        if not image:
            raise DeployError(
                f"{key} has no image: RunPod runs container images, so build and push one from the "
                f"build's Docker context:\n{image_instructions(build)}\n"
                "then give that reference to the deploy (podroute deploy send --image "
                f"{key}=IMAGE, or the dashboard's image field), or set imageName on the resource"
            )
        return str(image)

    # --- helpers ------------------------------------------------------------------------------

    def _check_secrets(self, spec: TemplateSpec) -> None:
        """DeployError, before anything is created, when the env refers to secrets RunPod lacks."""
        missing = check_secrets({"env": spec.env}, self.secrets)
        if missing:
            raise DeployError(missing_secrets_message(missing, "RunPod (platform secrets)"))

    def _spec(self, build: BuildResult, env: Mapping[str, str], base: Mapping[str, str]) -> TemplateSpec:
        resource = build.manifest["resource"]
        volume = {"RUNPOD_VOLUME_PATH": RUNPOD_VOLUME_PATH} if resource.get("networkVolumeId") else {}
        merged = {
            "PORT": "80",
            "PORT_HEALTH": "80",
            **base,
            **volume,
            **resource.get("env", {}),
            **env,
            BUILD_ENV: build.sha256,
        }
        return TemplateSpec(image=self.image_for(build), env=merged, compute=build.manifest["compute"])

    def _info(self, endpoint: Endpoint, with_key: bool = False) -> EndpointInfo:
        status: dict[str, Any] = {
            "id": endpoint.id,
            "name": endpoint.name,
            "type": endpoint.type,
            "url": self.settings.url_of(endpoint.id),
            "api": self.settings.api,
            "release": endpoint.release,
            "build": endpoint.env.get(BUILD_ENV, ""),
            "image": endpoint.image,
            "scaling": endpoint.config.scaling(),
            "config": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(endpoint.config).items()
            },
            "desired": f"{endpoint.config.workers_min}-{endpoint.config.workers_max}",
            "counts": {},
            "workers": [],
            "inflight": 0,
            "decisions": [],
            "failures": [],
        }
        key = SecretStr(self.settings.api_key) if with_key else None
        return EndpointInfo(id=endpoint.id, url=status["url"], status=status, api_key=key)

    def _endpoint(self, endpoint_id: str) -> Endpoint:
        endpoint = self.api.get_endpoint(endpoint_id)
        if endpoint is None:
            raise EndpointNotFoundError(
                f"RunPod has no endpoint {endpoint_id}: it was deleted outside PodRoute; deploy again to "
                "create a new one"
            )
        return endpoint

    def _own_endpoints(self, name: str) -> list[Endpoint]:
        """Endpoints named `name` that PodRoute made (names are not unique on RunPod)."""
        return [e for e in self.api.list_endpoints() if e.name == name and RELEASE_ENV in e.env]

    def _own_endpoint(self, name: str) -> Endpoint | None:
        foreign = [e for e in self.api.list_endpoints() if e.name == name and RELEASE_ENV not in e.env]
        own = self._own_endpoints(name)
        if own and own[0].type != "LB":
            raise DeployError(f"endpoint {name} ({own[0].id}) is not a load balancer; delete it first")
        if not own and foreign:
            raise DeployError(
                f"RunPod already has an endpoint named {name} ({foreign[0].id}) that PodRoute did not "
                "create; rename or delete it, or deploy to another environment"
            )
        return own[0] if own else None

    def _releases(self, name: str) -> dict[int, Template]:
        pattern = re.compile(rf"^{re.escape(name)}__r(\d+)$")
        releases = {}
        for template in self.api.list_templates():
            match = pattern.match(template.name)
            if match:
                releases[int(match.group(1))] = template
        return releases

    @staticmethod
    def _serving(endpoint: Endpoint) -> Template:
        """The template an endpoint serves, as the full-record update needs it (no extra call)."""
        return Template(id=endpoint.template_id or "", name="", image=endpoint.image, env=endpoint.env)

    def _ensure_release(self, name: str, spec: TemplateSpec, current: int) -> Template:
        """The release template for `spec`: the newest one if a lost rollout already made it."""
        releases = self._releases(name)
        latest = max(releases, default=0)
        for number in (current, latest):  # already serving it, or a lost rollout already made it
            candidate = releases.get(number)
            if candidate is not None and _same_release(candidate, spec):
                return candidate
        number = latest + 1
        template_name = f"{name}__r{number}"
        numbered = dataclasses.replace(spec, env={**spec.env, RELEASE_ENV: str(number)})
        return self._ensure(
            lambda: self._releases(name).get(number),
            lambda: self.api.create_template(template_name, numbered),
            f"create template {template_name}",
        )

    def _ensure(self, find: Callable[[], _T | None], create: Callable[[], _T], what: str) -> _T:
        """Create once: look up first, and after an ambiguous failure look up again before retrying."""
        policy = self.settings.retry
        last: Exception | None = None
        for attempt in range(policy.attempts):
            found = find()
            if found is not None:
                return found
            try:
                return create()
            except AmbiguousResultError as error:
                last = error
            except RunPodApiError as error:
                if "unique" not in str(error).lower() and "already exists" not in str(error).lower():
                    raise
                last = error
                continue
            self._sleep(policy.delay(attempt))
        raise RunPodUnavailableError(f"RunPod {what} did not succeed after {policy.attempts} tries ({last})")

    def _delete_template(self, template: Template) -> None:
        deadline = time.monotonic() + self.settings.template_release_wait_s
        attempt = 0
        while True:
            try:
                self.api.delete_template(template)
                return
            except NotFoundError:
                return
            except TemplateInUseError:
                if time.monotonic() >= deadline:
                    raise DeployError(
                        f"RunPod still counts template {template.name} as in use; it frees templates up "
                        "to ~2 minutes after their endpoint is deleted: run the delete again shortly"
                    ) from None
            self._sleep(self.settings.retry.delay(attempt))
            attempt += 1

    def _prune(self, name: str, keep: int) -> None:
        releases = self._releases(name)
        for number in sorted(releases)[:-KEEP_RELEASES]:
            if number != keep:
                with contextlib.suppress(NotFoundError, TemplateInUseError):
                    self.api.delete_template(releases[number])

    def _ping(self, url: str, timeout: float) -> int | None:
        headers = {"Authorization": f"Bearer {self.settings.api_key}"}
        try:
            return httpx.get(f"{url}/ping", headers=headers, timeout=timeout).status_code
        except httpx.HTTPError:
            return None


def _same_release(template: Template, spec: TemplateSpec) -> bool:
    env = {k: v for k, v in template.env.items() if k != RELEASE_ENV}
    return template.image == spec.image and env == spec.env


def provider_from_environment(environment: Mapping[str, Any]) -> RunPodProvider:
    """The provider for a `.podroute/deployments.json` environment with `provider: runpod`."""
    overrides = {"api": environment["api"]} if environment.get("api") else {}
    settings = RunPodSettings.from_env(**overrides)
    return RunPodProvider(settings, images=environment.get("images") or {})
