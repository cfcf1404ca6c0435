"""Network volumes: a startup hook loads a file from the volume on the local runtime (a host folder
mounted at /runpod-volume), and the volume reaches RunPod's endpoint config (the fake, both APIs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podroute.providers.base import DeployError
from podroute.providers.runpod.provider import RunPodProvider
from podroute.resources import CpuLoadBalancerSlsResource
from podroute.runtime.volumes import can_mount
from tests.fake_runpod import FakeRunPod, fake_runpod_server
from tests.integration.podroute.test_runpod_provider import (
    TARGET,
    config_of,
    create,
    make_build,
    settings_for,
)
from tests.runtime_support import deploy, run_cli, runtime_process

MODEL_SERVICE = """\
import os
from pathlib import Path

from podroute import CpuLiveLoadBalancer, on_startup, remote

api = CpuLiveLoadBalancer(name="model", networkVolumeId="vol-models", workersMax=1)
MODEL: dict[str, str] = {}


@on_startup(api)
def load_model() -> None:
    volume = Path(os.environ.get("RUNPOD_VOLUME_PATH", "/runpod-volume"))
    MODEL["weights"] = (volume / "models" / "weights.txt").read_text()
    MODEL["volume"] = str(volume)


@remote(api, method="GET", path="/model")
async def model() -> dict:
    return {"weights": MODEL["weights"], "volume": MODEL["volume"]}
"""


def test_startup_hook_loads_a_file_from_the_volume(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "services" / "model").mkdir(parents=True)
    (project / "services" / "__init__.py").write_text("")
    (project / "services" / "model" / "__init__.py").write_text("")
    (project / "services" / "model" / "endpoint.py").write_text(MODEL_SERVICE)
    (project / "pyproject.toml").write_text('[tool.podroute]\nservices = "services"\n')
    host = tmp_path / "volume"
    (host / "models").mkdir(parents=True)
    (host / "models" / "weights.txt").write_text("layer-1: 0.5")

    with runtime_process(tmp_path / "runtime", PODROUTE_RUNTIME_VOLUMES=f"vol-models={host}") as runtime:
        entry = deploy(project, runtime, key="model/model")
        answer = httpx.get(
            f"{entry['url']}/model", headers={"Authorization": f"Bearer {entry['api_key']}"}, timeout=30
        ).json()
    assert answer["weights"] == "layer-1: 0.5"
    if can_mount():  # root on Linux: the worker sees the host folder at RunPod's path
        assert answer == {"weights": "layer-1: 0.5", "volume": "/runpod-volume"}
        assert not Path("/runpod-volume/models/weights.txt").exists()  # only inside the worker
    else:  # elsewhere the worker is told where the folder is
        assert answer["volume"] == str(host)


def test_a_volume_the_runtime_lacks_fails_the_deploy_before_creating(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "services" / "model").mkdir(parents=True)
    (project / "services" / "__init__.py").write_text("")
    (project / "services" / "model" / "__init__.py").write_text("")
    (project / "services" / "model" / "endpoint.py").write_text(MODEL_SERVICE)
    (project / "pyproject.toml").write_text('[tool.podroute]\nservices = "services"\n')
    with runtime_process(tmp_path / "runtime") as runtime:
        token_file = str(runtime.data_dir / "token")
        run_cli(["deploy", "new", "test", "--runtime-url", runtime.url, "--token-file", token_file], project)
        sent = run_cli(["deploy", "send", "test", "--timeout", "30"], project)
        assert sent.returncode == 2
        assert "422: network volume 'vol-models' has no host folder on this runtime" in sent.stderr
        assert "--volume vol-models=/path/to/folder" in sent.stderr
        assert runtime.provider().list_endpoints() == []
        assert httpx.get(
            f"{runtime.url}/control/endpoints", headers={"Authorization": f"Bearer {runtime.token}"}
        ).json() == {"endpoints": []}


@pytest.fixture
def fake() -> Iterator[tuple[FakeRunPod, str]]:
    with fake_runpod_server(FakeRunPod(cold_start_s=0.1, no_worker_timeout_s=0.5)) as served:
        yield served


@pytest.mark.parametrize("api", ["rest", "graphql"])
def test_network_volume_reaches_runpod(fake: tuple[FakeRunPod, str], tmp_path: Path, api: str) -> None:
    state, base = fake
    build = make_build(tmp_path)
    volume = CpuLoadBalancerSlsResource(name="api", networkVolumeId="vol-models").to_config()
    build.manifest["resource"]["networkVolumeId"] = volume["networkVolumeId"]
    provider = RunPodProvider(settings_for(base, api))
    info = create(provider, build)
    endpoint = state.endpoints[info.id]
    if api == "rest":
        assert endpoint.config["networkVolumes"] == ["vol-models"]
    else:
        assert endpoint.config["networkVolumeId"] == "vol-models"
    assert info.details["config"]["network_volume_id"] == "vol-models"
    assert info.serving["env_keys"] == ["MODE"]  # the platform's variable is no drift
    [template] = [t for t in state.templates.values() if "__r" in t["name"]]
    assert template["env"]["RUNPOD_VOLUME_PATH"] == "/runpod-volume"
    provider.delete(info.id)

    elsewhere = make_build(tmp_path, tag="b")
    elsewhere.manifest["resource"].update(networkVolumeId="vol-models", volumeMountPath="/data")
    with pytest.raises(DeployError, match="RunPod serverless mounts network volumes at /runpod-volume"):
        provider.create(TARGET, elsewhere, config_of(elsewhere), deployed_by="cli:test")
    assert state.endpoints == {} and state.templates == {}
