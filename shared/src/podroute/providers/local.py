"""The local runtime's control API (`podroute runtime`) as a `Provider`.

The runtime stores what the protocol needs on each endpoint: marker labels, numbered releases with
their config and author, the recorded desired overrides, and the endpoint's API key (handed to a
caller holding the runtime token, so no tool stores keys).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from podroute.build import BuildResult
from podroute.cost import PriceTable, load_price_file
from podroute.deploy.model import (
    SCALING_FIELDS,
    ActualEndpoint,
    DesiredConfig,
    ReleaseInfo,
    Target,
    endpoint_name,
    target_labels,
)
from podroute.providers.base import (
    DeployError,
    EndpointNotFoundError,
    Progress,
    ProviderUnavailableError,
    ping_through_gateway,
)
from podroute.secrets import SecretInfo, check_secret_name, secret_info


class LocalRuntimeProvider:
    """The local runtime's control API."""

    kind = "local"
    scaling_fields: tuple[str, ...] = SCALING_FIELDS
    poll_interval_s = 0.3

    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def __repr__(self) -> str:
        return f"LocalRuntimeProvider({self.base_url!r})"

    def __enter__(self) -> Self:
        """Use in a `with` block."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close at the end of the block."""
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

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

    # --- the Provider protocol ---------------------------------------------------------------

    def upload(self, build: BuildResult) -> None:
        """PUT the artifact under its hash (the runtime checks it)."""
        self._call("PUT", f"/builds/{build.sha256}", content=build.artifact.read_bytes())

    def create(
        self, target: Target, build: BuildResult, config: DesiredConfig, *, deployed_by: str
    ) -> ActualEndpoint:
        """Create the target's endpoint, named and marked for it."""
        payload = {
            "build": build.sha256,
            "name": endpoint_name(target),
            "labels": target_labels(target),
            "config": config.values,
            "deployed_by": deployed_by,
        }
        return actual_from_runtime(self._call("POST", "/endpoints", json=payload))

    def update(
        self, endpoint_id: str, build: BuildResult, config: DesiredConfig, *, deployed_by: str
    ) -> ActualEndpoint:
        """Release `build` with `config` (the runtime reuses an identical release)."""
        payload = {"build": build.sha256, "config": config.values, "deployed_by": deployed_by}
        return actual_from_runtime(self._call("PATCH", f"/endpoints/{endpoint_id}", json=payload))

    def update_env(self, endpoint_id: str, env: Mapping[str, str]) -> ActualEndpoint:
        """Roll the serving build over to another environment (a new release)."""
        body = self._call("PATCH", f"/endpoints/{endpoint_id}", json={"env": dict(env)})
        return actual_from_runtime(body)

    def scale(self, endpoint_id: str, scaling: Mapping[str, int], *, record: bool = True) -> ActualEndpoint:
        """Apply scaling at once; `record` stores it as the endpoint's desired overrides."""
        payload: dict[str, Any] = {**scaling, "record": record}
        return actual_from_runtime(self._call("PATCH", f"/endpoints/{endpoint_id}", json=payload))

    def rollback(self, endpoint_id: str, to_release: int | None = None) -> ActualEndpoint:
        """Serve an earlier release with its config."""
        payload = {} if to_release is None else {"release": to_release}
        return actual_from_runtime(self._call("POST", f"/endpoints/{endpoint_id}/rollback", json=payload))

    def delete(self, endpoint_id: str) -> None:
        """Delete the endpoint, then check that a fresh listing no longer has it."""
        try:
            self._call("DELETE", f"/endpoints/{endpoint_id}")
        except EndpointNotFoundError:
            return
        if any(entry["id"] == endpoint_id for entry in self._call("GET", "/endpoints")["endpoints"]):
            raise DeployError(
                f"the runtime still lists endpoint {endpoint_id} after deleting it; run it again"
            )

    def status(self, endpoint_id: str) -> ActualEndpoint:
        """What the endpoint serves, its releases, overrides and workers."""
        return actual_from_runtime(self._call("GET", f"/endpoints/{endpoint_id}"))

    def list_endpoints(self, project: str | None = None) -> list[ActualEndpoint]:
        """Every marked endpoint (of `project` when given)."""
        params = {"project": project} if project is not None else {}
        body = self._call("GET", "/endpoints", params=params)
        return [actual_from_runtime(entry) for entry in body["endpoints"] if entry.get("labels")]

    def api_key(self, endpoint_id: str) -> str:
        """The endpoint's own key, from the runtime."""
        return str(self._call("GET", f"/endpoints/{endpoint_id}/key")["api_key"])

    def route_metrics(self, endpoint_id: str, window: str) -> dict[str, Any] | None:
        """The runtime's per-route metrics of the endpoint over `window`."""
        return self._call("GET", f"/endpoints/{endpoint_id}/metrics", params={"window": window})

    def sample_workers(self, endpoint_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Nothing: the runtime records workers over time itself (its metrics API)."""
        return {}

    def read_bill(self, endpoint_id: str, start: str, end: str) -> list[dict[str, Any]] | None:
        """None: the local runtime bills nothing (its cost figures are estimates at RunPod prices)."""
        return None

    def price_table(self) -> PriceTable:
        """The prices shipped with podroute."""
        return load_price_file()

    def worker_logs(self, endpoint_id: str, follow: bool) -> Iterator[dict[str, Any]]:
        """Recent worker log lines; with `follow`, the runtime's event stream of new ones."""
        path = f"/endpoints/{endpoint_id}/logs"
        if not follow:
            yield from self._call("GET", path)["lines"]
            return
        # the runtime sends a keep-alive comment every 15 s: a 60 s silence means it is gone
        timeout = httpx.Timeout(30, read=60)
        try:
            with self._http.stream(
                "GET", f"/control{path}", params={"follow": "1"}, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise DeployError(f"the runtime answered {response.status_code}: {response.text[:300]}")
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        entry: dict[str, Any] = orjson.loads(line[6:])
                        yield entry
        except httpx.TransportError as error:
            raise ProviderUnavailableError(f"lost the local runtime at {self.base_url} ({error})") from None

    def list_secrets(self) -> list[SecretInfo]:
        """The runtime's secrets (names and metadata; the control API never answers a value)."""
        return [secret_info(raw) for raw in self._call("GET", "/secrets")["secrets"]]

    def add_secret(
        self, name: str, value: str, description: str = "", *, replace: bool = False
    ) -> SecretInfo:
        """Store a secret in the runtime (it encrypts it); `replace` overwrites one of that name."""
        check_secret_name(name)
        payload = {"name": name, "value": value, "description": description}
        if replace:
            return secret_info(self._call("PUT", f"/secrets/{name}", json=payload))
        return secret_info(self._call("POST", "/secrets", json=payload))

    def delete_secret(self, name: str) -> None:
        """Remove a secret from the runtime."""
        check_secret_name(name)
        try:
            self._call("DELETE", f"/secrets/{name}")
        except EndpointNotFoundError:
            raise DeployError(
                f"the local runtime has no secret {name!r}; 'podroute secret list ENV' shows the names"
            ) from None

    def wait_until_ready(
        self, endpoint: ActualEndpoint, timeout_s: float, progress: Progress
    ) -> ActualEndpoint:
        """Wait for a ready worker of the serving release and `/ping` 200 through the gateway."""
        key = self.api_key(endpoint.id)
        deadline = time.monotonic() + timeout_s
        since = time.time() - 1.0
        last_line = ""
        while time.monotonic() < deadline:
            status = self.status(endpoint.id)
            release = status.details["release"]
            workers = [w for w in status.details["workers"] if w["release"] == release]
            line = ", ".join(f"{w['id']} {w['state']}" for w in workers) or "starting a worker"
            if line != last_line:
                progress(f"  workers: {line}")
                last_line = line
            failures = [
                f
                for f in status.details.get("failures", [])
                if f.get("release") == release and f["at"] >= since
            ]
            ready = any(w["state"] == "ready" for w in workers)
            if failures and not ready:
                failure = failures[-1]
                log = "\n".join(f"    | {entry}" for entry in failure.get("log", [])[-10:])
                raise DeployError(
                    f"a worker failed: {failure['reason']}" + (f"\n  its last output:\n{log}" if log else "")
                )
            if ready and ping_through_gateway(status.url, key) == 200:
                return status
            if not ready:
                ping_through_gateway(status.url, key, timeout=0.5)
            time.sleep(self.poll_interval_s)
        raise DeployError(f"the endpoint did not become healthy within {timeout_s:.0f}s")


def actual_from_runtime(body: Mapping[str, Any]) -> ActualEndpoint:
    """An `ActualEndpoint` from the runtime's description of an endpoint."""
    releases = [
        ReleaseInfo(
            number=int(r.get("number", index + 1)),
            build=str(r["build"]),
            config=dict(r.get("config") or {}),
            deployed_by=str(r.get("deployed_by", "")),
            created_at=float(r.get("created_at", 0.0)),
        )
        for index, r in enumerate(body.get("releases", []))
    ]
    number = int(body.get("release_number", releases[-1].number if releases else 0))
    serving: dict[str, Any] = {**body.get("scaling", {}), "env_keys": list(body.get("env_keys", []))}
    serving["build"] = body.get("build", "")
    counts = dict(body.get("counts", {}))
    return ActualEndpoint(
        id=str(body["id"]),
        name=str(body.get("name", "")),
        url=str(body["url"]),
        labels=dict(body.get("labels") or {}),
        serving=serving,
        release=next((r for r in releases if r.number == number), None),
        releases=releases,
        workers={str(k): int(v) for k, v in counts.items()},
        overrides=dict(body.get("overrides") or {}),
        details=dict(body),
    )
