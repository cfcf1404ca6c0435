"""Image references, the docker build/push commands, and choosing the RunPod provider."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from dashboard.images import (
    ImageError,
    build_and_push,
    check_image_reference,
    docker_plan,
    docker_unavailable,
)
from dashboard.settings import DashboardSettings
from dashboard.worker.context import ProviderSetupError, is_transient
from dashboard.worker.context import dashboard_provider as provider_for
from podroute.build import BuildResult
from podroute.providers.base import DeployError, ProviderUnavailableError
from podroute.providers.local import LocalRuntimeProvider
from podroute.providers.runpod.http import RunPodAuthError, RunPodUnavailableError
from podroute.providers.runpod.provider import RunPodProvider

SHA = "0123456789abcdef" * 4
DIGEST = "sha256:" + "cd" * 32


def make_build(tmp_path: Path) -> BuildResult:
    directory = tmp_path / "build"
    directory.mkdir()
    with tarfile.open(directory / "artifact.tar.gz", "w:gz") as archive:
        data = b"FROM python:3.12-slim\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    manifest = {"service": "Lab", "resource": {"name": "api"}, "compute": "cpu", "artifact_sha256": SHA}
    return BuildResult("Lab", "api", directory, manifest, cached=True)


@pytest.mark.parametrize(
    "reference",
    [
        "ghcr.io/acme/api:v1",
        "acme/api:3f2a9c1b7d4e",
        "localhost:5000/acme/api:1.0-rc.1",
        f"registry.example.com/team/api@{DIGEST}",
        f"ghcr.io/acme/api:v1@{DIGEST}",
    ],
)
def test_pinned_references_are_accepted(reference: str) -> None:
    assert check_image_reference(f" {reference}\n") == reference


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("", "enter the image reference"),
        ("ghcr.io/acme/api", "no tag or digest"),
        ("https://ghcr.io/acme/api:v1", "not an image reference"),
        ("ghcr.io/Acme/api:v1", "not an image reference"),
        ("acme/api:v1; rm -rf /", "not an image reference"),
        ("acme/api@sha256:short", "not an image reference"),
        ("a/" * 300 + "b:1", "at most 500"),
    ],
)
def test_bad_references_say_what_is_wrong(reference: str, problem: str) -> None:
    with pytest.raises(ImageError, match=problem):
        check_image_reference(reference)


def test_docker_plan_builds_pushes_and_reads_the_digest(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    plan = docker_plan(build, "ghcr.io/acme/")
    image = f"ghcr.io/acme/lab-api:{SHA[:12]}"
    context = str(tmp_path / "build" / "context")
    assert plan.image == image and plan.context == context
    assert plan.commands == (
        ("docker", "build", "--platform", "linux/amd64", "-t", image, context),
        ("docker", "push", image),
        ("docker", "image", "inspect", "--format", "{{index .RepoDigests 0}}", image),
    )


class Recorder:
    """Stands in for subprocess.run: records commands, answers from a table by sub-command."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.commands: list[tuple[str, ...]] = []

    def __call__(self, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(tuple(command))
        code, out, err = self.answers.get(command[1], (0, "", ""))
        return subprocess.CompletedProcess(list(command), code, out, err)


def test_build_and_push_returns_the_pushed_digest(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    run = Recorder({"push": (0, f"v1: digest: {DIGEST} size: 1234\n", "")})
    lines: list[str] = []
    image = build_and_push(build, "localhost:5000/acme", lines.append, run=run)
    assert image == f"localhost:5000/acme/lab-api@{DIGEST}"
    assert [c[1] for c in run.commands] == ["build", "push", "image"]
    assert (tmp_path / "build" / "context" / "Dockerfile").read_text().startswith("FROM python")
    assert lines[0].startswith("$ docker build --platform linux/amd64 -t localhost:5000/acme/lab-api:")


def test_build_and_push_failure_says_what_to_do(tmp_path: Path) -> None:
    run = Recorder({"push": (1, "", "denied: requested access to the resource is denied")})
    with pytest.raises(
        ImageError, match=r"`docker push` failed \(exit 1\): denied.*paste an image reference"
    ):
        build_and_push(make_build(tmp_path), "ghcr.io/acme", lambda line: None, run=run)


def test_docker_unavailable_names_the_reason() -> None:
    assert "not installed" in str(docker_unavailable("no-such-docker-cli-podroute"))
    down = Recorder(
        {"version": (1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock")}
    )
    message = docker_unavailable("sh", run=down)
    assert message is not None and "Cannot connect to the Docker daemon" in message
    assert "paste the image reference" in message
    assert docker_unavailable("sh", run=Recorder({"version": (0, "27.1.1\n", "")})) is None


def test_provider_for_runpod_reads_base_urls_from_env_and_takes_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNPOD_REST_V2_API_URL", "http://127.0.0.1:9/v2")
    monkeypatch.setenv("RUNPOD_ENDPOINT_BASE_URL", "http://127.0.0.1:9/lb/{id}")
    settings = DashboardSettings(
        data_dir=tmp_path, runpod_api_key="rpa_unit", providers=(("staging", "local"),)
    )
    provider = provider_for(settings, "production", {SHA: "ghcr.io/acme/api:v1"})
    assert isinstance(provider, RunPodProvider)
    assert provider.settings.rest_url == "http://127.0.0.1:9/v2"
    assert provider.settings.url_of("abc") == "http://127.0.0.1:9/lb/abc"
    assert provider.image_for(make_build(tmp_path)) == "ghcr.io/acme/api:v1"
    assert "rpa_unit" not in repr(provider) and "rpa_unit" not in repr(provider.settings)
    with pytest.raises(DeployError, match="no runtime token"):
        provider_for(settings, "staging")
    unset = DashboardSettings(data_dir=tmp_path, providers=(("production", "runpod"),))
    with pytest.raises(ProviderSetupError, match="RUNPOD_API_KEY is not set"):
        provider_for(unset, "production")
    local = DashboardSettings(data_dir=tmp_path, runtime_token="t")
    assert type(provider_for(local, "production")) is LocalRuntimeProvider


def test_failures_are_classified_by_type_not_text() -> None:
    assert is_transient(ProviderUnavailableError("anything"))
    assert is_transient(RunPodUnavailableError("RunPod list endpoints still failing"))
    assert not is_transient(DeployError("cannot reach the runtime"))  # the words no longer matter
    assert not is_transient(RunPodAuthError("refused", 401))


def test_publish_without_docker_keeps_the_build_and_says_why(tmp_path: Path) -> None:
    from dashboard.db import create_sync_sessions
    from dashboard.models import Base, Build, Endpoint
    from dashboard.worker.builds import publish_image
    from dashboard.worker.context import Context

    settings = DashboardSettings(data_dir=tmp_path, docker_registry="ghcr.io/acme")
    sessions = create_sync_sessions(settings.url)
    with sessions.begin() as session:
        Base.metadata.create_all(session.connection())
        endpoint = Endpoint(name="lab", compute="cpu")
        session.add(endpoint)
        session.flush()
        session.add(Build(endpoint_id=endpoint.id, status="succeeded", directory=str(tmp_path), log=[]))
    publish_image(Context(settings, sessions), 1, unavailable=lambda: "no Docker engine answers (down)")
    with sessions() as session:
        build = session.get(Build, 1)
        assert build is not None and build.status == "succeeded" and build.image == ""
        assert build.log == ["image not built: no Docker engine answers (down)"]
