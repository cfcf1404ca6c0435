"""Deploying builds: one provider interface, and the project's record of its environments.

A *provider* creates, updates, scales, rolls back, deletes and reports on endpoints. The local
runtime is the first implementation; RunPod's follows the same interface. The project keeps what
it deployed per environment in `.podroute/deployments.json` (mode 0600: it holds endpoint keys).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from podroute.build import BuildResult

Progress = Callable[[str], None]


class DeployError(Exception):
    """A deployment step failed; the message says what happened and what to do."""


class ProviderUnavailableError(DeployError):
    """The provider could not be reached, timed out or kept answering 5xx/429: worth retrying later."""


class EndpointNotFoundError(DeployError):
    """The provider has no endpoint with that id (deleting it again is therefore already done)."""


@dataclass
class EndpointInfo:
    """What a provider reports about an endpoint."""

    id: str
    url: str
    status: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = field(default=None, repr=False)


class Provider(Protocol):
    """The operations every deployment target offers."""

    def upload(self, build: BuildResult) -> None:
        """Make a build available to the provider."""

    def create(self, build: BuildResult, name: str, env: dict[str, str]) -> EndpointInfo:
        """Create an endpoint serving `build`; the result carries its API key."""

    def update(
        self, endpoint_id: str, *, build: BuildResult | None = None, env: dict[str, str] | None = None
    ) -> EndpointInfo:
        """Roll an endpoint over to a new build and/or environment."""

    def scale(self, endpoint_id: str, scaling: dict[str, int]) -> EndpointInfo:
        """Change workersMin/workersMax/idleTimeout/scalerValue; applies at once."""

    def rollback(self, endpoint_id: str) -> EndpointInfo:
        """Serve the previous release again."""

    def delete(self, endpoint_id: str) -> None:
        """Stop every worker and remove the endpoint."""

    def status(self, endpoint_id: str) -> EndpointInfo:
        """Configuration, workers and recent scaling decisions."""

    def find(self, name: str) -> list[EndpointInfo]:
        """Every endpoint this provider holds under `name` (what makes a retried create safe)."""


class LocalRuntimeProvider:
    """The local runtime's control API (`podroute runtime`)."""

    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, f"/control{path}", **kwargs)
        except httpx.TransportError as error:
            raise ProviderUnavailableError(
                f"cannot reach the local runtime at {self.base_url} ({error}); "
                "start it with 'podroute runtime'"
            ) from None
        if response.status_code == 401:
            raise DeployError(
                "the local runtime refused the token; check PODROUTE_RUNTIME_TOKEN or --token-file"
            )
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            text = f"the runtime answered {response.status_code}: {message}"
            if response.status_code == 404:
                raise EndpointNotFoundError(text)
            if response.status_code == 429 or response.status_code >= 500:
                raise ProviderUnavailableError(f"{text}; try again shortly")
            raise DeployError(text)
        result: dict[str, Any] = response.json()
        return result

    def control(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Call another route of the runtime's control API (`/control<path>`; e.g. its secrets)."""
        return self._call(method, path, **kwargs)

    @staticmethod
    def _info(body: dict[str, Any]) -> EndpointInfo:
        return EndpointInfo(id=body["id"], url=body["url"], status=body, api_key=body.get("api_key"))

    def upload(self, build: BuildResult) -> None:
        """PUT the artifact under its hash (the runtime checks it)."""
        self._call("PUT", f"/builds/{build.sha256}", content=build.artifact.read_bytes())

    def create(self, build: BuildResult, name: str, env: dict[str, str]) -> EndpointInfo:
        """Create an endpoint for the build."""
        return self._info(
            self._call("POST", "/endpoints", json={"build": build.sha256, "name": name, "env": env})
        )

    def update(
        self, endpoint_id: str, *, build: BuildResult | None = None, env: dict[str, str] | None = None
    ) -> EndpointInfo:
        """Roll over to a new build and/or env."""
        payload: dict[str, Any] = {}
        if build is not None:
            payload["build"] = build.sha256
        if env is not None:
            payload["env"] = env
        return self._info(self._call("PATCH", f"/endpoints/{endpoint_id}", json=payload))

    def scale(self, endpoint_id: str, scaling: dict[str, int]) -> EndpointInfo:
        """Change scaling settings."""
        return self._info(self._call("PATCH", f"/endpoints/{endpoint_id}", json=scaling))

    def rollback(self, endpoint_id: str) -> EndpointInfo:
        """Serve the previous release."""
        return self._info(self._call("POST", f"/endpoints/{endpoint_id}/rollback"))

    def delete(self, endpoint_id: str) -> None:
        """Delete the endpoint."""
        self._call("DELETE", f"/endpoints/{endpoint_id}")

    def status(self, endpoint_id: str) -> EndpointInfo:
        """Current status."""
        return self._info(self._call("GET", f"/endpoints/{endpoint_id}"))

    def find(self, name: str) -> list[EndpointInfo]:
        """Endpoints named `name` on the runtime."""
        body = self._call("GET", "/endpoints")
        return [self._info(entry) for entry in body.get("endpoints", []) if entry.get("name") == name]


class Deployments:
    """The project's environments and what is deployed in each (`.podroute/deployments.json`)."""

    def __init__(self, project: Path) -> None:
        self.path = project / ".podroute" / "deployments.json"
        self.data: dict[str, Any] = {"environments": {}}
        if self.path.is_file():
            self.data = json.loads(self.path.read_text())

    @property
    def environments(self) -> dict[str, dict[str, Any]]:
        """Environment name -> its provider settings and endpoints."""
        environments: dict[str, dict[str, Any]] = self.data["environments"]
        return environments

    def environment(self, name: str) -> dict[str, Any]:
        """One environment; DeployError naming the known ones when it does not exist."""
        if name not in self.environments:
            known = ", ".join(self.environments) or "none yet"
            raise DeployError(
                f"no environment {name!r} (known: {known}); create it with 'podroute deploy new {name}'"
            )
        return self.environments[name]

    def save(self) -> None:
        """Write the file, readable by the owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.data, handle, indent=2, sort_keys=True)
        os.replace(temporary, self.path)


def provider_for(environment: dict[str, Any]) -> Provider:
    """The provider an environment was created with."""
    if environment.get("provider") == "runpod":
        from podroute.runpod import provider_from_environment  # imports this module

        return provider_from_environment(environment)
    if environment.get("provider") != "local":
        raise DeployError(f"unknown provider {environment.get('provider')!r}")
    token = os.environ.get("PODROUTE_RUNTIME_TOKEN") or _read_token(Path(environment["token_file"]))
    return LocalRuntimeProvider(environment["runtime_url"], token)


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise DeployError(
            f"no runtime token at {path}; start 'podroute runtime' once (it writes the token) "
            "or set PODROUTE_RUNTIME_TOKEN"
        ) from None


def _ping_through_gateway(info: EndpointInfo, api_key: str, timeout: float = 5.0) -> int | None:
    """/ping through the gateway; like any request, it wakes an endpoint scaled to zero."""
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        return httpx.get(f"{info.url}/ping", headers=headers, timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def wait_until_healthy(
    provider: Provider, info: EndpointInfo, api_key: str, timeout_s: float, progress: Progress
) -> EndpointInfo:
    """Wait for a ready worker of the current release and `/ping` 200 through the gateway."""
    deadline = time.monotonic() + timeout_s
    since = time.time() - 1.0
    last_line = ""
    while time.monotonic() < deadline:
        status = provider.status(info.id)
        release = status.status["release"]
        workers = [w for w in status.status["workers"] if w["release"] == release]
        line = ", ".join(f"{w['id']} {w['state']}" for w in workers) or "starting a worker"
        if line != last_line:
            progress(f"  workers: {line}")
            last_line = line
        failures = [
            f for f in status.status.get("failures", []) if f.get("release") == release and f["at"] >= since
        ]
        if failures and not any(w["state"] == "ready" for w in workers):
            failure = failures[-1]
            log = "\n".join(f"    | {entry}" for entry in failure.get("log", [])[-10:])
            raise DeployError(
                f"a worker failed: {failure['reason']}" + (f"\n  its last output:\n{log}" if log else "")
            )
        if any(w["state"] == "ready" for w in workers):
            if _ping_through_gateway(status, api_key) == 200:
                return status
        else:
            _ping_through_gateway(status, api_key, timeout=0.5)
        time.sleep(getattr(provider, "poll_interval_s", 0.3))
    raise DeployError(f"the endpoint did not become healthy within {timeout_s:.0f}s")


def _endpoint_key(build: BuildResult) -> str:
    return f"{build.service}/{build.resource}"


def send(
    deployments: Deployments, env_name: str, builds: list[BuildResult], timeout_s: float, progress: Progress
) -> list[tuple[str, EndpointInfo]]:
    """Upload and roll out builds in an environment; only reports success once each is healthy.

    A failed rollout of an existing endpoint is rolled back, so the previous release keeps serving;
    a new endpoint that never became healthy is deleted, so nothing is left running.
    """
    environment = deployments.environment(env_name)
    provider = provider_for(environment)
    endpoints: dict[str, Any] = environment.setdefault("endpoints", {})
    deployed = []
    for build in builds:
        key = _endpoint_key(build)
        size_kb = build.artifact.stat().st_size / 1024
        progress(f"{key}: uploading build {build.sha256[:12]} ({size_kb:.0f} KiB)")
        provider.upload(build)
        existing = endpoints.get(key)
        if existing:
            progress(f"{key}: rolling endpoint {existing['id']} over to the new build")
            info = provider.update(existing["id"], build=build)
            api_key = existing["api_key"]
        else:
            progress(f"{key}: creating endpoint")
            info = provider.create(build, f"{env_name}-{build.resource}", {})
            api_key = info.api_key or ""
            endpoints[key] = {"id": info.id, "url": info.url, "api_key": api_key}
            deployments.save()
        progress(f"{key}: waiting for /ping 200 through the gateway")
        try:
            info = wait_until_healthy(provider, info, api_key, timeout_s, progress)
        except DeployError as error:
            if existing:
                provider.rollback(existing["id"])
                raise DeployError(
                    f"{key}: {error}\n  rolled back: the previous release keeps serving"
                ) from None
            provider.delete(info.id)
            del endpoints[key]
            deployments.save()
            raise DeployError(f"{key}: {error}\n  the new endpoint was deleted") from None
        endpoints[key].update({"url": info.url, "build": build.sha256})
        deployments.save()
        deployed.append((key, info))
    return deployed


def find_endpoint(
    deployments: Deployments, env_name: str | None, name: str
) -> tuple[str, dict[str, Any], str]:
    """Resolve `service/resource`, a resource or service name, or an endpoint id to (env, entry, key)."""
    names = [env_name] if env_name else list(deployments.environments)
    matches = []
    for candidate_env in names:
        for key, entry in deployments.environment(candidate_env).get("endpoints", {}).items():
            if name in (key, entry["id"], *key.split("/")):
                matches.append((candidate_env, entry, key))
    if len(matches) != 1:
        problem = "no endpoint" if not matches else "several endpoints"
        raise DeployError(f"{problem} named {name!r}; use service/resource or the endpoint id, with --env")
    return matches[0]
