"""docker/: every Dockerfile (and each worker Dockerfile `podroute build` generates) passes hadolint,
and the compose file wires the dashboard image as web app, Celery worker and local runtime."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT, STRICT
from tools import lint_dockerfiles

DOCKER = REPO_ROOT / "docker"


@pytest.fixture
def hadolint_available() -> None:
    try:
        lint_dockerfiles.hadolint()
    except SystemExit as missing:
        if STRICT:
            raise AssertionError(str(missing)) from None
        pytest.skip(str(missing))


def test_every_dockerfile_passes_hadolint(hadolint_available: None, tmp_path: Path) -> None:
    generated = lint_dockerfiles.generated_worker_dockerfiles(tmp_path)
    assert [p.name for p in generated] == [
        "worker-cpu.generated.Dockerfile",
        "worker-gpu.generated.Dockerfile",
    ]
    assert "FROM pytorch/pytorch" in generated[1].read_text()
    paths = sorted(DOCKER.glob("*.Dockerfile")) + generated
    assert lint_dockerfiles.lint(paths) == 0


def test_hadolint_fails_on_a_warning(hadolint_available: None, tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text('FROM python:latest\nCMD ["python"]\n')  # DL3007: a warning
    assert lint_dockerfiles.lint([bad]) != 0


def test_dashboard_image_runs_as_a_non_root_user() -> None:
    lines = [line.strip() for line in (DOCKER / "dashboard.Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert lines[-1] == 'CMD ["python", "-m", "dashboard"]'


def test_compose_runs_dashboard_worker_redis_and_runtime() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"dashboard", "worker", "redis", "runtime"} <= set(services)
    for name in ("dashboard", "worker", "runtime", "migrate"):
        assert services[name]["build"]["dockerfile"] == "docker/dashboard.Dockerfile"
    assert services["worker"]["command"][:4] == ["celery", "-A", "dashboard.worker", "worker"]
    assert services["runtime"]["command"][:3] == ["python", "-m", "podroute"]
    assert services["dashboard"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_docker_worker_dockerfiles_match_a_fresh_build() -> None:
    from tools import render_worker_dockerfiles

    rendered = render_worker_dockerfiles.render()
    assert set(rendered) == {DOCKER / "worker-cpu.Dockerfile", DOCKER / "worker-gpu.Dockerfile"}

    def same_python(text: str) -> str:  # the base image follows the building interpreter
        return re.sub(r"python:\d+\.\d+-slim", "python:X.Y-slim", text)

    for path, text in rendered.items():
        assert same_python(path.read_text()) == same_python(text), (
            f"{path.name} drifted: run python tools/render_worker_dockerfiles.py"
        )
    assert "FROM python:" in rendered[DOCKER / "worker-cpu.Dockerfile"]
    assert '"services.gpu.endpoint:gpu"' in rendered[DOCKER / "worker-gpu.Dockerfile"]
