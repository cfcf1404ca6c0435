"""What every worker job needs: settings, the worker's sessions, a provider factory, row logging.

Providers come from the library's `provider_for`; the dashboard's settings only pick the kind and
where to reach it (`provider_settings`). Failures are told apart by the library's error types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from dashboard.db import SyncSessions
from dashboard.models import LOG_LINES_KEPT, Build, Deployment, Endpoint, utc_now
from dashboard.settings import DashboardSettings
from podroute.deploy.model import Target
from podroute.project import project_name
from podroute.providers.base import DeployError, Provider, ProviderUnavailableError
from podroute.providers.factory import ProviderSettings, provider_for

ProviderFactory = Callable[[DashboardSettings, str, Mapping[str, str] | None], Provider]
"""`providers(settings, environment, images)`: the provider of an environment (images: sha -> ref)."""


class ProviderSetupError(DeployError):
    """The provider of an environment cannot be used as configured; the message says the fix."""


class TransientError(Exception):
    """A provider failure worth retrying later (the row's lease has been released)."""


def provider_settings(
    settings: DashboardSettings, environment: str, images: Mapping[str, str] | None = None
) -> ProviderSettings:
    """What the dashboard's settings say about an environment's provider (`images`: sha -> ref)."""
    if settings.provider_of(environment) == "runpod":
        if not settings.runpod_api_key:
            raise ProviderSetupError(
                f"environment {environment!r} deploys to RunPod but RUNPOD_API_KEY is not set: set it, "
                f"or set DASHBOARD_PROVIDER_{environment.upper().replace('-', '_')}=local"
            )
        return ProviderSettings(
            kind="runpod",
            runpod_api=settings.runpod_api,
            runpod_api_key=settings.runpod_api_key,
            images=dict(images or {}),
        )
    return ProviderSettings(
        kind="local",
        runtime_url=settings.runtime_url,
        runtime_token=settings.runtime_token,
        token_file=settings.token_file,
    )


def dashboard_provider(
    settings: DashboardSettings, environment: str, images: Mapping[str, str] | None = None
) -> Provider:
    """The provider serving `environment` (close it after use)."""
    return provider_for(provider_settings(settings, environment, images))


def is_transient(error: Exception) -> bool:
    """True for failures worth retrying: the provider unreachable, overloaded or answering 5xx/429."""
    return isinstance(error, (ProviderUnavailableError, OSError))


@dataclass
class Context:
    """What every job needs: settings, the worker's sessions, a provider factory."""

    settings: DashboardSettings
    sessions: SyncSessions
    providers: ProviderFactory = dashboard_provider

    @property
    def project(self) -> str:
        """The project's name in its endpoints' marker labels (the CLI uses the same rule)."""
        return project_name(self.settings.project_dir)

    def target(self, endpoint: Endpoint, environment: str) -> Target:
        """The control plane's name for an endpoint config deployed to an environment."""
        return Target(self.project, environment, endpoint.service, endpoint.resource)


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
