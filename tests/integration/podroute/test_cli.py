"""The `podroute` command: serving a user module the way a worker does, and refusing bad code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO_ROOT, cli_server, free_port

USER_MODULE = """
from podroute import CpuLoadBalancerSlsResource, remote
import asyncio
api = CpuLoadBalancerSlsResource(name="users")

@remote(api, method="GET", path="/users")
async def list_users(limit: int = 10, active: bool = True):
    return {"limit": limit, "active": active}

@remote(api, method="POST", path="/users")
async def create_user(name: str, age: int = 30):
    return {"name": name, "age": age}

@remote(api, method="DELETE", path="/users/{user_id}")
async def delete_user(user_id: int):
    return {"deleted": user_id}

@remote(api, method="POST", path="/validate")
async def validate(text: str):
    raise ValueError("text is not valid: say something")

@remote(api, method="GET", path="/fail")
async def fail():
    raise RuntimeError("internal secret")

@remote(api, method="GET", path="/slow")
async def slow(seconds: float = 1.0):
    await asyncio.sleep(seconds)
    return {"slept": seconds}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "userapp.py").write_text(USER_MODULE)
    return tmp_path


def serve_env(port: int, **extra: str) -> dict[str, str]:
    return {"PORT": str(port), "HOST": "127.0.0.1", "PODROUTE_MAX_BODY_BYTES": "2048", **extra}


def test_serve_answers_every_status(project: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with cli_server(["serve", "userapp"], project, serve_env(port), ready_url=f"{base}/ping") as server:
        checks = [
            (httpx.get(f"{base}/users?limit=3"), 200),
            (httpx.post(f"{base}/users", json={"name": "ann"}), 200),
            (httpx.delete(f"{base}/users/7"), 200),
            (httpx.post(f"{base}/validate", json={"text": "x"}), 400),
            (httpx.get(f"{base}/missing"), 404),
            (httpx.patch(f"{base}/users"), 405),
            (httpx.post(f"{base}/users", content=b"x" * 4096), 413),
            (httpx.post(f"{base}/users", json={"name": 5, "extra": 1}), 422),
            (httpx.get(f"{base}/fail"), 500),
        ]
        output = server.stop()
    for response, status in checks:
        assert response.status_code == status, response.text
        if status >= 400:
            assert response.headers["content-type"] == "application/problem+json"
            assert "Traceback" not in response.text and "internal secret" not in response.text
    assert checks[0][0].json() == {"limit": 3, "active": True}
    assert checks[2][0].json() == {"deleted": 7}
    assert checks[3][0].json()["detail"] == "text is not valid: say something"
    log_lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(e["logger"] == "podroute.access" and "GET /users" in e["msg"] for e in log_lines)
    errors = [e for e in log_lines if e["level"] == "ERROR"]
    assert errors and "internal secret" in errors[0]["exc"]


def test_port_health_is_bound_too(project: Path) -> None:
    port, health = free_port(), free_port()
    env = serve_env(port, PORT_HEALTH=str(health))
    with cli_server(["serve", "userapp:users"], project, env, ready_url=f"http://127.0.0.1:{health}/ping"):
        assert httpx.get(f"http://127.0.0.1:{port}/ping").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/users").status_code == 200


def test_sigterm_lets_requests_in_flight_finish(project: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    results: list[httpx.Response] = []
    with cli_server(["serve", "userapp"], project, serve_env(port), ready_url=f"{base}/ping") as server:
        request = threading.Thread(
            target=lambda: results.append(httpx.get(f"{base}/slow?seconds=1.5", timeout=10))
        )
        request.start()
        threading.Event().wait(0.5)
        server.stop()
        request.join(10)
        assert server.process.returncode == 0
    assert results and results[0].status_code == 200 and results[0].json() == {"slept": 1.5}


@pytest.mark.parametrize("server_name", ["uvicorn", "granian"])
def test_other_servers(project: Path, server_name: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["serve", "userapp", "--server", server_name, "--no-access-log"]
    with cli_server(args, project, serve_env(port), ready_url=f"{base}/ping"):
        assert httpx.get(f"{base}/users?limit=1").json() == {"limit": 1, "active": True}
        assert httpx.post(f"{base}/validate", json={"text": "x"}).status_code == 400
        assert httpx.get(f"{base}/fail").status_code == 500


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podroute", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


BAD_DECLARATIONS = {
    "/ping": ('@remote(api, method="GET", path="/ping")', "handler: path '/ping' is reserved"),
    "/execute": ('@remote(api, method="POST", path="/execute")', "handler: path '/execute' is reserved"),
    "FETCH": ('@remote(api, method="FETCH", path="/x")', "handler: method 'FETCH' is not supported"),
    "users": (
        '@remote(api, method="GET", path="users")',
        "handler: path 'users' must start with '/'",
    ),
    "duplicate": (
        '@remote(api, method="GET", path="/first")\nasync def first(): ...\n'
        '@remote(api, method="GET", path="/first")',
        "handler: GET /first is already declared by first",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DECLARATIONS))
def test_bad_declarations_fail_at_import_naming_the_function(tmp_path: Path, case: str) -> None:
    decorator, message = BAD_DECLARATIONS[case]
    source = "from podroute import CpuLiveLoadBalancer, remote\napi = CpuLiveLoadBalancer(name='x')\n"
    (tmp_path / "bad.py").write_text(source + decorator + "\nasync def handler(): ...\n")
    result = run_cli(["serve", "bad", "--port", str(free_port())], tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "bad.py" in result.stderr and "Traceback" not in result.stderr


def test_import_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import os\n\nundefined_name + 1\n")
    result = run_cli(["serve", "broken"], tmp_path)
    assert result.returncode == 2
    assert "broken.py, line 3" in result.stderr and "NameError" in result.stderr


def test_unknown_module_and_resource(tmp_path: Path, project: Path) -> None:
    missing = run_cli(["serve", "nowhere"], tmp_path)
    assert missing.returncode == 2 and "no module named 'nowhere'" in missing.stderr
    wrong = run_cli(["serve", "userapp:other"], project)
    assert wrong.returncode == 2 and "no resource 'other'; it declares: users" in wrong.stderr


def test_help_documents_every_command() -> None:
    result = run_cli(["--help"], REPO_ROOT)
    assert result.returncode == 0 and "serve" in result.stdout and "dev" in result.stdout
    serve_help = run_cli(["serve", "--help"], REPO_ROOT).stdout
    for word in ("PORT_HEALTH", "LOG_LEVEL", "--server", "HEALTH_CHECK_PATH"):
        assert word in serve_help
    console_script = str(Path(sys.executable).parent / "podroute")
    console = subprocess.run([console_script, "--help"], capture_output=True, text=True, check=False)
    assert console.returncode == 0 and console.stdout == result.stdout


def test_log_level_controls_output(project: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = serve_env(port, LOG_LEVEL="warning")
    with cli_server(["serve", "userapp"], project, env, ready_url=f"{base}/ping") as server:
        httpx.get(f"{base}/users")
        output = server.stop()
    assert '"level":"INFO"' not in output


def test_bad_log_level_is_explained(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "podroute", "serve", "userapp"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LOG_LEVEL": "LOUD"},
    )
    assert result.returncode == 2 and "LOG_LEVEL='LOUD' is not one of" in result.stderr
