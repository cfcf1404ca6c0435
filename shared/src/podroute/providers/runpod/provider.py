"""The RunPod provider: deploy builds as load-balanced serverless endpoints on RunPod.

**REST v2 is the primary API, GraphQL the fallback** (`PODROUTE_RUNPOD_API=graphql`). REST v1 is
not an option: it cannot create load balancers. REST v2 is RunPod's current API; GraphQL is
deprecated and retires in early 2027, so a deploy tool built on it would stop working within
months. v2 also has a published schema that rejects unknown fields with an RFC 9457 body naming
each bad field (errors users can act on), a documented 429 + `Retry-After` rate limit, and a
worker list that marks workers of an older release (`isStale`), so readiness can wait for a
worker of *the new* release. GraphQL stays behind the same interface (`podroute.providers.runpod.graphql`)
because it is the route Flash and the console have proven for LB endpoints; if v2 misbehaves for
an account, one variable switches over. Both are tested against the same fake.

How a deployment maps onto RunPod (both APIs):

- **One serverless template per release**, named `<endpoint name>__r<N>`, holding the image and
  the worker env (`PORT`/`PORT_HEALTH` 80, the config's env, `PODROUTE_RELEASE=N`,
  `PODROUTE_BUILD=<artifact sha256>`) and the release metadata: the project's marker
  (`PODROUTE_PROJECT`, `PODROUTE_ENVIRONMENT`, `PODROUTE_SERVICE`, `PODROUTE_RESOURCE`, the labels of
  `target_labels`), `PODROUTE_CONFIG` (the release's config as JSON, env *keys* only, never values),
  `PODROUTE_DEPLOYED_BY` and `PODROUTE_RELEASED_AT`. Templates are never edited: the set of them
  *is* the release history, kept on RunPod, so every process (CLI, Celery worker) sees the same
  one. The newest `KEEP_RELEASES` are kept. An endpoint's env is its serving template's env, so the
  marker is read from the endpoint itself; endpoints without it are never listed or touched.
- **Secrets and volumes.** Env values that are secrets are references (`{{ RUNPOD_SECRET_<name> }}`)
  to the account's platform secrets (`podroute.providers.runpod.secrets`, GraphQL whichever API
  deploys), which the provider's `list_secrets`/`add_secret`/`delete_secret` manage. A network
  volume goes into the endpoint record; RunPod mounts it at `/runpod-volume` (another
  `volumeMountPath` is refused) and the template env gets `RUNPOD_VOLUME_PATH` (platform env, like
  `PORT`: no drift).
- **Recorded desired overrides** (`podroute scale`, a dashboard scaling change) live in one more
  template per endpoint, `<endpoint name>__overrides__v<K>` (`PODROUTE_OVERRIDES` as JSON), never
  bound to anything: a change creates version K+1, then deletes the older ones.
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
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from podroute.build import BuildResult
from podroute.cost import PriceTable
from podroute.deploy.model import (
    ActualEndpoint,
    DesiredConfig,
    ReleaseInfo,
    Target,
    endpoint_name,
    release_config,
    target_labels,
)
from podroute.providers.base import DeployError, EndpointNotFoundError, Progress, ProviderUnavailableError
from podroute.providers.runpod.config import (
    SCALING_FIELDS,
    SecretStr,
    endpoint_config,
    image_instructions,
    validate_scaling,
    volume_env,
)
from podroute.providers.runpod.graphql import GraphQLApi
from podroute.providers.runpod.http import (
    AmbiguousResultError,
    NotFoundError,
    RunPodApiError,
    RunPodSettings,
    RunPodUnavailableError,
    TemplateInUseError,
)
from podroute.providers.runpod.records import (
    BUILD_ENV,
    RELEASE_ENV,
    Endpoint,
    RunPodApi,
    Template,
    TemplateSpec,
)
from podroute.providers.runpod.rest import RestV2Api
from podroute.providers.runpod.secrets import RunPodSecrets
from podroute.providers.runpod.usage import fetch_prices, read_serverless_billing, sample_worker_counts
from podroute.secrets import SecretInfo

log = logging.getLogger("podroute.runpod")

KEEP_RELEASES = 5
"""Release templates kept per endpoint (older ones are deleted after a successful rollout)."""

CONFIG_ENV = "PODROUTE_CONFIG"
DEPLOYED_BY_ENV = "PODROUTE_DEPLOYED_BY"
RELEASED_AT_ENV = "PODROUTE_RELEASED_AT"
OVERRIDES_ENV = "PODROUTE_OVERRIDES"
LABEL_ENV = {
    "podroute.project": "PODROUTE_PROJECT",
    "podroute.environment": "PODROUTE_ENVIRONMENT",
    "podroute.service": "PODROUTE_SERVICE",
    "podroute.resource": "PODROUTE_RESOURCE",
}
"""Marker label -> the template env variable that carries it."""
_VOLATILE_ENV = (RELEASE_ENV, DEPLOYED_BY_ENV, RELEASED_AT_ENV)
_PLATFORM_ENV = ("PORT", "PORT_HEALTH", *volume_env({"networkVolumeId": "any"}))
_T = TypeVar("_T")


def api_for(settings: RunPodSettings, sleep: Callable[[float], None] = time.sleep) -> RunPodApi:
    """The transport `settings.api` names."""
    return GraphQLApi(settings, sleep) if settings.api == "graphql" else RestV2Api(settings, sleep)


def labels_of(env: Mapping[str, str]) -> dict[str, str]:
    """The marker labels an endpoint's (serving template's) env carries."""
    return {label: env[name] for label, name in LABEL_ENV.items() if name in env}


class RunPodProvider:
    """The `Provider` protocol on RunPod's management API (see the module docstring)."""

    kind = "runpod"
    scaling_fields: tuple[str, ...] = SCALING_FIELDS

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
        self._sleep = sleep
        self._secrets: RunPodSecrets | None = None

    def __repr__(self) -> str:
        return f"RunPodProvider(api={self.settings.api!r})"

    def __enter__(self) -> Self:
        """Use in a `with` block."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close at the end of the block."""
        self.close()

    @property
    def poll_interval_s(self) -> float:
        """How often a rollout polls status: RunPod's API is rate limited."""
        return self.settings.poll_interval_s

    def close(self) -> None:
        """Release the HTTP connections."""
        self.api.close()
        if self._secrets is not None:
            self._secrets.close()

    @property
    def secrets(self) -> RunPodSecrets:
        """The account's platform secrets (GraphQL, whichever API deploys; opened on first use)."""
        if self._secrets is None:
            self._secrets = RunPodSecrets(self.settings, self._sleep)
        return self._secrets

    # --- the Provider protocol ----------------------------------------------------------------

    def upload(self, build: BuildResult) -> None:
        """Check that the build has an image (RunPod pulls images; there is nothing to upload)."""
        self.image_for(build)

    def create(
        self, target: Target, build: BuildResult, config: DesiredConfig, *, deployed_by: str
    ) -> ActualEndpoint:
        """Create the target's LB endpoint (or adopt the one a lost answer created)."""
        name = endpoint_name(target)
        wanted = endpoint_config(config.values, build.manifest["compute"])
        existing = self._own_endpoint(name)
        spec = self._spec(build, config, target_labels(target), deployed_by)
        template = self._ensure_release(name, spec, existing.release if existing else 0)
        if existing is not None:
            log.info("runpod: endpoint %s already exists (%s); bringing it up to date", name, existing.id)
            endpoint = self.api.update_endpoint(existing, wanted, template)
        else:
            endpoint = self._ensure(
                lambda: self._own_endpoint(name),
                lambda: self.api.create_endpoint(name, wanted, template),
                f"create endpoint {name}",
            )
        return self._actual(endpoint)

    def update(
        self, endpoint_id: str, build: BuildResult, config: DesiredConfig, *, deployed_by: str
    ) -> ActualEndpoint:
        """Release `build` with `config` (a new release template unless an identical one exists)."""
        endpoint = self._endpoint(endpoint_id)
        spec = self._spec(build, config, labels_of(endpoint.env), deployed_by)
        wanted = endpoint_config(config.values, build.manifest["compute"])
        template = self._ensure_release(endpoint.name, spec, endpoint.release)
        updated = self.api.update_endpoint(endpoint, wanted, template)
        self._prune(endpoint.name, keep=updated.release)
        return self._actual(updated)

    def scale(self, endpoint_id: str, scaling: Mapping[str, int], *, record: bool = True) -> ActualEndpoint:
        """Apply scaling at once (a full-record update); `record` stores it as desired overrides."""
        endpoint = self._endpoint(endpoint_id)
        config = validate_scaling(endpoint.config, scaling)
        updated = self.api.update_endpoint(endpoint, config, self._serving(endpoint))
        if record:
            overrides = {**self._overrides(endpoint.name, self._templates())[0], **scaling}
            self._record_overrides(endpoint, overrides)
        return self._actual(updated)

    def rollback(self, endpoint_id: str, to_release: int | None = None) -> ActualEndpoint:
        """Point the endpoint at an earlier release template (no rebuild), with that release's
        scaling; the recorded overrides are cleared."""
        endpoint = self._endpoint(endpoint_id)
        releases = self._releases(endpoint.name)
        if to_release is None:
            earlier = [n for n in releases if n < endpoint.release]
            if not earlier:
                raise DeployError(
                    f"endpoint {endpoint.name} serves release {endpoint.release} and RunPod keeps no "
                    "earlier one; deploy the build you want instead"
                )
            to_release = max(earlier)
        target = releases.get(to_release)
        if target is None:
            kept = ", ".join(str(n) for n in sorted(releases))
            raise DeployError(f"RunPod keeps releases {kept} of {endpoint.name}, not {to_release}")
        config = endpoint.config
        stored = _release_meta(target.env)
        scaling = {k: int(v) for k, v in stored.items() if k in SCALING_FIELDS}
        if scaling:
            config = validate_scaling(config, scaling)
        log.info("runpod: rolling %s back to %s (%s)", endpoint.name, target.name, target.image)
        updated = self.api.update_endpoint(endpoint, config, target)
        self._record_overrides(endpoint, {})
        return self._actual(updated)

    def delete(self, endpoint_id: str) -> None:
        """Scale to zero, delete the endpoint and its templates, then check nothing is left."""
        endpoint = self.api.get_endpoint(endpoint_id)
        if endpoint is None:
            log.info("runpod: endpoint %s is already gone", endpoint_id)
            return
        self.purge(endpoint.name)

    def status(self, endpoint_id: str) -> ActualEndpoint:
        """What the endpoint serves, its releases, overrides and workers by state."""
        endpoint = self._endpoint(endpoint_id)
        workers = self.api.workers(endpoint_id)
        rows = workers.workers or [
            {"id": f"{state}-{index + 1}", "state": state, "status": state, "stale": False}
            for state in ("ready", "initializing", "throttled", "unhealthy")
            for index in range(workers.counts.get(state, 0))
        ]
        for row in rows:
            row["release"] = None if row["stale"] else endpoint.release
        actual = self._actual(endpoint)
        actual.workers = {k: v for k, v in workers.counts.items() if v}
        actual.details.update(counts=actual.workers, workers=rows, ready=workers.ready)
        return actual

    def list_endpoints(self, project: str | None = None) -> list[ActualEndpoint]:
        """Every endpoint carrying the marker (of `project` when given); one listing of endpoints
        and one of templates, whatever their number."""
        templates = self._templates()
        found = []
        for endpoint in self.api.list_endpoints():
            labels = labels_of(endpoint.env)
            if RELEASE_ENV not in endpoint.env or "podroute.project" not in labels:
                continue
            if project is not None and labels["podroute.project"] != project:
                continue
            found.append(self._actual(endpoint, templates))
        return found

    def api_key(self, endpoint_id: str) -> str:
        """RunPod endpoints take the account's key (configuration, never stored anywhere else)."""
        return SecretStr(self.settings.api_key)

    def route_metrics(self, endpoint_id: str, window: str) -> dict[str, Any] | None:
        """None: RunPod records no per-route figures (README, 'On RunPod')."""
        return None

    def sample_workers(self, endpoint_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """The health API's worker counts, one call per endpoint (RunPod has no batch form)."""
        counts: dict[str, dict[str, int]] = {}
        for endpoint_id in endpoint_ids:
            try:
                counts[endpoint_id] = sample_worker_counts(self.settings, endpoint_id).counts
            except ProviderUnavailableError:
                raise
            except DeployError as error:  # deleted since it was listed, or not serving health yet
                log.debug("no worker counts for %s: %s", endpoint_id, error)
        return counts

    def read_bill(self, endpoint_id: str, start: str, end: str) -> list[dict[str, Any]] | None:
        """`GET /v2/billing/serverless` for the endpoint, in hourly buckets."""
        return read_serverless_billing(self.settings, endpoint_id, start, end, bucket="hour")

    def price_table(self) -> PriceTable:
        """RunPod's serverless catalog (the shipped prices fill what it does not list)."""
        return fetch_prices(self.settings)

    def worker_logs(self, endpoint_id: str, follow: bool) -> Iterator[dict[str, Any]]:
        """RunPod's worker logs are in its console; its API does not serve them."""
        raise DeployError(
            f"RunPod keeps worker logs in its console (endpoint {endpoint_id}); its API does not serve them"
        )

    def list_secrets(self) -> list[SecretInfo]:
        """The account's platform secrets (RunPod never returns values)."""
        return self.secrets.list_secrets()

    def add_secret(
        self, name: str, value: str, description: str = "", *, replace: bool = False
    ) -> SecretInfo:
        """Create a platform secret; `replace` deletes one of that name first (RunPod has no update)."""
        return self.secrets.add_secret(name, value, description, replace=replace)

    def delete_secret(self, name: str) -> None:
        """Delete the platform secret named `name`."""
        self.secrets.delete_secret(name)

    def wait_until_ready(
        self, endpoint: ActualEndpoint, timeout_s: float, progress: Progress
    ) -> ActualEndpoint:
        """Wait for a ready worker of the serving release, then `GET <url>/ping` 200."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            status = self.status(endpoint.id)
            line = (
                ", ".join(f"{n} {state}" for state, n in sorted(status.workers.items())) or "no workers yet"
            )
            if line != last:
                progress(f"  workers: {line}")
                last = line
            ready = status.details["ready"] > 0
            code = self._ping(status.url, timeout=10.0 if ready else 1.0)
            if ready and code == 200:
                return status
            self._sleep(self.settings.poll_interval_s)
        raise DeployError(
            f"endpoint {endpoint.id} had no healthy worker within {timeout_s:.0f}s (last seen: {last}); "
            "unhealthy workers usually mean the image does not listen on PORT (80) or crashes at start: "
            "see the worker logs at https://console.runpod.io/serverless"
        )

    # --- beyond the protocol ------------------------------------------------------------------

    def purge(self, name: str) -> None:
        """Remove every endpoint PodRoute made under `name`, and its templates; verify by listing."""
        for endpoint in self._own_endpoints(name):
            if endpoint.config.workers_min or endpoint.config.workers_max:
                zero = dataclasses.replace(endpoint.config, workers_min=0, workers_max=0)
                self.api.update_endpoint(endpoint, zero, self._serving(endpoint))
            with contextlib.suppress(NotFoundError):
                self.api.delete_endpoint(endpoint.id)
        for template in self._templates_of(name, self._templates()):
            self._delete_template(template)
        left = [e.id for e in self._own_endpoints(name)]
        left += [t.name for t in self._templates_of(name, self._templates())]
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

    def _spec(
        self, build: BuildResult, config: DesiredConfig, labels: Mapping[str, str], deployed_by: str
    ) -> TemplateSpec:
        meta = {LABEL_ENV[label]: value for label, value in labels.items() if label in LABEL_ENV}
        merged = {
            "PORT": "80",
            "PORT_HEALTH": "80",
            **volume_env(config.values),
            **dict(config.values.get("env", {})),
            BUILD_ENV: build.sha256,
            **meta,
            CONFIG_ENV: json.dumps(release_config(config), sort_keys=True, separators=(",", ":")),
            DEPLOYED_BY_ENV: deployed_by,
            RELEASED_AT_ENV: f"{time.time():.3f}",
        }
        return TemplateSpec(image=self.image_for(build), env=merged, compute=build.manifest["compute"])

    def _actual(self, endpoint: Endpoint, templates: list[Template] | None = None) -> ActualEndpoint:
        templates = self._templates() if templates is None else templates
        releases = [
            _release_info(number, template)
            for number, template in sorted(_release_templates(endpoint.name, templates).items())
        ]
        overrides, _ = self._overrides(endpoint.name, templates)
        config = endpoint.config
        serving: dict[str, Any] = {
            **config.scaling(),
            "executionTimeoutMs": config.execution_timeout_ms,
            "env_keys": sorted(
                k for k in endpoint.env if k not in _PLATFORM_ENV and not k.startswith("PODROUTE_")
            ),
            "build": endpoint.env.get(BUILD_ENV, ""),
            "image": endpoint.image,
            "flashboot": config.flashboot,
            "locations": list(config.locations),
        }
        if config.compute == "gpu":
            serving["gpuCount"] = config.gpu_count
        details: dict[str, Any] = {
            "id": endpoint.id,
            "name": endpoint.name,
            "type": endpoint.type,
            "url": self.settings.url_of(endpoint.id),
            "api": self.settings.api,
            "release": endpoint.release,
            "build": serving["build"],
            "image": endpoint.image,
            "scaling": config.scaling(),
            "config": {
                k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
            },
            "desired": f"{config.workers_min}-{config.workers_max}",
            "counts": {},
            "workers": [],
            "inflight": 0,
            "decisions": [],
            "failures": [],
        }
        return ActualEndpoint(
            id=endpoint.id,
            name=endpoint.name,
            url=details["url"],
            labels=labels_of(endpoint.env),
            serving=serving,
            release=next((r for r in releases if r.number == endpoint.release), None),
            releases=releases,
            overrides=overrides,
            details=details,
        )

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

    def _templates(self) -> list[Template]:
        return self.api.list_templates()

    @staticmethod
    def _templates_of(name: str, templates: list[Template]) -> list[Template]:
        """Every template PodRoute keeps for the endpoint `name` (releases and overrides)."""
        return [t for t in templates if t.name.startswith(f"{name}__")]

    def _releases(self, name: str) -> dict[int, Template]:
        return _release_templates(name, self._templates())

    def _overrides(self, name: str, templates: list[Template]) -> tuple[dict[str, Any], int]:
        """The newest recorded overrides of endpoint `name` and their version (0: none yet)."""
        versions = _numbered(f"{name}__overrides__v", templates)
        if not versions:
            return {}, 0
        newest = max(versions)
        stored = json.loads(versions[newest].env.get(OVERRIDES_ENV, "{}"))
        return (dict(stored) if isinstance(stored, dict) else {}), newest

    def _record_overrides(self, endpoint: Endpoint, overrides: Mapping[str, Any]) -> None:
        """Store `overrides` as a new version, then delete the older ones."""
        templates = self._templates()
        versions = _numbered(f"{endpoint.name}__overrides__v", templates)
        if not overrides and not versions:
            return
        number = max(versions, default=0) + 1
        name = f"{endpoint.name}__overrides__v{number}"
        text = json.dumps(dict(overrides), sort_keys=True, separators=(",", ":"))
        spec = TemplateSpec(image=endpoint.image, env={OVERRIDES_ENV: text}, compute=endpoint.config.compute)
        self._ensure(
            lambda: _numbered(f"{endpoint.name}__overrides__v", self._templates()).get(number),
            lambda: self.api.create_template(name, spec),
            f"create template {name}",
        )
        for old in versions.values():
            with contextlib.suppress(NotFoundError, TemplateInUseError):
                self.api.delete_template(old)

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


def _numbered(prefix: str, templates: list[Template]) -> dict[int, Template]:
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    found = {}
    for template in templates:
        match = pattern.match(template.name)
        if match:
            found[int(match.group(1))] = template
    return found


def _release_templates(name: str, templates: list[Template]) -> dict[int, Template]:
    return _numbered(f"{name}__r", templates)


def _release_meta(env: Mapping[str, str]) -> dict[str, Any]:
    try:
        stored = json.loads(env.get(CONFIG_ENV, "{}"))
    except ValueError:
        return {}
    return dict(stored) if isinstance(stored, dict) else {}


def _release_info(number: int, template: Template) -> ReleaseInfo:
    released_at = template.env.get(RELEASED_AT_ENV, "0")
    return ReleaseInfo(
        number=number,
        build=template.env.get(BUILD_ENV, ""),
        config=_release_meta(template.env),
        deployed_by=template.env.get(DEPLOYED_BY_ENV, ""),
        created_at=float(released_at) if released_at.replace(".", "", 1).isdigit() else 0.0,
    )


def _same_release(template: Template, spec: TemplateSpec) -> bool:
    def identity(env: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if k not in _VOLATILE_ENV}

    return template.image == spec.image and identity(template.env) == identity(spec.env)
