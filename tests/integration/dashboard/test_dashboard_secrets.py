"""The dashboard's "secret" env variables become provider secrets, through a real Celery worker and
a real `podroute runtime`: the released env refers to a secret named by the one rule and never holds
the value; a changed value is a new release the workers pick up; and a deploy whose code refers to a
secret the provider lacks fails before anything is created, naming it."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import httpx

from dashboard.db import create_sync_sessions
from dashboard.models import Deployment, EnvVar
from podroute.deploy.model import endpoint_name
from tests.integration.dashboard import test_dashboard_deploys as deploys
from tests.integration.dashboard.test_dashboard_deploys import (
    build,
    deploy,
    import_lab,
    named,
    provider,
    rows,
    target,
)
from tests.runtime_support import Runtime

# the deploy tests' fixtures: one runtime for the module, the lab project, settings and a worker
runtime = deploys.runtime
lab_project = deploys.lab_project
settings = deploys.settings
worker = deploys.worker

TOKEN_ROUTE = """

@remote(api, method="GET", path="/token")
async def token() -> dict:
    import hashlib
    return {"sha256": hashlib.sha256(os.environ["LAB_TOKEN"].encode()).hexdigest()}
"""


def token_of(row: Deployment, runtime: Runtime) -> str:
    with provider(runtime) as runtime_provider:
        key = runtime_provider.api_key(row.external_id)
    answer = httpx.get(f"{row.url}/token", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["sha256"])


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def set_token(settings, endpoint_id: int, value: str) -> None:
    with create_sync_sessions(settings.url).begin() as session:
        found = session.query(EnvVar).filter_by(endpoint_id=endpoint_id, key="LAB_TOKEN").one_or_none()
        if found is None:
            session.add(EnvVar(endpoint_id=endpoint_id, key="LAB_TOKEN", value=value, secret=True))
        else:
            found.value = value


def files_holding(folder: Path, value: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]


async def test_secret_env_vars_are_deployed_as_provider_secrets(web, settings, worker, runtime):
    endpoint_py = settings.project_dir / "services" / "lab" / "endpoint.py"
    endpoint_py.write_text(endpoint_py.read_text() + TOKEN_ROUTE)
    endpoint_id = await import_lab(web)
    value = "lab-" + secrets.token_hex(16)
    set_token(settings, endpoint_id, value)
    await build(web, endpoint_id)

    panel = await deploy(web, endpoint_id)
    assert 'data-status="ready"' in panel, panel
    first = rows(settings)[-1]
    assert token_of(first, runtime) == sha256(value)  # the worker got the value at boot
    prefix = f"{endpoint_name(target(settings, 'production'))}-LAB_TOKEN-"
    with provider(runtime) as runtime_provider:
        [stored] = runtime_provider.list_secrets()
        serving = runtime_provider.status(first.external_id)
    assert stored.name.startswith(prefix) and value not in stored.name
    assert "LAB_TOKEN" in serving.serving["env_keys"]
    state = (runtime.data_dir / "state.json").read_text()
    assert f"{{{{ RUNPOD_SECRET_{stored.name} }}}}" in state  # the release holds the reference
    assert files_holding(runtime.data_dir, value) == []  # encrypted in secrets.json, nowhere else
    for page in (
        f"/endpoints/{endpoint_id}",
        f"/endpoints/{endpoint_id}/edit",
        f"/endpoints/{endpoint_id}/environments/production",
        "/audit",
    ):
        assert value not in await web.text(page), page

    # the same value again: the same secret and the same release (nothing made twice)
    await deploy(web, endpoint_id)
    again = rows(settings)[-1]
    assert (again.status, again.release) == ("ready", first.release)
    with provider(runtime) as runtime_provider:
        assert [s.name for s in runtime_provider.list_secrets()] == [stored.name]

    # a changed value is a new secret, so a new release whose workers boot with it
    newer = "lab-" + secrets.token_hex(16)
    set_token(settings, endpoint_id, newer)
    await deploy(web, endpoint_id)
    changed = rows(settings)[-1]
    assert changed.status == "ready" and changed.release == (first.release or 0) + 1
    assert token_of(changed, runtime) == sha256(newer)
    with provider(runtime) as runtime_provider:
        names = sorted(s.name for s in runtime_provider.list_secrets())
        assert len(names) == 2 and all(name.startswith(prefix) for name in names)
        runtime_provider.delete(changed.external_id)
        for name in names:
            runtime_provider.delete_secret(name)
    assert files_holding(runtime.data_dir, newer) == []
    assert not any(value in line or newer in line for row in rows(settings) for line in row.log)


async def test_a_missing_secret_fails_a_dashboard_deploy_naming_it(web, settings, worker, runtime):
    endpoint_py = settings.project_dir / "services" / "lab" / "endpoint.py"
    source = endpoint_py.read_text().replace(
        "import CpuLiveLoadBalancer,", "import CpuLiveLoadBalancer, Secret,"
    )
    source = source.replace('(name="lab",', '(name="lab", env={"HF_TOKEN": Secret("lab-missing")},')
    endpoint_py.write_text(source)
    endpoint_id = await import_lab(web)
    await build(web, endpoint_id)

    panel = await deploy(web, endpoint_id, "staging")
    assert 'data-status="failed"' in panel, panel
    row = rows(settings)[-1]
    assert row.status == "failed" and "'lab-missing'" in row.error and "nothing was created" in row.error
    assert "lab-missing" in await web.text(f"/endpoints/{endpoint_id}/environments/staging")
    assert named(runtime, endpoint_name(target(settings, "staging"))) == []
