"""The rollout engine: typed progress events, one endpoint per target, the one undo rule."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import pytest

from podroute.build import BuildResult
from podroute.deploy.model import (
    ActualEndpoint,
    DesiredConfig,
    ReleaseInfo,
    Target,
    endpoint_name,
    resolve_config,
    target_labels,
)
from podroute.deploy.rollout import RolloutEvent, RolloutStep, roll_out, undeploy
from podroute.providers.base import DeployError, EndpointNotFoundError, Progress, ProviderUnavailableError

TARGET = Target("shop", "staging", "cpu", "cpu")


class MemoryProvider:
    """Keeps endpoints in a dict; `healthy` decides whether waiting succeeds."""

    kind = "local"
    scaling_fields = ("workersMin", "workersMax")
    poll_interval_s = 0.0

    def __init__(self, healthy: bool = True) -> None:
        self.endpoints: dict[str, ActualEndpoint] = {}
        self.healthy = healthy
        self.calls: list[str] = []

    def __enter__(self) -> MemoryProvider:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def upload(self, build: BuildResult) -> None:
        self.calls.append("upload")

    def list_endpoints(self, project: str | None = None) -> list[ActualEndpoint]:
        self.calls.append("list")
        return list(self.endpoints.values())

    def _release(self, endpoint: ActualEndpoint, build: BuildResult, config: DesiredConfig) -> ActualEndpoint:
        number = len(endpoint.releases) + 1
        release = ReleaseInfo(number, build.sha256, dict(config.values), "cli:test")
        endpoint.releases.append(release)
        endpoint.release = release
        return endpoint

    def create(
        self, target: Target, build: BuildResult, config: DesiredConfig, *, deployed_by: str
    ) -> ActualEndpoint:
        self.calls.append("create")
        endpoint = ActualEndpoint(
            id=f"ep-{len(self.endpoints) + 1}",
            name=endpoint_name(target),
            url="http://runtime/x",
            labels=target_labels(target),
        )
        self.endpoints[endpoint.id] = endpoint
        return self._release(endpoint, build, config)

    def update(
        self, endpoint_id: str, build: BuildResult, config: DesiredConfig, *, deployed_by: str
    ) -> ActualEndpoint:
        self.calls.append("update")
        return self._release(self.endpoints[endpoint_id], build, config)

    def rollback(self, endpoint_id: str, to_release: int | None = None) -> ActualEndpoint:
        self.calls.append(f"rollback {to_release}")
        endpoint = self.endpoints[endpoint_id]
        endpoint.release = endpoint.releases[(to_release or 1) - 1]
        return endpoint

    def status(self, endpoint_id: str) -> ActualEndpoint:
        if endpoint_id not in self.endpoints:
            raise EndpointNotFoundError(endpoint_id)
        return self.endpoints[endpoint_id]

    def delete(self, endpoint_id: str) -> None:
        self.calls.append("delete")
        del self.endpoints[endpoint_id]

    def wait_until_ready(
        self, endpoint: ActualEndpoint, timeout_s: float, progress: Progress
    ) -> ActualEndpoint:
        progress("worker w-1 starting")
        if not self.healthy:
            raise DeployError("no worker became ready")
        return endpoint

    def scale(self, endpoint_id: str, scaling: Mapping[str, int], *, record: bool = True) -> ActualEndpoint:
        raise AssertionError("a rollout does not scale")


def build_of(tmp_path: Path, sha: str) -> BuildResult:
    manifest = {"artifact_sha256": sha, "resource": {"workersMax": 2}}
    return BuildResult("cpu", "cpu", tmp_path, manifest, cached=False)


def config() -> DesiredConfig:
    return resolve_config({"workersMax": 2}, {})


def test_a_new_endpoint_reports_typed_steps_with_the_endpoint_once_it_exists(tmp_path):
    provider = MemoryProvider()
    events: list[RolloutEvent] = []
    result = roll_out(
        provider, TARGET, build_of(tmp_path, "a" * 64), config(), deployed_by="cli:t", progress=events.append
    )
    assert [event.step for event in events] == [
        RolloutStep.UPLOAD,
        RolloutStep.RELEASE,
        RolloutStep.WAIT,
        RolloutStep.NOTE,
    ]
    assert events[1].endpoint is None  # nothing existed yet
    assert events[2].endpoint is not None and events[2].endpoint.id == result.endpoint.id == "ep-1"
    assert events[3].line == "worker w-1 starting" and events[3].endpoint is events[2].endpoint
    assert result.created and result.release == 1


def test_an_existing_endpoint_is_updated_and_named_in_the_release_step(tmp_path):
    provider = MemoryProvider()
    roll_out(provider, TARGET, build_of(tmp_path, "a" * 64), config(), deployed_by="cli:t")
    events: list[RolloutEvent] = []
    result = roll_out(
        provider, TARGET, build_of(tmp_path, "b" * 64), config(), deployed_by="cli:t", progress=events.append
    )
    release = next(event for event in events if event.step is RolloutStep.RELEASE)
    assert release.endpoint is not None and release.endpoint.id == "ep-1"
    assert not result.created and result.release == 2 and list(provider.endpoints) == ["ep-1"]


def test_a_new_endpoint_that_never_gets_healthy_is_deleted(tmp_path):
    provider = MemoryProvider(healthy=False)
    with pytest.raises(DeployError, match="the new endpoint was deleted"):
        roll_out(provider, TARGET, build_of(tmp_path, "a" * 64), config(), deployed_by="cli:t")
    assert provider.endpoints == {} and provider.calls[-1] == "delete"


def test_an_existing_endpoint_gets_its_previous_release_back(tmp_path):
    provider = MemoryProvider()
    roll_out(provider, TARGET, build_of(tmp_path, "a" * 64), config(), deployed_by="cli:t")
    provider.healthy = False
    with pytest.raises(DeployError, match=r"previous release \(#1\) keeps serving"):
        roll_out(provider, TARGET, build_of(tmp_path, "b" * 64), config(), deployed_by="cli:t")
    assert provider.calls[-1] == "rollback 1" and provider.endpoints["ep-1"].release.number == 1


def test_undeploy_deletes_the_endpoint_even_when_reading_it_fails(tmp_path: Path) -> None:
    class Unreadable(MemoryProvider):
        def status(self, endpoint_id: str) -> ActualEndpoint:
            raise ProviderUnavailableError("RunPod answered 503 three times")

    provider = Unreadable()
    endpoint = provider.create(TARGET, build_of(tmp_path, "a" * 64), config(), deployed_by="cli:test")
    cleanup = undeploy(provider, endpoint.id)
    assert provider.endpoints == {} and cleanup.removed == []
    assert "its provider secrets were not looked for (RunPod answered 503 three times)" in cleanup.summary()
    assert undeploy(MemoryProvider(), "ep-gone").summary() == ""  # already gone: nothing to do
