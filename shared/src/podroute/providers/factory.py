"""`provider_for`: the one place that turns an environment's settings into a provider.

Both tools call it: the CLI with an environment of `.podroute/deployments.json`, the dashboard
with its own settings. Tokens are read by `read_runtime_token`, the one token reader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from podroute.providers.base import DeployError, Provider
from podroute.providers.local import LocalRuntimeProvider
from podroute.providers.runpod.http import RunPodSettings
from podroute.providers.runpod.provider import RunPodProvider

ProviderKind = Literal["local", "runpod"]


@dataclass(frozen=True)
class ProviderSettings:
    """Which provider an environment deploys to, and how to reach it."""

    kind: ProviderKind = "local"
    runtime_url: str = "http://localhost:8800"
    runtime_token: str = field(default="", repr=False)
    """The runtime's control token; empty: read `token_file` (or PODROUTE_RUNTIME_TOKEN)."""
    token_file: Path = Path(".podroute/runtime/token")
    runpod_api: Literal["rest", "graphql"] = "rest"
    runpod_api_key: str = field(default="", repr=False)
    """RunPod's account key; empty: RUNPOD_API_KEY."""
    images: Mapping[str, str] = field(default_factory=dict)
    """RunPod: image reference by artifact sha256 or `service/resource`."""

    @classmethod
    def from_environment(cls, environment: Mapping[str, Any]) -> ProviderSettings:
        """Settings from an environment of `.podroute/deployments.json`."""
        kind = environment.get("provider")
        if kind == "runpod":
            return cls(kind="runpod", runpod_api=environment.get("api") or "rest",
                       images=dict(environment.get("images") or {}))  # fmt: skip
        if kind != "local":
            raise DeployError(f"unknown provider {kind!r}; use 'local' or 'runpod'")
        return cls(
            kind="local",
            runtime_url=str(environment["runtime_url"]),
            token_file=Path(environment["token_file"]),
        )


def read_runtime_token(path: Path, environ: Mapping[str, str] | None = None) -> str:
    """PODROUTE_RUNTIME_TOKEN, else the runtime's token file; DeployError naming the fix."""
    env = os.environ if environ is None else environ
    if token := env.get("PODROUTE_RUNTIME_TOKEN", "").strip():
        return token
    try:
        return path.read_text().strip()
    except OSError:
        raise DeployError(
            f"no runtime token at {path}; start 'podroute runtime' once (it writes the token) "
            "or set PODROUTE_RUNTIME_TOKEN"
        ) from None


def provider_for(settings: ProviderSettings) -> Provider:
    """The provider the settings name; close it after use (it is a context manager)."""
    if settings.kind == "runpod":
        overrides: dict[str, Any] = {"api": settings.runpod_api}
        if settings.runpod_api_key:
            overrides["api_key"] = settings.runpod_api_key
        return RunPodProvider(RunPodSettings.from_env(**overrides), images=settings.images)
    token = settings.runtime_token or read_runtime_token(settings.token_file)
    return LocalRuntimeProvider(settings.runtime_url, token)
