"""`podroute build`: deterministic, cached artifacts with a manifest and a Dockerfile."""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

import pytest

from podroute.build import BuildError, build_project, extract_artifact
from tests.runtime_support import make_lab_project, run_cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_lab_project(tmp_path / "project")
    service = root / "services" / "lab"
    (service / ".env").write_text("RUNPOD_API_KEY=secret-value\n")
    (service / "tests").mkdir()
    (service / "tests" / "test_lab.py").write_text("def test(): ...\n")
    (service / "__pycache__").mkdir()
    (service / "__pycache__" / "endpoint.cpython-311.pyc").write_bytes(b"\0")
    (service / "requirements.txt").write_text("# the lab's own deps\nsix==1.16.0\n")
    return root


def test_building_twice_gives_the_same_artifact(project: Path, tmp_path: Path) -> None:
    first = build_project(project, out=tmp_path / "a", progress=lambda _: None)
    second = build_project(project, out=tmp_path / "b", progress=lambda _: None)
    assert [r.sha256 for r in first] == [r.sha256 for r in second]
    assert first[0].artifact.read_bytes() == second[0].artifact.read_bytes()
    assert not first[0].cached and not second[0].cached


def test_unchanged_sources_come_from_the_cache_fast(project: Path, tmp_path: Path) -> None:
    build_project(project, out=tmp_path / "out", progress=lambda _: None)
    started = time.perf_counter()
    (again,) = build_project(project, out=tmp_path / "out", progress=lambda _: None)
    assert again.cached and time.perf_counter() - started < 0.5
    endpoint = project / "services" / "lab" / "endpoint.py"
    endpoint.write_text(endpoint.read_text().replace("VERSION = 1", "VERSION = 2"))
    (changed,) = build_project(project, out=tmp_path / "out", progress=lambda _: None)
    assert not changed.cached and changed.sha256 != again.sha256


def test_artifact_contents_and_manifest(project: Path, tmp_path: Path) -> None:
    (result,) = build_project(project, out=tmp_path / "out", progress=lambda _: None)
    with tarfile.open(result.artifact) as archive:
        names = archive.getnames()
        assert all(m.mtime == 0 and m.uid == 0 for m in archive.getmembers())
    assert "app/services/lab/endpoint.py" in names and "app/services/__init__.py" in names
    assert "app/podroute/app.py" in names and "Dockerfile" in names and "podroute-manifest.json" in names
    assert not [n for n in names if ".env" in n or "tests/" in n or "__pycache__" in n or n.endswith(".pyc")]
    manifest = result.manifest
    assert manifest["target"] == "services.lab.endpoint:lab"
    assert manifest["resource"]["type"] == "CpuLiveLoadBalancer" and manifest["resource"]["workersMax"] == 3
    assert {(r["method"], r["path"], r["function"]) for r in manifest["routes"]} >= {
        ("GET", "/health", "health"),
        ("POST", "/echo", "echo"),
    }
    assert "six==1.16.0" in manifest["dependencies"] and any(
        d.startswith("quart") for d in manifest["dependencies"]
    )
    assert manifest["startup_hooks"] == ["warm_up"] and manifest["python_version"] == "3.11"
    unpacked = extract_artifact(result.artifact, tmp_path / "unpacked")
    assert unpacked["source_fingerprint"] == manifest["source_fingerprint"]
    dockerfile = (tmp_path / "unpacked" / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and '"services.lab.endpoint:lab"' in dockerfile
    assert "RUN python -m compileall -q /app" in dockerfile  # workers start from bytecode
    assert "secret-value" not in result.artifact.read_bytes().decode("latin-1")


def test_cli_build_reports_each_resource(project: Path) -> None:
    result = run_cli(["build"], project)
    assert result.returncode == 0, result.stderr
    assert "lab/lab: built" in result.stdout
    cached = run_cli(["build", "lab"], project)
    assert "lab/lab: cached" in cached.stdout and "unchanged" in cached.stderr
    assert json.loads(
        next((project / ".podroute" / "builds" / "lab").glob("*/lab/podroute-manifest.json")).read_text()
    )


def test_cli_build_json_is_machine_readable(project: Path) -> None:
    result = run_cli(["build", "--json"], project)
    assert result.returncode == 0, result.stderr
    [build] = json.loads(result.stdout)["builds"]
    assert (build["service"], build["resource"], build["cached"], build["compute"]) == (
        "lab",
        "lab",
        False,
        "cpu",
    )
    assert Path(build["artifact"]).is_file() and len(build["sha256"]) == 64
    assert build["resource_config"]["workersMax"] == 3
    again = json.loads(run_cli(["build", "lab", "--json"], project).stdout)["builds"]
    assert again[0]["cached"] is True and again[0]["sha256"] == build["sha256"]


def test_clear_errors(project: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="unknown service.*nope.*the project has: lab"):
        build_project(project, ["nope"], out=tmp_path / "x", progress=lambda _: None)
    endpoint = project / "services" / "lab" / "endpoint.py"
    endpoint.write_text(endpoint.read_text() + "\nraise_here = 1 / 0\n")
    result = run_cli(["build"], project)
    assert result.returncode == 2
    assert "endpoint.py, line" in result.stderr and "ZeroDivisionError" in result.stderr
    endpoint.write_text(
        endpoint.read_text().replace("raise_here = 1 / 0", "")
        + '\n@remote(api, method="GET", path="/health")\nasync def again() -> None: ...\n'
    )
    duplicate = run_cli(["build"], project)
    assert duplicate.returncode == 2 and "GET /health is already declared by health" in duplicate.stderr


def test_building_another_project_leaves_this_process_as_it_was(project: Path, tmp_path: Path) -> None:
    import importlib
    import sys

    import services.cpu.endpoint as own_cpu

    path_before = list(sys.path)
    build_project(project, out=tmp_path / "out", progress=lambda _: None)
    assert sys.path == path_before
    assert importlib.import_module("services.cpu.endpoint") is own_cpu
    assert "services.lab" not in sys.modules
