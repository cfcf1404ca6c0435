"""`pip install ./shared` into a fresh virtualenv gives a working `podroute` command."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import httpx

from tests.helpers import REPO_ROOT, free_port, wait_for_http

TEN_LINE_SERVICE = """\
from podroute import CpuLiveLoadBalancer, remote
api = CpuLiveLoadBalancer(name="hello")
@remote(api, method="GET", path="/hello")
async def hello(name: str = "world") -> dict:
    return {"hello": name}
@remote(api, method="POST", path="/echo")
async def echo(text: str) -> dict:
    if not text:
        raise ValueError("text must not be empty")
    return {"text": text}
"""


def test_fresh_virtualenv_install_serves_a_user_module(tmp_path: Path) -> None:
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(REPO_ROOT / "shared")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    (tmp_path / "hello.py").write_text(TEN_LINE_SERVICE)
    port = free_port()
    server = subprocess.Popen(
        [str(env_dir / "bin" / "podroute"), "serve", "hello", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/ping", timeout=30)
        assert httpx.get(f"{base}/hello?name=pip").json() == {"hello": "pip"}
        assert httpx.post(f"{base}/echo", json={"text": ""}).status_code == 400
        assert httpx.get(f"{base}/docs/static/swagger-ui-bundle.js").status_code == 200
    finally:
        server.terminate()
        server.wait(15)
    assert server.returncode == 0
    assert sys.prefix != str(env_dir)
