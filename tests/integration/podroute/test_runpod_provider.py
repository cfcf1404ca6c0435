"""The RunPod provider against the fake RunPod (real Hypercorn on loopback), over both APIs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podroute.build import BuildResult
from podroute.client import RetryPolicy
from podroute.deploy.environments import Environments
from podroute.deploy.model import DesiredConfig, Target, endpoint_name, resolve_config
from podroute.deploy.rollout import find_endpoint, roll_out
from podroute.providers.base import DeployError, EndpointNotFoundError, ProviderUnavailableError
from podroute.providers.factory import provider_for
from podroute.providers.runpod.http import (
    RunPodApiError,
    RunPodAuthError,
    RunPodSettings,
    RunPodUnavailableError,
)
from podroute.providers.runpod.provider import RunPodProvider
from podroute.providers.runpod.records import EndpointConfig, TemplateSpec
from podroute.providers.runpod.rest import RestV2Api
from podroute.resources import CpuLoadBalancerSlsResource, LoadBalancerSlsResource
from tests.fake_runpod import API_KEY, FakeRunPod, fake_runpod_server

APIS = ["rest", "graphql"]
TARGET = Target("acme", "prod", "svc", "api")
NAME = endpoint_name(TARGET)


def config_of(build: BuildResult, **env: str) -> DesiredConfig:
    """The build's declared config, with `env` recorded as overrides."""
    return resolve_config(build.manifest["resource"], {"env": env} if env else {})


def create(provider: RunPodProvider, build: BuildResult, **env: str) -> Any:
    return provider.create(TARGET, build, config_of(build, **env), deployed_by="cli:test")


@pytest.fixture
def fake() -> Iterator[tuple[FakeRunPod, str]]:
    with fake_runpod_server(FakeRunPod(cold_start_s=0.1, no_worker_timeout_s=0.5)) as served:
        yield served


def settings_for(base: str, api: str, **overrides: Any) -> RunPodSettings:
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "api": api,
        "graphql_url": f"{base}/graphql",
        "rest_url": f"{base}/v2",
        "serverless_url": f"{base}/dataplane/v2",
        "endpoint_url": f"{base}/lb/{{id}}",
        "timeout_s": 2.0,
        "retry": RetryPolicy(attempts=6, backoff_base_s=0.01, backoff_max_s=0.05, jitter=False),
        "poll_interval_s": 0.05,
        "template_release_wait_s": 3.0,
        **overrides,
    }
    return RunPodSettings(**values)


def make_build(
    tmp_path: Path, image: str = "ghcr.io/acme/api:1", gpu: bool = False, tag: str = "a"
) -> BuildResult:
    if gpu:
        resource = LoadBalancerSlsResource(name="api", gpus=["ADA_24", "NVIDIA L4"], workersMax=2)
    else:
        resource = CpuLoadBalancerSlsResource(
            name="api", instanceIds=["cpu3c-2-4"], workersMax=2, env={"MODE": "fast"}
        )
    config = resource.to_config()
    config["imageName"] = image
    directory = tmp_path / f"build-{tag}"
    directory.mkdir(exist_ok=True)
    (directory / "artifact.tar.gz").write_bytes(b"artifact " + tag.encode())
    manifest = {
        "service": "svc",
        "resource": config,
        "compute": resource.compute,
        "target": "services.svc.endpoint:api",
        "artifact_sha256": (tag * 64)[:64],
    }
    return BuildResult("svc", "api", directory, manifest, cached=False)


def lb_get(base: str, endpoint_id: str, path: str) -> httpx.Response:
    return httpx.get(
        f"{base}/lb/{endpoint_id}{path}", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5
    )


@pytest.mark.parametrize("api", APIS)
def test_lifecycle_create_ready_scale_update_rollback_delete(
    fake: tuple[FakeRunPod, str], tmp_path: Path, api: str
) -> None:
    state, base = fake
    provider = RunPodProvider(settings_for(base, api))
    first = make_build(tmp_path, "ghcr.io/acme/api:1", tag="a")
    lines: list[str] = []

    info = create(provider, first, EXTRA="1")
    assert provider.api_key(info.id) == API_KEY and info.url == f"{base}/lb/{info.id}"
    assert info.labels["podroute.project"] == "acme" and info.name == NAME
    assert info.release is not None and info.release.deployed_by == "cli:test"
    assert info.release.config["env_keys"] == ["EXTRA", "MODE"] and "fast" not in repr(info.release)
    ready = provider.wait_until_ready(info, 10, lines.append)
    assert ready.details["ready"] >= 1 and any("ready" in line for line in lines)
    assert lb_get(base, info.id, "/ping").status_code == 200
    assert lb_get(base, info.id, "/hello").json()["image"] == "ghcr.io/acme/api:1"

    scaled = provider.scale(info.id, {"workersMax": 4, "idleTimeout": 30})
    assert scaled.details["scaling"] == {
        "workersMin": 0,
        "workersMax": 4,
        "idleTimeout": 30,
        "scalerValue": 4,
    }
    record = state.endpoints[info.id]
    assert record.config["workersMax"] == 4 and record.config["idleTimeout"] == 30
    assert record.compute == "cpu"  # the full record survived the update

    second = make_build(tmp_path, "ghcr.io/acme/api:2", tag="b")
    overrides = provider.status(info.id).overrides
    assert overrides == {"workersMax": 4, "idleTimeout": 30}
    config = resolve_config(second.manifest["resource"], overrides)
    updated = provider.update(info.id, second, config, deployed_by="dashboard:ann")
    assert updated.details["release"] == 2 and updated.details["scaling"]["workersMax"] == 4
    provider.wait_until_ready(updated, 10, lines.append)
    assert lb_get(base, info.id, "/hello").json() == {
        "method": "GET",
        "path": "/hello",
        "image": "ghcr.io/acme/api:2",
        "release": "2",
    }

    rolled = provider.rollback(info.id)
    assert rolled.details["release"] == 1 and rolled.details["build"] == first.sha256
    assert rolled.details["scaling"]["workersMax"] == 2 and rolled.overrides == {}  # release 1's config
    provider.wait_until_ready(rolled, 10, lines.append)
    assert lb_get(base, info.id, "/hello").json()["image"] == "ghcr.io/acme/api:1"
    history = provider.history(info.id)
    assert [(h["release"], h["current"]) for h in history] == [(1, True), (2, False)]
    with pytest.raises(DeployError, match="no earlier"):
        provider.rollback(info.id)

    provider.delete(info.id)
    assert state.endpoints == {} and state.templates == {}
    assert state.unsafe_deletes == []
    provider.delete(info.id)  # deleting again is a no-op


@pytest.mark.parametrize("api", APIS)
def test_gpu_endpoint_carries_pools_and_exclusions(
    fake: tuple[FakeRunPod, str], tmp_path: Path, api: str
) -> None:
    state, base = fake
    provider = RunPodProvider(settings_for(base, api))
    info = create(provider, make_build(tmp_path, gpu=True))
    config = info.details["config"]
    assert config["gpu_pools"] == ["ADA_24", "AMPERE_24"]
    assert config["gpu_excluded"] == ["NVIDIA RTX A5000", "NVIDIA GeForce RTX 3090"]
    assert state.endpoints[info.id].type == "LB"
    provider.delete(info.id)


@pytest.mark.parametrize("api", APIS)
def test_create_survives_faults_and_never_duplicates(
    fake: tuple[FakeRunPod, str], tmp_path: Path, api: str
) -> None:
    state, base = fake
    create_template = "saveTemplate" if api == "graphql" else "POST /v2/templates"
    create_endpoint = "saveEndpoint" if api == "graphql" else "POST /v2/serverless"
    state.inject("429", create_template, retry_after="0")
    state.inject("drop", create_template)  # applied, then the answer is lost
    state.inject("drop", create_endpoint, after=False)  # lost before it was applied
    state.inject("500", create_endpoint)  # applied, then a 500
    state.inject("slow", "endpoints" if api == "graphql" else "GET /v2/serverless", delay_s=2.5)
    provider = RunPodProvider(settings_for(base, api))
    build = make_build(tmp_path)

    info = create(provider, build)
    again = create(provider, build)  # a redelivered task runs create again
    assert again.id == info.id
    assert len(state.endpoints) == 1 and len(state.templates) == 1
    assert state.faults == []

    state.inject("drop", "saveEndpoint" if api == "graphql" else "PATCH /v2/serverless")
    state.inject("500", "saveEndpoint" if api == "graphql" else "PATCH /v2/serverless")
    second = make_build(tmp_path, "ghcr.io/acme/api:2", tag="b")
    provider.update(info.id, second, config_of(second), deployed_by="cli:test")
    provider.update(info.id, second, config_of(second), deployed_by="cli:test")
    assert len(state.endpoints) == 1 and len(state.templates) == 2

    state.inject("drop", "deleteEndpoint" if api == "graphql" else "DELETE /v2/serverless")
    provider.delete(info.id)
    assert state.endpoints == {} and state.templates == {}


def test_rate_limit_waits_for_retry_after(fake: tuple[FakeRunPod, str]) -> None:
    state, base = fake
    state.inject("429", "GET /v2/serverless", retry_after="1")
    api = RestV2Api(settings_for(base, "rest"))
    started = time.monotonic()
    assert api.list_endpoints() == []
    assert time.monotonic() - started >= 0.9
    assert state.count("GET /v2/serverless") == 2


def test_persistent_failure_is_reported_after_the_retries(fake: tuple[FakeRunPod, str]) -> None:
    state, base = fake
    state.inject("500", "GET /v2/templates", times=10)
    api = RestV2Api(settings_for(base, "rest"))
    with pytest.raises(RunPodUnavailableError, match=r"list templates still failing after 6 tries.*500"):
        api.list_templates()


@pytest.mark.parametrize("api", APIS)
def test_bad_key_says_what_to_do(fake: tuple[FakeRunPod, str], tmp_path: Path, api: str) -> None:
    _, base = fake
    provider = RunPodProvider(settings_for(base, api, api_key="rpa_WRONG"))
    with pytest.raises(RunPodAuthError, match="RUNPOD_API_KEY") as caught:
        create(provider, make_build(tmp_path))
    assert caught.value.status == 401


def test_v2_validation_errors_name_the_field(fake: tuple[FakeRunPod, str]) -> None:
    _, base = fake
    api = RestV2Api(settings_for(base, "rest"))
    template = api.create_template("t", TemplateSpec(image="ghcr.io/acme/api:1", env={}, compute="gpu"))
    bad = EndpointConfig(compute="gpu", gpu_pools=("NOT_A_POOL",), idle_timeout=0)
    with pytest.raises(RunPodApiError, match=r"422.*\$\.gpu\.pools: unknown pool 'NOT_A_POOL'") as caught:
        api.create_endpoint("x", bad, template)
    assert "$.workers.idleTimeout: must be between 1 and 3600" in caught.value.errors


@pytest.mark.parametrize("api", APIS)
def test_quota_error_from_runpod_is_surfaced(fake: tuple[FakeRunPod, str], tmp_path: Path, api: str) -> None:
    _, base = fake
    provider = RunPodProvider(settings_for(base, api))
    info = create(provider, make_build(tmp_path))
    with pytest.raises(DeployError, match=r"workers quota \(30\)"):
        provider.scale(info.id, {"workersMax": 31})
    with pytest.raises(DeployError, match=r"workersMin \(3\) must not exceed workersMax \(2\)"):
        provider.scale(info.id, {"workersMin": 3})
    with pytest.raises(DeployError, match="workersMaxx: unknown setting"):
        provider.scale(info.id, {"workersMaxx": 1})


def test_cpu_instance_too_small_for_v2_says_what_to_do(fake: tuple[FakeRunPod, str], tmp_path: Path) -> None:
    state, base = fake
    build = make_build(tmp_path)
    build.manifest["resource"]["instanceIds"] = ["cpu3c-1-2"]
    with pytest.raises(DeployError, match="PODROUTE_RUNPOD_API=graphql"):
        create(RunPodProvider(settings_for(base, "rest")), build)
    info = create(RunPodProvider(settings_for(base, "graphql")), build)
    assert state.endpoints[info.id].config["instanceIds"] == ["cpu3c-1-2"]


def test_missing_image_prints_the_docker_commands(fake: tuple[FakeRunPod, str], tmp_path: Path) -> None:
    _, base = fake
    build = make_build(tmp_path, image="")
    provider = RunPodProvider(settings_for(base, "rest"))
    with pytest.raises(DeployError) as caught:
        provider.upload(build)
    message = str(caught.value)
    assert f"tar -xzf {build.artifact} -C {build.directory / 'context'}" in message
    assert f"docker build --platform linux/amd64 -t docker.io/your_user/svc-api:{'a' * 12}" in message
    assert f"docker push docker.io/your_user/svc-api:{'a' * 12}" in message
    assert "--image svc/api=IMAGE" in message
    provider.images[build.sha256] = "ghcr.io/acme/pushed@sha256:" + "0" * 64
    assert provider.image_for(build).startswith("ghcr.io/acme/pushed@")


@pytest.mark.parametrize("api", APIS)
def test_api_key_never_logged_or_shown(
    fake: tuple[FakeRunPod, str], tmp_path: Path, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    state, base = fake
    caplog.set_level(logging.DEBUG)
    settings = settings_for(base, api)
    provider = RunPodProvider(settings)
    state.inject("500", "GET /v2/serverless" if api == "rest" else "endpoints", times=2)
    info = create(provider, make_build(tmp_path))
    provider.wait_until_ready(info, 10, logging.getLogger("test").info)
    shown = [repr(settings), repr(provider), repr(provider.api), repr(info), str(info)]
    state.inject("500", "", times=50)
    with pytest.raises(DeployError) as caught:
        provider.status(info.id)
    shown.append(str(caught.value))
    with pytest.raises(DeployError) as refused:
        RunPodProvider(settings_for(base, api, api_key=API_KEY + "x")).status(info.id)
    shown.append(str(refused.value))
    assert caplog.records and "retrying" in caplog.text
    for text in [caplog.text, *shown]:
        assert API_KEY not in text


def test_delete_waits_while_runpod_still_holds_the_template(tmp_path: Path) -> None:
    fake = FakeRunPod(cold_start_s=0.05, template_release_s=0.4)
    with fake_runpod_server(fake) as (state, base):
        provider = RunPodProvider(settings_for(base, "graphql"))
        info = create(provider, make_build(tmp_path))
        provider.delete(info.id)
        assert state.endpoints == {} and state.templates == {}
        assert state.count("graphql deleteTemplate") >= 2


def test_foreign_endpoint_with_the_same_name_is_not_adopted(
    fake: tuple[FakeRunPod, str], tmp_path: Path
) -> None:
    _, base = fake
    body = {
        "name": NAME,
        "type": "LOAD_BALANCER",
        "image": "someone/else:1",
        "cpu": [{"id": "cpu3c", "vcpuCount": 2}],
        "scaling": {"type": "REQUEST_COUNT", "requestCount": 1},
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert httpx.post(f"{base}/v2/serverless", json=body, headers=headers).status_code == 201
    with pytest.raises(DeployError, match="that PodRoute did not create"):
        create(RunPodProvider(settings_for(base, "rest")), make_build(tmp_path))


def test_rollout_and_cli_provider_use_runpod(
    fake: tuple[FakeRunPod, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, base = fake
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    monkeypatch.setenv("RUNPOD_REST_V2_API_URL", f"{base}/v2")
    monkeypatch.setenv("RUNPOD_SERVERLESS_API_URL", f"{base}/dataplane/v2")
    monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", f"{base}/lb/{{id}}")
    environments = Environments(tmp_path)
    environments.environments["prod"] = {"provider": "runpod", "api": "rest"}
    build = make_build(tmp_path, image="")
    environments.environments["prod"]["images"] = {"svc/api": "ghcr.io/acme/api:7"}
    with provider_for(environments.provider_settings("prod")) as provider:
        assert isinstance(provider, RunPodProvider)
        result = roll_out(provider, TARGET, build, config_of(build), deployed_by="cli:test", timeout_s=10)
        info = result.endpoint
        assert result.created and result.release == 1 and info.url == f"{base}/lb/{info.id}"
        assert state.endpoints[info.id].image == "ghcr.io/acme/api:7"
        assert API_KEY not in repr(info)
    with provider_for(environments.provider_settings("prod")) as provider:
        provider.delete(info.id)
    assert state.endpoints == {} and state.templates == {}


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        "RUNPOD_API_KEY": "secret-key-123",
        "RUNPOD_API_BASE_URL": "http://fake:1/",
        "RUNPOD_ENDPOINT_BASE_URL": "https://api.example.test",
        "PODROUTE_RUNPOD_API": "graphql",
    }
    settings = RunPodSettings.from_env(environ)
    assert settings.graphql_url == "http://fake:1/graphql" and settings.api == "graphql"
    assert settings.url_of("abc") == "https://abc.api.example.test"
    assert "secret-key-123" not in repr(settings)
    with pytest.raises(DeployError, match="RUNPOD_API_KEY is not set"):
        RunPodSettings.from_env({})
    with pytest.raises(DeployError, match="'rest' or 'graphql'"):
        RunPodSettings.from_env({"RUNPOD_API_KEY": "k", "PODROUTE_RUNPOD_API": "v1"})


@pytest.mark.parametrize("api", APIS)
def test_find_lists_own_endpoints_and_errors_are_typed(
    fake: tuple[FakeRunPod, str], tmp_path: Path, api: str
) -> None:
    state, base = fake
    provider = RunPodProvider(settings_for(base, api))
    info = create(provider, make_build(tmp_path))
    found = find_endpoint(provider, TARGET)
    assert found is not None and found.id == info.id
    assert [e.id for e in provider.list_endpoints("acme")] == [info.id]
    assert API_KEY not in repr(found)  # listing never hands out the key
    assert provider.list_endpoints("other-project") == []
    assert find_endpoint(provider, Target("acme", "staging", "svc", "api")) is None
    provider.delete(info.id)
    assert find_endpoint(provider, TARGET) is None
    with pytest.raises(EndpointNotFoundError, match="deploy again"):
        provider.status(info.id)
    state.inject("500", "" if api == "graphql" else "GET /v2/serverless", times=10)
    with pytest.raises(ProviderUnavailableError, match="try again later"):
        find_endpoint(provider, TARGET)
