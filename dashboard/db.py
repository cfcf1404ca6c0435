"""Database engines, sessions and the migration check (the schema itself is in `migrations/`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from dashboard import REPO_ROOT
from dashboard.secrets_at_rest import KeyRing
from dashboard.settings import DashboardSettings, async_database_url

MIGRATIONS_DIR = REPO_ROOT / "migrations"
ALEMBIC_INI = REPO_ROOT / "alembic.ini"
MIGRATE_COMMAND = "python -m dashboard migrate"
"""The command that brings a database to the newest schema (it runs `alembic upgrade head`)."""

Sessions = async_sessionmaker[AsyncSession]


class DatabaseBehindError(RuntimeError):
    """The database schema is not at the newest migration; the message names the fix."""


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; SQLite gets foreign keys, WAL and a busy timeout."""
    engine = create_async_engine(async_database_url(url), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _enable_sqlite_pragmas)
    return engine


def create_sessions(engine: AsyncEngine) -> Sessions:
    """The session factory the web app and the CLI use (objects stay usable after commit)."""
    return async_sessionmaker(engine, expire_on_commit=False)


DATA_DIR_MODE = 0o700
DATA_FILE_MODE = 0o600


def secure_file(path: Path) -> None:
    """Create `path` readable by its owner only (0600), or narrow an existing file to that."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, DATA_FILE_MODE)
    os.close(fd)
    os.chmod(path, DATA_FILE_MODE)


def prepare_data_dir(settings: DashboardSettings) -> None:
    """Create the data directory (0700) and its SQLite files (0600) before anything opens them.

    Only the owner can read the database (it holds password hashes and encrypted secrets); SQLite
    gives its -wal and -shm files the database file's mode. A SQLite database configured outside
    the data dir gets the same file mode.
    """
    if settings.uses_default_sqlite or settings.uses_embedded_broker:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=DATA_DIR_MODE)
        os.chmod(settings.data_dir, DATA_DIR_MODE)
    if settings.uses_embedded_broker:
        secure_file(settings.data_dir / "celery-broker.sqlite3")
    database = sqlite_path(settings.url)
    if database is not None and database.parent.is_dir():
        secure_file(database)


def alembic_config(url: str, key_ring: KeyRing | None = None) -> Config:
    """An Alembic config for `url` that works from any working directory; `key_ring` encrypts the
    stored secrets a migration rewrites (default: from the environment's DASHBOARD_SECRET_KEY)."""
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    if key_ring is not None:
        config.attributes["key_ring"] = key_ring
    return config


def head_revisions() -> tuple[str, ...]:
    """The revision id(s) of the newest migration(s) in `migrations/`."""
    return tuple(ScriptDirectory.from_config(alembic_config("")).get_heads())


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands relative to the migrations."""

    current: tuple[str, ...]
    heads: tuple[str, ...]

    @property
    def up_to_date(self) -> bool:
        """True when the database is exactly at head."""
        return set(self.current) == set(self.heads)

    def describe(self) -> str:
        """A sentence for logs and error messages."""
        current = ", ".join(self.current) or "empty (no migrations applied)"
        return f"database revision {current}; newest migration {', '.join(self.heads)}"


def _current_revisions(connection: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(connection).get_current_heads())


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    """Compare the database's Alembic revision with the newest migration."""
    async with engine.connect() as connection:
        current = await connection.run_sync(_current_revisions)
    return SchemaStatus(current, head_revisions())


async def require_current_schema(engine: AsyncEngine) -> None:
    """Raise `DatabaseBehindError`, naming the fix, unless the database is at head."""
    status = await schema_status(engine)
    if not status.up_to_date:
        raise DatabaseBehindError(
            f"the dashboard database is not at the newest schema ({status.describe()}): "
            f"run `{MIGRATE_COMMAND}` (or `alembic upgrade head`) and start again"
        )


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, or None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


SyncSessions = sessionmaker[Session]
"""The session factory of the Celery worker (it runs plain functions, not coroutines)."""


def sync_database_url(url: str) -> str:
    """The URL with a blocking driver: `sqlite` stays, `postgresql` gets psycopg (version 3)."""
    parsed = make_url(url)
    drivers = {
        "sqlite+aiosqlite": "sqlite",
        "postgresql": "postgresql+psycopg",
        "postgres": "postgresql+psycopg",
        "postgresql+asyncpg": "postgresql+psycopg",
    }
    name = drivers.get(parsed.drivername)
    if name is None:
        return url
    return parsed.set(drivername=name).render_as_string(hide_password=False)


def create_sync_sessions(url: str) -> SyncSessions:
    """A blocking engine's session factory for `url` (same SQLite pragmas as the web side)."""
    engine = create_sync_engine(sync_database_url(url), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _enable_sqlite_pragmas)
    return sessionmaker(engine, expire_on_commit=False)
