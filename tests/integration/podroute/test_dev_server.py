"""`podroute dev`: services discovered from the project, mounted under prefixes, reloaded on change."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from podroute import AppSettings
from podroute.dev import create_dev_app
from tests.helpers import cli_server, free_port, hypercorn_server

ALPHA = """\
from podroute import CpuLiveLoadBalancer, remote
api = CpuLiveLoadBalancer(name="alpha")

@remote(api, method="GET", path="/hello")
async def hello(name: str = "world") -> dict:
    \"\"\"Say hello from alpha.\"\"\"
    return {"service": "alpha", "hello": name}
"""

BETA = """\
from podroute import LiveLoadBalancer, remote
api = LiveLoadBalancer(name="beta")

@remote(api, method="POST", path="/double")
async def double(value: int) -> dict:
    return {"double": value * 2}

@remote(api, method="GET", path="/hello")
async def hello() -> dict:
    return {"service": "beta"}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text('[tool.podroute]\nservices = "apps"\n')
    for name, source in (("alpha", ALPHA), ("beta", BETA)):
        package = tmp_path / "apps" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "endpoint.py").write_text(source.replace("alpha", name) if name == "alpha" else source)
    (tmp_path / "apps" / "__init__.py").write_text("")
    (tmp_path / "apps" / "not_a_service").mkdir()
    return tmp_path


def test_services_are_mounted_under_their_names(project: Path) -> None:
    app = create_dev_app(project, AppSettings())
    with hypercorn_server(app) as base:
        assert httpx.get(f"{base}/alpha/hello?name=dev").json() == {"service": "alpha", "hello": "dev"}
        assert httpx.post(f"{base}/beta/double", json={"value": 4}).json() == {"double": 8}
        assert httpx.get(f"{base}/beta/hello").json() == {"service": "beta"}
        executed = httpx.post(f"{base}/beta/execute", json={"function": "double", "kwargs": {"value": 1}})
        assert executed.json() == {"result": {"double": 2}}
        assert httpx.get(f"{base}/hello").status_code == 404
        document = httpx.get(f"{base}/openapi.json").json()
        assert document["info"]["title"] == "PodRoute dev server"
        assert document["paths"]["/alpha/hello"]["get"]["tags"] == ["alpha"]
        assert document["paths"]["/beta/double"]["post"]["tags"] == ["beta"]
        assert {"/alpha/hello", "/beta/double", "/beta/hello", "/ping"} <= set(document["paths"])
        home = httpx.get(f"{base}/")
        assert home.headers["content-type"].startswith("text/html")
        assert "/alpha/hello" in home.text and "Say hello from alpha." in home.text and "/docs" in home.text


def test_dev_command_takes_the_next_free_port_and_reloads(project: Path) -> None:
    taken = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", taken))
    blocker.listen(1)
    env = {"FLASH_HOST": "127.0.0.1", "FLASH_PORT": str(taken)}
    try:
        with cli_server(["dev", "--project", str(project)], project, env) as server:
            url = _wait_for_any_port(taken + 1, taken + 20, "/alpha/hello")
            assert httpx.get(url).json()["service"] == "alpha"
            endpoint = project / "apps" / "alpha" / "endpoint.py"
            endpoint.write_text(endpoint.read_text().replace('"service": "alpha"', '"service": "alpha-v2"'))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url).json().get("service") == "alpha-v2":
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            else:
                raise AssertionError("the dev server did not reload the changed service")
            output = server.stop()
    finally:
        blocker.close()
    assert f"port {taken} is in use; using" in output
    assert "changed; reloading" in output


def _wait_for_any_port(first: int, last: int, path: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for port in range(first, last):
            try:
                url = f"http://127.0.0.1:{port}{path}"
                if httpx.get(url, timeout=0.5).status_code == 200:
                    return url
            except httpx.HTTPError:
                continue
        time.sleep(0.2)
    raise AssertionError("the dev server never answered")


def test_no_services_is_a_clear_error(tmp_path: Path) -> None:
    from podroute.discovery import DiscoveryError

    (tmp_path / "services").mkdir()
    with pytest.raises(DiscoveryError, match="no service in .* declares routes"):
        create_dev_app(tmp_path, AppSettings())
