"""The one provider protocol: every operation the CLI and the dashboard's tasks need.

A provider holds endpoints (the local runtime, RunPod). It is the source of truth for what is
deployed: each endpoint a tool creates carries the project's marker labels (`target_labels`), is
named by `endpoint_name(target)`, and keeps its releases (build, config without env values, who
released it, when) and its recorded desired overrides. Callers never look at which provider they
hold (no isinstance/getattr): what differs (scaling fields, poll interval, how readiness is
checked, where the API key comes from) is part of the protocol.

Providers are context managers: `with provider_for(settings) as provider: ...` closes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import httpx

from podroute.build import BuildResult
from podroute.cost import PriceTable
from podroute.deploy.model import ActualEndpoint, DesiredConfig, Target
from podroute.secrets import SecretStore

Progress = Callable[[str], None]
"""Receives one human-readable line per rollout step."""


class DeployError(Exception):
    """A deployment step failed; the message says what happened and what to do."""


class ProviderUnavailableError(DeployError):
    """The provider could not be reached, timed out or kept answering 5xx/429: worth retrying later."""


class EndpointNotFoundError(DeployError):
    """The provider has no endpoint with that id (deleting it again is therefore already done)."""


class Provider(SecretStore, Protocol):
    """What every deployment target offers (see the module docstring), its secret store included:
    `list_secrets`, `add_secret`, `delete_secret` (the local runtime's encrypted store, RunPod's
    platform secrets), which env values refer to as `Secret("name")`."""

    @property
    def kind(self) -> str:
        """The provider's kind: "local" or "runpod"."""

    @property
    def scaling_fields(self) -> tuple[str, ...]:
        """The config fields `scale` applies at once, without a new release."""

    @property
    def poll_interval_s(self) -> float:
        """How often a rollout polls `status` while waiting for health."""

    def __enter__(self) -> Self:
        """Use the provider in a `with` block; it is closed at the end."""

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the provider."""

    def close(self) -> None:
        """Release connections."""

    def upload(self, build: BuildResult) -> None:
        """Make a build available to the provider (RunPod: check that it has an image)."""

    def create(
        self, target: Target, build: BuildResult, config: DesiredConfig, *, deployed_by: str
    ) -> ActualEndpoint:
        """Create the target's endpoint (named and marked for it) serving `build` as release 1."""

    def update(
        self, endpoint_id: str, build: BuildResult, config: DesiredConfig, *, deployed_by: str
    ) -> ActualEndpoint:
        """Release `build` with `config` on an existing endpoint (a new release number)."""

    def scale(self, endpoint_id: str, scaling: Mapping[str, int], *, record: bool = True) -> ActualEndpoint:
        """Apply scaling fields at once; `record` also stores them as the endpoint's desired overrides."""

    def rollback(self, endpoint_id: str, to_release: int | None = None) -> ActualEndpoint:
        """Serve release `to_release` (default: the one before the serving one) with its config.

        The recorded overrides are cleared: that release's config is the desired state again.
        """

    def delete(self, endpoint_id: str) -> None:
        """Stop every worker and remove the endpoint (and its release templates); verified by a
        fresh listing. Deleting an endpoint that is already gone succeeds."""

    def status(self, endpoint_id: str) -> ActualEndpoint:
        """What the endpoint serves now, its releases, overrides and workers."""

    def list_endpoints(self, project: str | None = None) -> list[ActualEndpoint]:
        """Every marked endpoint (of `project` when given); unmarked endpoints are never listed."""

    def api_key(self, endpoint_id: str) -> str:
        """The key clients send to the endpoint (local: the endpoint's own; RunPod: the account's)."""

    def wait_until_ready(
        self, endpoint: ActualEndpoint, timeout_s: float, progress: Progress
    ) -> ActualEndpoint:
        """Return once a worker of the serving release is ready and `/ping` through the gateway is
        200; DeployError (with the worker's last output when known) after `timeout_s`."""

    def route_metrics(self, endpoint_id: str, window: str) -> dict[str, Any] | None:
        """Per-route figures over `window` ("15m", "1h", "24h", "7d"): the runtime's metrics answer
        (routes with requests, error rate, p50/p95, and cost); None where the provider records none."""

    def worker_logs(self, endpoint_id: str, follow: bool) -> Iterator[dict[str, Any]]:
        """The endpoint's recent worker log lines (`{"worker", "line", ...}`), and with `follow` the
        new ones as they come; DeployError where the provider keeps no worker logs."""

    def sample_workers(self, endpoint_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Worker counts by state of each endpoint, read now, for a caller that keeps them as a time
        series (RunPod: its health API, one call per endpoint; endpoints gone meanwhile are left
        out). Empty where the provider records usage over time itself (the local runtime)."""

    def read_bill(self, endpoint_id: str, start: str, end: str) -> list[dict[str, Any]] | None:
        """The provider's actual spend on the endpoint between two ISO 8601 times, in hourly
        records (`{startTime, endTime, totalAmount, ...}`); None where nothing is billed (local)."""

    def price_table(self) -> PriceTable:
        """Serverless prices (RunPod: its catalog, the shipped file filling gaps; local: the file)."""


def ping_through_gateway(url: str, api_key: str, timeout: float = 5.0) -> int | None:
    """`GET <url>/ping` with the endpoint's key; like any request it wakes an endpoint at zero."""
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        return httpx.get(f"{url}/ping", headers=headers, timeout=timeout).status_code
    except httpx.HTTPError:
        return None
