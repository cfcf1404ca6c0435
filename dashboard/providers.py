"""Which provider serves an environment, and how the tasks tell provider failures apart.

The local runtime is the default everywhere. RunPod is used for an environment when
`DASHBOARD_PROVIDER_<ENV>=runpod`, or for every environment when `RUNPOD_API_KEY` is set and no
explicit choice is made (`podroute.runpod.RunPodProvider`; its API base URLs come from the
`RUNPOD_*` variables that `RunPodSettings.from_env` reads). Failures are classified by the
library's error types (`ProviderUnavailableError`, `EndpointNotFoundError`), never by message text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dashboard.settings import DashboardSettings
from podroute.deploy import (
    DeployError,
    EndpointNotFoundError,
    LocalRuntimeProvider,
    Provider,
    ProviderUnavailableError,
)
from podroute.runpod import RunPodProvider
from podroute.runpod_api import RunPodSettings

DeployTarget = Provider
"""What the tasks deploy with (every provider can also `find` its endpoints by name)."""

RuntimeProvider = LocalRuntimeProvider
"""The local runtime's control API (kept under the name the dashboard has used)."""


class ProviderSetupError(DeployError):
    """The provider of an environment cannot be used as configured; the message says the fix."""


def is_transient(error: Exception) -> bool:
    """True for failures worth retrying: the provider unreachable, overloaded or answering 5xx/429."""
    return isinstance(error, (ProviderUnavailableError, OSError))


def is_not_found(error: Exception) -> bool:
    """True when the provider says the endpoint does not exist (deleting it again is then done)."""
    return isinstance(error, EndpointNotFoundError)


def read_runtime_token(settings: DashboardSettings) -> str:
    """`PODROUTE_RUNTIME_TOKEN`, else the runtime's token file; ProviderSetupError names the fix."""
    if settings.runtime_token:
        return settings.runtime_token
    path: Path = settings.token_file
    try:
        return path.read_text().strip()
    except OSError:
        raise ProviderSetupError(
            f"no local runtime token at {path}: start the runtime once (`podroute runtime` writes it), "
            "or set PODROUTE_RUNTIME_TOKEN / PODROUTE_RUNTIME_TOKEN_FILE"
        ) from None


def runpod_provider(settings: DashboardSettings, images: Mapping[str, str] | None = None) -> RunPodProvider:
    """A RunPod provider with the dashboard's API key, base URLs from `RUNPOD_*`, and build images."""
    runpod_settings = RunPodSettings.from_env(api_key=settings.runpod_api_key)
    return RunPodProvider(runpod_settings, images=images or {})


def provider_for(
    settings: DashboardSettings, environment: str, images: Mapping[str, str] | None = None
) -> DeployTarget:
    """The provider that serves `environment` (`settings.provider_of` decides which kind).

    `images` maps a build's artifact sha256 to its image reference; only RunPod uses it.
    """
    kind = settings.provider_of(environment)
    if kind == "runpod":
        if not settings.runpod_api_key:
            raise ProviderSetupError(
                f"environment {environment!r} deploys to RunPod but RUNPOD_API_KEY is not set: set it, "
                f"or set DASHBOARD_PROVIDER_{environment.upper().replace('-', '_')}=local"
            )
        return runpod_provider(settings, images)
    return LocalRuntimeProvider(settings.runtime_url, read_runtime_token(settings))
