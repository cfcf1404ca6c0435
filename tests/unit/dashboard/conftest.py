"""Unit tests of the dashboard: no network, real SQLite files in tmp dirs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

from sqlalchemy.ext.asyncio import AsyncSession  # noqa: E402

from dashboard.db import create_engine, create_sessions  # noqa: E402
from dashboard.models import Base  # noqa: E402
from dashboard.secrets_at_rest import install_key_ring  # noqa: E402

UNIT_SECRET = "unit-test-secret-key-long-enough-to-be-a-real-one"


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[AsyncSession]:
    """A session on a fresh SQLite file whose tables come from the models (stored secrets are
    encrypted under UNIT_SECRET)."""
    install_key_ring(UNIT_SECRET)
    engine = create_engine(f"sqlite:///{tmp_path / 'unit.sqlite3'}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with create_sessions(engine)() as db:
        yield db
    await engine.dispose()
