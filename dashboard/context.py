"""Request-time state of the dashboard app: its state object, the database transaction, the user.

Views import this module (never `dashboard.app`), and `dashboard.app` imports the views: no circle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from quart import current_app, g
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dashboard.assets import VendorAsset
from dashboard.db import Sessions
from dashboard.discovery import DiscoveryCache
from dashboard.models import User
from dashboard.settings import DashboardSettings


@dataclass
class DashboardState:
    """What the app keeps on `app.extensions['dashboard']`."""

    settings: DashboardSettings
    discovery: DiscoveryCache
    assets: dict[str, VendorAsset]
    engine: AsyncEngine | None = None
    sessions: Sessions | None = field(default=None, repr=False)
    celery: Any = field(default=None, repr=False)


def state() -> DashboardState:
    """The running app's dashboard state."""
    value: DashboardState = current_app.extensions["dashboard"]
    return value


@asynccontextmanager
async def transaction() -> AsyncIterator[AsyncSession]:
    """A session in a transaction that commits when the block ends without an error."""
    sessions = state().sessions
    if sessions is None:
        raise RuntimeError("the database is not open: the app is not serving")
    async with sessions.begin() as session:
        yield session


def current_user() -> User:
    """The logged-in user (views behind the login guard only)."""
    user: User = g.user
    return user
