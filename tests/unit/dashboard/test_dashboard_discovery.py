"""Discovery of a project's services in a child process (real imports, fresh registries)."""

from __future__ import annotations

import os

import pytest

from dashboard.discovery import DiscoveryCache, DiscoveryError, child_environment, fingerprint, run_discovery
from tests.support.dashboard import write_demo_project


async def test_discovery_describes_resources_routes_and_failures(tmp_path):
    project = write_demo_project(tmp_path / "project")
    found = await run_discovery(project, 30)
    assert sorted(r.resource for r in found.resources) == ["demo-cpu", "demo-gpu"]
    cpu = found.find("demo", "demo-cpu")
    assert cpu is not None and cpu.compute == "cpu" and cpu.resource_type == "CpuLiveLoadBalancer"
    assert cpu.config["workersMax"] == 3 and cpu.config["env"] == {"MODE": "demo"}
    echo = next(r for r in cpu.routes if r.path == "/echo")
    assert echo.method == "POST" and echo.summary == "Repeat the text."
    assert set(echo.body_schema["properties"]) == {"text", "times"}
    gpu = found.find("demo", "demo-gpu")
    [item] = gpu.routes
    assert [(p["name"], p["in"], p["required"]) for p in item.parameters] == [
        ("item_id", "path", True),
        ("verbose", "query", False),
    ]
    [error] = found.errors
    assert error.service == "broken" and "broken on purpose" in error.message


async def test_services_folder_comes_from_pyproject(tmp_path):
    project = write_demo_project(tmp_path / "project", broken=False, services_dir="apps")
    found = await run_discovery(project, 30)
    assert {r.service for r in found.resources} == {"demo"}


async def test_printing_user_code_does_not_corrupt_the_result(tmp_path):
    project = write_demo_project(tmp_path / "project", broken=False)
    endpoint = project / "services" / "demo" / "endpoint.py"
    endpoint.write_text("print('{not json')\n" + endpoint.read_text())
    assert len((await run_discovery(project, 30)).resources) == 2


async def test_slow_imports_time_out(tmp_path):
    project = write_demo_project(tmp_path / "project", broken=False)
    (project / "services" / "demo" / "endpoint.py").write_text("import time\ntime.sleep(30)\n")
    with pytest.raises(DiscoveryError, match="took longer than 1s"):
        await run_discovery(project, 1)


async def test_cache_reruns_only_when_files_change(tmp_path):
    project = write_demo_project(tmp_path / "project", broken=False)
    cache = DiscoveryCache(project, 30)
    first = await cache.get()
    assert await cache.get() is first
    endpoint = project / "services" / "demo" / "endpoint.py"
    endpoint.write_text(endpoint.read_text().replace("workersMax=3", "workersMax=4"))
    os.utime(endpoint, ns=(0, 10**18))
    second = await cache.get()
    assert second is not first and second.find("demo", "demo-cpu").config["workersMax"] == 4
    assert second.fingerprint == fingerprint(project)


def test_child_environment_drops_dashboard_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHBOARD_SECRET_KEY", "x")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/db")
    env = child_environment(tmp_path)
    assert "DASHBOARD_SECRET_KEY" not in env and "DATABASE_URL" not in env
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path)
