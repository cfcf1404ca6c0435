"""What every worker job needs: settings, the worker's sessions, a provider factory, row logging."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from dashboard.db import SyncSessions
from dashboard.models import LOG_LINES_KEPT, Build, Deployment, utc_now
from dashboard.providers import DeployTarget, provider_for
from dashboard.settings import DashboardSettings

ProviderFactory = Callable[[DashboardSettings, str, Mapping[str, str] | None], DeployTarget]
"""`providers(settings, environment, images)`: the provider of an environment (images: sha -> ref)."""


class TransientError(Exception):
    """A provider failure worth retrying later (the row's lease has been released)."""


@dataclass
class Context:
    """What every job needs: settings, the worker's sessions, a provider factory."""

    settings: DashboardSettings
    sessions: SyncSessions
    providers: ProviderFactory = provider_for


def append_log(row: Deployment | Build, line: str) -> None:
    """Add one line to a row's log (keeping the newest `LOG_LINES_KEPT`)."""
    row.log = [*row.log, line][-LOG_LINES_KEPT:]
    row.updated_at = utc_now()


def note(context: Context, model: type[Deployment] | type[Build], row_id: int, line: str) -> None:
    """Append one log line to a row, in its own transaction (the status panel shows it at once)."""
    with context.sessions.begin() as session:
        row = cast("Deployment | Build | None", session.get(model, row_id))
        if row is not None:
            append_log(row, line)
