"""Support for the dashboard's tests, outside the app package: a demo project, scratch PostgreSQL
databases, and the strict mode CI uses to turn "skipped: not available" into a failure.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import socket
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

STRICT_ENV = "PODROUTE_STRICT_TESTS"
POSTGRES_ENV = "PODROUTE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

DEMO_ENDPOINT = textwrap.dedent(
    '''
    """A demo service: one CPU and one GPU resource with a few routes."""

    from pydantic import BaseModel

    from podroute import CpuLiveLoadBalancer, LiveLoadBalancer, remote

    cpu = CpuLiveLoadBalancer(name="demo-cpu", workersMax=3, env={"MODE": "demo"})
    gpu = LiveLoadBalancer(name="demo-gpu", gpus=["ADA_24"], workersMax=2)


    class Item(BaseModel):
        text: str
        times: int = 1


    @remote(cpu, method="GET", path="/health")
    async def health() -> dict[str, bool]:
        """Say the service is up."""
        return {"ok": True}


    @remote(cpu, method="POST", path="/echo")
    async def echo(item: Item) -> dict[str, str]:
        """Repeat the text."""
        return {"text": item.text * item.times}


    @remote(gpu, method="GET", path="/items/{item_id}")
    async def get_item(item_id: int, verbose: bool = False) -> dict[str, object]:
        """Look an item up."""
        return {"id": item_id, "verbose": verbose}
    '''
)

BROKEN_ENDPOINT = 'raise RuntimeError("this service is broken on purpose")\n'


def strict() -> bool:
    """True when a missing PostgreSQL or Chromium must fail the tests instead of skipping them (CI)."""
    return os.environ.get(STRICT_ENV, "").strip() in ("1", "true", "yes")


def write_demo_project(root: Path, *, broken: bool = True, services_dir: str = "services") -> Path:
    """Write a project with `services/demo/endpoint.py` (and a broken service); return its root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(f'[tool.podroute]\nservices = "{services_dir}"\n')
    demo = root / services_dir / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    (root / services_dir / "__init__.py").write_text("")
    (demo / "__init__.py").write_text("")
    (demo / "endpoint.py").write_text(DEMO_ENDPOINT)
    if broken:
        bad = root / services_dir / "broken"
        bad.mkdir(exist_ok=True)
        (bad / "__init__.py").write_text("")
        (bad / "endpoint.py").write_text(BROKEN_ENDPOINT)
    return root


def postgres_admin_url() -> str:
    """The PostgreSQL server tests may create scratch databases on (`PODROUTE_TEST_POSTGRES_URL`)."""
    return os.environ.get(POSTGRES_ENV, "").strip() or DEFAULT_POSTGRES_URL


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_scratch_database(admin_url: str) -> str:
    """Create an empty, uniquely named database; return its URL (raises OSError if unreachable)."""
    import asyncpg  # type: ignore[import-untyped]

    name = f"podroute_dash_test_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=5)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def drop_scratch_database(admin_url: str, url: str) -> None:
    """Drop a database made by `create_scratch_database` (closing its connections)."""
    import asyncpg

    name = make_url(url).database
    if not name or not name.startswith("podroute_dash_test_"):
        raise ValueError(f"refusing to drop {name!r}: not a scratch database")
    connection = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=5)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def load_demo_app(project: Path, resource: str = "demo-cpu") -> Any:
    """The podroute app of one resource of the demo project (loaded from its file, fresh registry)."""
    from podroute import Registry, create_app, use_registry
    from podroute.settings import AppSettings

    path = project / "services" / "demo" / "endpoint.py"
    spec = importlib.util.spec_from_file_location(f"demo_endpoint_{secrets.token_hex(4)}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    with use_registry(Registry()) as registry:
        spec.loader.exec_module(module)
    return create_app(registry.entry(resource).resource, registry=registry, settings=AppSettings())


@asynccontextmanager
async def live_server(app: Any, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app with Hypercorn on an ephemeral 127.0.0.1 port (or on the listening socket
    `sock`, which it takes over); yield its base URL."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = sock or socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
