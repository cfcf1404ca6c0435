"""Which store holds an environment's secrets, and the pre-deploy secret check for builds.

- `provider: local` environments keep secrets in their runtime (encrypted, behind the control API);
- `provider: runpod` environments use RunPod's platform secrets.

`check_deploy_secrets` is what a deploy runs before creating anything: it fails naming every
referenced secret the environment's store lacks, and reports plain env values that look like
credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from podroute.build import BuildResult
from podroute.deploy import DeployError, LocalRuntimeProvider, provider_for
from podroute.runpod_api import RunPodSettings
from podroute.runpod_secrets import RunPodSecrets
from podroute.secrets import (
    SecretInfo,
    SecretStore,
    check_secrets,
    credential_warnings,
    missing_secrets_message,
    secret_references,
)


class RuntimeSecrets:
    """The local runtime's secrets, through its control API (`/control/secrets`)."""

    def __init__(self, provider: LocalRuntimeProvider) -> None:
        self._provider = provider

    def list_secrets(self) -> list[SecretInfo]:
        """GET /control/secrets."""
        body = self._provider.control("GET", "/secrets")
        return [
            SecretInfo(
                name=str(raw["name"]),
                id=str(raw.get("id", "")),
                description=str(raw.get("description", "")),
                created_at=str(raw.get("createdAt", "")),
            )
            for raw in body.get("secrets", [])
        ]

    def add_secret(self, name: str, value: str, description: str = "") -> SecretInfo:
        """POST /control/secrets (the runtime encrypts the value)."""
        payload = {"name": name, "value": value, "description": description}
        body = self._provider.control("POST", "/secrets", json=payload)
        return SecretInfo(name=str(body["name"]), id=str(body.get("id", "")), description=description)

    def delete_secret(self, name: str) -> None:
        """DELETE /control/secrets/<name>."""
        self._provider.control("DELETE", f"/secrets/{name}")


def secret_store_for(environment: Mapping[str, Any]) -> SecretStore:
    """The store of an environment's provider."""
    if environment.get("provider") == "runpod":
        overrides = {"api": environment["api"]} if environment.get("api") else {}
        return RunPodSecrets(RunPodSettings.from_env(**overrides))
    provider = provider_for(dict(environment))
    if not isinstance(provider, LocalRuntimeProvider):
        raise DeployError(f"provider {environment.get('provider')!r} has no secret store")
    return RuntimeSecrets(provider)


def where_secrets_live(environment: Mapping[str, Any]) -> str:
    """Words for the place an environment's secrets are kept."""
    if environment.get("provider") == "runpod":
        return "RunPod (platform secrets)"
    return f"the local runtime at {environment.get('runtime_url', '?')}"


def check_deploy_secrets(
    environment: Mapping[str, Any],
    env_name: str,
    builds: list[BuildResult],
    warn: Callable[[str], None],
) -> None:
    """Before a deploy creates anything: warn about credential-like plain values, then fail
    (DeployError) naming every referenced secret the environment's store does not hold."""
    for build in builds:
        for warning in credential_warnings(build.manifest["resource"].get("env") or {}):
            warn(f"warning: {build.service}/{build.resource}: {warning}")
    configs = [build.manifest["resource"] for build in builds]
    if not any(secret_references(config.get("env") or {}) for config in configs):
        return
    store = secret_store_for(environment)
    missing = sorted({name for config in configs for name in check_secrets(config, store)})
    if missing:
        raise DeployError(missing_secrets_message(missing, where_secrets_live(environment), env_name))
