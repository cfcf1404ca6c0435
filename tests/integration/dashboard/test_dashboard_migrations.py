"""Alembic on an empty SQLite file and on PostgreSQL: up, down, up; models and migrations agree;
the app refuses a database that is behind and names the command that fixes it."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from quart.testing.app import LifespanError
from sqlalchemy import inspect

from dashboard.app import create_app
from dashboard.db import alembic_config, create_engine, head_revisions, schema_status
from dashboard.models import Base

TABLES = {
    "users",
    "endpoints",
    "endpoint_env_vars",
    "audit_events",
    "login_attempts",
    "builds",
    "deployments",
    "user_sessions",
    "orphan_endpoints",
    "sync_lock",
    "worker_samples",
}
HEAD = "0009_atrest"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    return request.getfixturevalue("postgres_url")


def _tables(connection):
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _diff(connection):
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


async def _inspect(url, function):
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(function)
    finally:
        await engine.dispose()


async def _alembic(url, action, revision):
    await asyncio.to_thread(getattr(command, action), alembic_config(url), revision)


async def test_upgrade_downgrade_upgrade_and_no_autogenerate_diff(database_url):
    await _alembic(database_url, "upgrade", "head")
    assert await _inspect(database_url, _tables) == TABLES
    assert await _inspect(database_url, _diff) == []
    await _alembic(database_url, "downgrade", "base")
    assert await _inspect(database_url, _tables) == set()
    await _alembic(database_url, "upgrade", "head")
    assert await _inspect(database_url, _tables) == TABLES
    assert await _inspect(database_url, _diff) == []
    await _alembic(database_url, "downgrade", "base")  # leave the shared PostgreSQL database empty


async def test_each_revision_steps_down_and_up(database_url):
    await _alembic(database_url, "upgrade", "0001")
    added_later = {
        "builds",
        "deployments",
        "user_sessions",
        "orphan_endpoints",
        "sync_lock",
        "worker_samples",
    }
    assert await _inspect(database_url, _tables) == TABLES - added_later
    await _alembic(database_url, "upgrade", "head")
    await _alembic(database_url, "downgrade", "-1")  # 0009 rewrote data only
    assert await _inspect(database_url, _tables) == TABLES
    await _alembic(database_url, "downgrade", "-1")
    assert await _inspect(database_url, _tables) == TABLES - {"worker_samples"}
    assert "volume_mount_path" in await _inspect(database_url, _endpoint_columns)
    await _alembic(database_url, "downgrade", "-1")
    assert "volume_mount_path" not in await _inspect(database_url, _endpoint_columns)
    await _alembic(database_url, "downgrade", "-1")
    assert await _inspect(database_url, _tables) == TABLES - {"user_sessions", "worker_samples"}
    assert "ix_audit_events_target" not in await _inspect(database_url, _audit_indexes)
    await _alembic(database_url, "downgrade", "-1")
    assert {"orphan_endpoints", "sync_lock"} & await _inspect(database_url, _tables) == set()
    assert "release" not in await _inspect(database_url, _deployment_columns)
    assert "image" in await _inspect(database_url, _build_columns)
    await _alembic(database_url, "downgrade", "-1")
    assert "image" not in await _inspect(database_url, _build_columns)
    assert "lease_until" in await _inspect(database_url, _deployment_columns)
    await _alembic(database_url, "downgrade", "-1")
    assert "lease_until" not in await _inspect(database_url, _deployment_columns)
    await _alembic(database_url, "downgrade", "-1")
    assert await _inspect(database_url, _tables) == TABLES - added_later
    await _alembic(database_url, "upgrade", "head")
    assert "ix_audit_events_target" in await _inspect(database_url, _audit_indexes)
    assert "release" in await _inspect(database_url, _deployment_columns)
    assert "lease_until" in await _inspect(database_url, _deployment_columns)
    assert "image" in await _inspect(database_url, _build_columns)
    await _alembic(database_url, "downgrade", "base")


def _endpoint_columns(connection):
    return {column["name"] for column in inspect(connection).get_columns("endpoints")}


def _deployment_columns(connection):
    return {column["name"] for column in inspect(connection).get_columns("deployments")}


def _audit_indexes(connection):
    return {index["name"] for index in inspect(connection).get_indexes("audit_events")}


def _build_columns(connection):
    return {column["name"] for column in inspect(connection).get_columns("builds")}


async def test_app_refuses_a_database_behind_head(tmp_path, demo_project, make_settings):
    settings = make_settings(tmp_path, demo_project)
    await _alembic(settings.url, "upgrade", "0001")
    app = create_app(settings)
    with pytest.raises(LifespanError, match=rf"newest migration {HEAD}\): run `python -m dashboard migrate`"):
        async with app.test_app():
            pass
    engine = create_engine(settings.url)
    status = await schema_status(engine)
    await engine.dispose()
    assert status.current == ("0001",) and status.heads == head_revisions() == (HEAD,)


async def test_app_refuses_an_empty_database(tmp_path, demo_project, make_settings):
    app = create_app(make_settings(tmp_path, demo_project))
    with pytest.raises(LifespanError, match=r"revision empty \(no migrations applied\)"):
        async with app.test_app():
            pass


async def test_the_app_works_on_postgresql(
    postgres_url, tmp_path, demo_project, make_settings, endpoint_form, make_web
):
    settings = make_settings(
        tmp_path, demo_project, database_url=postgres_url, admin_password="pg-admin-pass"
    )
    await _alembic(postgres_url, "upgrade", "head")
    try:
        app = create_app(settings)
        async with app.test_app() as test_app:
            web = make_web(test_app.test_client())
            assert (await web.login("admin", "pg-admin-pass")).status_code == 303
            created = await web.post("/endpoints", endpoint_form(name="pg-endpoint"))
            assert created.status_code == 303
            duplicate = await web.post("/endpoints", endpoint_form(name="pg-endpoint"))
            assert duplicate.status_code == 422
            page = await web.text("/endpoints?q=PG")
            assert "pg-endpoint" in page
            too_big = await web.post("/endpoints", endpoint_form(name="pg-2", workersMax="3000000000"))
            assert too_big.status_code == 422
    finally:
        await _alembic(postgres_url, "downgrade", "base")


def _execute(statements):
    def run(connection):
        for statement in statements:
            connection.exec_driver_sql(statement)
        connection.commit()

    return run


def _endpoint_ids(connection):
    return [row[0] for row in connection.exec_driver_sql("SELECT id FROM endpoints ORDER BY id")]


async def test_upgrading_an_existing_sqlite_database_never_reuses_a_deleted_id(
    tmp_path, demo_project, make_settings, make_web, endpoint_form
):
    """A database from before AUTOINCREMENT: endpoint 7 was deleted (only the audit log remembers it),
    endpoint 3 exists. After the migration the next endpoint gets 8, not 4 or 7."""
    settings = make_settings(tmp_path, demo_project, admin_password="migrate-admin-pass")
    await _alembic(settings.url, "upgrade", "0004")
    endpoint = (
        "INSERT INTO endpoints (id, name, service, resource, compute, image_name, gpus, gpu_count, "
        "min_cuda_version, instance_ids, workers_min, workers_max, idle_timeout, scaler_value, "
        "execution_timeout_ms, flashboot, locations, network_volume_id, version, created_at, updated_at) "
        "VALUES ({id}, '{name}', '', '', 'cpu', '', '[]', 1, '12.8', '[]', 0, 1, 60, 4, 0, 1, '[]', '', 1, "
        "'2026-01-01', '2026-01-01')"
    )
    await _inspect(
        settings.url,
        _execute(
            [
                endpoint.format(id=3, name="kept"),
                endpoint.format(id=7, name="reuse-a"),
                "INSERT INTO audit_events (at, username, action, target_type, target_id, target_name, "
                "changes) VALUES ('2026-01-01', 'alice', 'create', 'endpoint', 7, 'reuse-a', '{}')",
                "DELETE FROM endpoints WHERE id = 7",
            ]
        ),
    )
    await _alembic(settings.url, "upgrade", "head")
    app = create_app(settings)
    async with app.test_app() as test_app:
        web = make_web(test_app.test_client())
        assert (await web.login("admin", "migrate-admin-pass")).status_code == 303
        created = await web.post("/endpoints", endpoint_form(name="reuse-b"))
        assert created.status_code == 303
    assert await _inspect(settings.url, _endpoint_ids) == [3, 8]
