"""Alembic environment for the dashboard database (async engines: aiosqlite, asyncpg).

The URL comes from, in order: `config.attributes["url"]` (set by `dashboard.db.alembic_config`),
`alembic -x url=...`, then `DashboardSettings.from_env()` (DATABASE_URL or the SQLite data file).
"""

from __future__ import annotations

import asyncio
import logging
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from dashboard.db import prepare_data_dir
from dashboard.models import Base
from dashboard.settings import DashboardSettings, async_database_url

config = context.config
target_metadata = Base.metadata

if config.config_file_name and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return str(url)
    settings = DashboardSettings.from_env()
    prepare_data_dir(settings)
    return settings.url


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations without a database (`alembic upgrade head --sql`)."""
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Run the migrations on an async engine."""
    engine = create_async_engine(async_database_url(_url()), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Run the migrations against the database, or on a connection a caller passed in."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
        return
    asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
