"""No secret value at rest in plain text in the dashboard's database, through a real Celery worker and
a real `podroute runtime`: a secret env value set on the edit form and deployed is found in no table,
no column and no byte of the data folder (the snapshot keeps the version of the value); the diff marks
a changed secret as '***'; a rollback serves the old value again, also when the old snapshot itself
is deployed again (the worker refers to the provider secret that release ran with); a rollback whose
provider secret is gone fails naming the variable, before anything is made; undeploying removes the
provider secrets made for the endpoint, and only those. Migration 0009 replaces the values older
dashboards left in snapshots (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from dashboard.db import alembic_config, create_sync_sessions, sqlite_path, sync_database_url
from dashboard.models import Deployment, Endpoint
from dashboard.secret_versions import draft_env, secret_release
from dashboard.secrets_at_rest import KeyRing
from podroute.deploy.model import Target, endpoint_name
from podroute.deploy.preflight import SecretEnv, secret_version
from tests.integration.dashboard import test_dashboard_deploys as deploys
from tests.integration.dashboard.test_dashboard_deploys import (
    build,
    deploy,
    import_lab,
    poll,
    provider,
    rows,
    target,
    wait_until,
)
from tests.integration.dashboard.test_dashboard_secrets import TOKEN_ROUTE, sha256, token_of

runtime = deploys.runtime
lab_project = deploys.lab_project
settings = deploys.settings
worker = deploys.worker


class _FormFields(HTMLParser):
    """The fields a browser submits for the endpoint edit form (checked boxes and radios only)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.fields: dict[str, Any] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = found.get("id") == "endpoint-form"
        if tag != "input" or not self.inside or not found.get("name"):
            return
        if found.get("type") in ("checkbox", "radio") and "checked" not in found:
            return
        name, value = found["name"], found.get("value", "on" if found.get("type") == "checkbox" else "")
        if name in ("gpus", "instanceIds", "locations"):
            self.fields.setdefault(name, []).append(value)
        else:
            self.fields[name] = value

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


async def set_secret(web: Any, endpoint_id: int, key: str, value: str) -> None:
    """Set a secret env variable on the edit form, as a user does (its value is write-only)."""
    parser = _FormFields()
    parser.feed(await web.text(f"/endpoints/{endpoint_id}/edit"))
    form = {k: v for k, v in parser.fields.items() if k != "csrf_token"}
    rows_used = {int(name.split("-")[1]) for name in form if name.startswith("env-")}
    index = next((i for i in sorted(rows_used) if form.get(f"env-{i}-key") == key), None)
    if index is None:
        index = next(i for i in sorted(rows_used) if not form.get(f"env-{i}-key"))
    form.update({f"env-{index}-key": key, f"env-{index}-value": value, f"env-{index}-secret": "on"})
    response = await web.post(f"/endpoints/{endpoint_id}", form)
    assert response.status_code == 303, await response.get_data(as_text=True)


def cells_holding(url: str, value: str) -> list[str]:
    """`table.column` of every cell of the database (every table, every column, as text) that
    contains `value`."""
    engine = sa.create_engine(sync_database_url(url))
    found = []
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            for table in inspector.get_table_names():
                for column in inspector.get_columns(table):
                    cell = sa.cast(sa.column(column["name"]), sa.Text)
                    texts = connection.execute(sa.select(cell).select_from(sa.table(table))).scalars()
                    if any(text is not None and value in text for text in texts):
                        found.append(f"{table}.{column['name']}")
    finally:
        engine.dispose()
    return found


def files_holding(folder: Path, value: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]


def assert_stored_nowhere(settings: Any, value: str) -> None:
    assert cells_holding(settings.url, value) == []
    assert files_holding(settings.data_dir, value) == []  # the database, its WAL, the broker


def forget_release_number(settings: Any, row_id: int) -> None:
    """What a provider without release numbers leaves: a rollback to the row deploys its snapshot."""
    with create_sync_sessions(settings.url).begin() as session:
        row = session.get(Deployment, row_id)
        assert row is not None
        row.release = None


async def roll_back_to(web: Any, endpoint_id: int, row_id: int) -> str:
    response = await web.post(f"/deployments/{row_id}/rollback", htmx=True)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await poll(web, f"/endpoints/{endpoint_id}/environments/production")


async def test_no_secret_value_is_stored_in_clear_and_rollbacks_serve_the_old_one(
    web, settings, worker, runtime, caplog
):
    endpoint_py = settings.project_dir / "services" / "lab" / "endpoint.py"
    endpoint_py.write_text(endpoint_py.read_text() + TOKEN_ROUTE)
    endpoint_id = await import_lab(web)
    value = "lab-" + secrets.token_hex(16)
    await set_secret(web, endpoint_id, "LAB_TOKEN", value)
    await build(web, endpoint_id)

    panel = await deploy(web, endpoint_id)
    assert 'data-status="ready"' in panel, panel
    first = rows(settings)[-1]
    assert token_of(first, runtime) == sha256(value)  # the worker took the value from the EnvVar
    marker = first.config["env"]["LAB_TOKEN"]
    assert marker.startswith("secret-version:") and first.config["secrets"] == ["LAB_TOKEN"]
    prefix = f"{endpoint_name(target(settings, 'production'))}-LAB_TOKEN-"
    with provider(runtime) as runtime_provider:
        [stored] = runtime_provider.list_secrets()
    assert stored.name == prefix + marker.removeprefix("secret-version:")  # the version names it
    assert_stored_nowhere(settings, value)

    # a changed value: a new release; the diff marks the secret as changed, with '***' only
    newer = "lab-" + secrets.token_hex(16)
    await set_secret(web, endpoint_id, "LAB_TOKEN", newer)
    await deploy(web, endpoint_id)
    second = rows(settings)[-1]
    assert second.status == "ready" and token_of(second, runtime) == sha256(newer)
    assert second.config["env"]["LAB_TOKEN"] not in (marker, newer)
    diff = await web.text(f"/deployments/{first.id}/diff")
    changed = diff.split('<td class="mono">env.LAB_TOKEN</td>', 1)[1].split("</tr>", 1)[0]
    assert "***" in changed and "(changed)" in changed, changed
    assert value not in diff and newer not in diff

    # rolled back to the first release by the provider: the old value serves again, and the
    # draft banner says the draft's secret differs from what serves
    panel = await roll_back_to(web, endpoint_id, first.id)
    assert 'data-status="ready"' in panel, panel
    wait_until(lambda: token_of(rows(settings)[-1], runtime) == sha256(value), 30, "the old secret value")
    page = await web.text(f"/endpoints/{endpoint_id}")
    banner = page.split('data-draft-differs="production"', 1)[1].split("</div>", 1)[0]
    assert 'data-field="env.LAB_TOKEN"' in banner and "***" in banner
    assert value not in page and newer not in page

    # back to the second release, then to the first by deploying its snapshot again: the worker
    # has only the newer value, so the release refers to the secret the first one ran with
    await roll_back_to(web, endpoint_id, second.id)
    wait_until(lambda: token_of(rows(settings)[-1], runtime) == sha256(newer), 30, "the newer value")
    forget_release_number(settings, first.id)
    panel = await roll_back_to(web, endpoint_id, first.id)
    assert 'data-status="ready"' in panel, panel
    again = rows(settings)[-1]
    assert (again.action, again.status) == ("rollback", "ready") and again.release > second.release
    assert token_of(again, runtime) == sha256(value)
    with provider(runtime) as runtime_provider:
        assert sorted(s.name for s in runtime_provider.list_secrets()) == sorted(
            [stored.name, prefix + second.config["env"]["LAB_TOKEN"].removeprefix("secret-version:")]
        )
        runtime_provider.delete_secret(stored.name)

    # once the old provider secret is gone, deploying that snapshot fails before anything is
    # made, naming the variable (the dashboard has only the version of that old value)
    await roll_back_to(web, endpoint_id, second.id)
    with provider(runtime) as runtime_provider:
        serving = runtime_provider.status(again.external_id).release
    panel = await roll_back_to(web, endpoint_id, first.id)
    assert 'data-status="failed"' in panel, panel
    failed = rows(settings)[-1]
    assert failed.status == "failed" and "secret env LAB_TOKEN" in failed.error
    assert "Deploy the current config" in failed.error
    with provider(runtime) as runtime_provider:
        assert serving is not None and runtime_provider.status(again.external_id).release == serving
        runtime_provider.add_secret("hf-token", "the user's own secret", "")

    # undeploying removes the provider secrets made for the endpoint's secret env values (the
    # newer one; the old one was deleted above), and no other secret
    undeploy = f"/endpoints/{endpoint_id}/environments/production/undeploy"
    assert (await web.post(undeploy, {"confirm": "yes"})).status_code == 303
    panel = await poll(web, f"/endpoints/{endpoint_id}/environments/production")
    assert 'data-status="deleted"' in panel, panel
    assert "removed 1 provider secret(s) of its secret env values" in rows(settings)[-1].log[-1]
    with provider(runtime) as runtime_provider:
        assert [s.name for s in runtime_provider.list_secrets()] == ["hf-token"]
        runtime_provider.delete_secret("hf-token")

    for secret_value in (value, newer):
        assert_stored_nowhere(settings, secret_value)
        assert secret_value not in caplog.text
        assert secret_value not in worker.log.read_text()
        assert not any(secret_value in line for row in rows(settings) for line in row.log)


MIGRATION_SECRET = "at-rest-migration-secret-long-enough-to-count"
OLD_FINGERPRINT_CONTEXT = b"podroute-dashboard secret env fingerprints v1"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.sqlite3'}"
    return request.getfixturevalue("postgres_url")


def _insert_old_snapshots(url: str, value: str) -> tuple[int, int]:
    """Rows as dashboards before 0009 wrote them: a deploy with the secret value in clear, and a
    release another tool made (keys only, masked)."""
    sessions = create_sync_sessions(url)
    try:
        with sessions.begin() as session:
            endpoint = Endpoint(name="old", service="lab", resource="lab", compute="cpu")
            session.add(endpoint)
            session.flush()
            env = {"MODE": "fast", "TOKEN": value, "EMPTY": ""}
            ours = Deployment(
                endpoint_id=endpoint.id,
                environment="production",
                status="ready",
                config={"fields": {"workersMax": 1}, "env": env, "secrets": ["EMPTY", "TOKEN"]},
            )
            cli = Deployment(
                endpoint_id=endpoint.id,
                environment="staging",
                status="ready",
                config={"fields": {}, "env": {"TOKEN": "***"}, "secrets": ["TOKEN"]},
            )
            session.add_all([ours, cli])
            session.flush()
            return ours.id, cli.id
    finally:
        sessions.kw["bind"].dispose()


def _configs(url: str) -> dict[int, dict[str, Any]]:
    sessions = create_sync_sessions(url)
    try:
        with sessions() as session:
            return {row.id: row.config for row in session.query(Deployment)}
    finally:
        sessions.kw["bind"].dispose()


async def _migrate(url: str, action: str, revision: str, ring: KeyRing | None = None) -> None:
    await asyncio.to_thread(getattr(command, action), alembic_config(url, ring), revision)


async def test_the_migration_replaces_stored_secret_values_by_their_version(database_url):
    value = "old-" + secrets.token_hex(16)
    await _migrate(database_url, "upgrade", "0008_controlfix")
    ours, cli = _insert_old_snapshots(database_url, value)
    assert cells_holding(database_url, value) == ["deployments.config"]  # how it was: in clear
    ring = KeyRing(MIGRATION_SECRET)
    try:
        await _migrate(database_url, "upgrade", "head", ring)
        configs = _configs(database_url)
        marker = "secret-version:" + secret_version(ring.fingerprint_key, "TOKEN", value)
        assert configs[ours]["env"] == {"MODE": "fast", "TOKEN": marker, "EMPTY": ""}
        assert configs[ours]["secrets"] == ["EMPTY", "TOKEN"]
        assert configs[cli]["env"] == {"TOKEN": "***"}
        assert cells_holding(database_url, value) == []
        database = sqlite_path(database_url)
        if database is not None:
            assert files_holding(database.parent, value) == []  # freed space zeroed, WAL gone

        # the marker names the provider secret the value was deployed as (the name the worker
        # gave it before 0009), and the same value in the draft is no change
        lab = Target("proj", "production", "lab", "lab")
        old_key = hmac.new(MIGRATION_SECRET.encode(), OLD_FINGERPRINT_CONTEXT, hashlib.sha256).digest()
        deployed = SecretEnv({"TOKEN": value}, fingerprint_key=old_key).names(lab)
        assert secret_release(configs[ours], lab, {}, ring).names == deployed
        assert draft_env({"TOKEN": (value, True)}, configs[ours], ring) == {"TOKEN": (marker, True)}

        # the downgrade cannot bring the value back; upgrading again changes nothing
        await _migrate(database_url, "downgrade", "-1", ring)
        assert _configs(database_url) == configs
        await _migrate(database_url, "upgrade", "head", ring)
        assert _configs(database_url) == configs
    finally:
        await _migrate(database_url, "downgrade", "base", ring)  # leave the shared database empty
