"""Which provider serves an environment, and the few things the tasks need beyond `podroute.deploy`.

The local runtime is the default everywhere. RunPod is used for an environment when
`DASHBOARD_PROVIDER_<ENV>=runpod`, or for every environment when `RUNPOD_API_KEY` is set and no
explicit choice is made; it needs podroute's RunPod provider (`podroute.runpod.RunPodProvider`).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Protocol

from dashboard.settings import DashboardSettings
from podroute.deploy import DeployError, EndpointInfo, LocalRuntimeProvider, Provider

_TRANSIENT = re.compile(r"^(cannot reach|the runtime answered (5\d\d|429))")
_NOT_FOUND = re.compile(r"(answered 404|no endpoint|not found)", re.IGNORECASE)


class ProviderSetupError(DeployError):
    """The provider of an environment cannot be used as configured; the message says the fix."""


class DeployTarget(Provider, Protocol):
    """A provider that can also list endpoints by name (what makes creating safe to retry)."""

    def find(self, name: str) -> list[EndpointInfo]:
        """Every endpoint the provider holds with this name."""


class RuntimeProvider(LocalRuntimeProvider):
    """The local runtime's control API, plus `find` (listing endpoints by name)."""

    def find(self, name: str) -> list[EndpointInfo]:
        """Endpoints named `name` on the runtime."""
        body = self._call("GET", "/endpoints")
        return [self._info(entry) for entry in body.get("endpoints", []) if entry.get("name") == name]


def is_transient(error: Exception) -> bool:
    """True for failures worth retrying: the provider unreachable, overloaded or answering 5xx/429."""
    if getattr(error, "transient", False) or getattr(error, "retryable", False):
        return True
    if isinstance(error, DeployError):
        return bool(_TRANSIENT.match(str(error)))
    return isinstance(error, OSError)


def is_not_found(error: Exception) -> bool:
    """True when the provider says the endpoint does not exist (deleting it again is then done)."""
    return isinstance(error, DeployError) and bool(_NOT_FOUND.search(str(error)))


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


def _runpod_provider(settings: DashboardSettings) -> Any:
    try:
        module = importlib.import_module("podroute.runpod")
        factory = module.RunPodProvider
    except (ImportError, AttributeError):
        raise ProviderSetupError(
            "this environment deploys to RunPod, but the installed podroute has no RunPod provider "
            "(podroute.runpod.RunPodProvider): upgrade podroute, or set DASHBOARD_PROVIDER_<ENV>=local "
            "to use the local runtime"
        ) from None
    return factory(api_key=settings.runpod_api_key)


def provider_for(settings: DashboardSettings, environment: str) -> DeployTarget:
    """The provider that serves `environment` (`settings.provider_of` decides which kind)."""
    kind = settings.provider_of(environment)
    if kind == "runpod":
        if not settings.runpod_api_key:
            raise ProviderSetupError(
                f"environment {environment!r} deploys to RunPod but RUNPOD_API_KEY is not set: set it, "
                f"or set DASHBOARD_PROVIDER_{environment.upper().replace('-', '_')}=local"
            )
        provider: DeployTarget = _runpod_provider(settings)
        return provider
    return RuntimeProvider(settings.runtime_url, read_runtime_token(settings))


def find_by_name(provider: DeployTarget, name: str) -> list[EndpointInfo]:
    """Endpoints named `name`, or [] when the provider cannot list them."""
    finder = getattr(provider, "find", None)
    return list(finder(name)) if callable(finder) else []
