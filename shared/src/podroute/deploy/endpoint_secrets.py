"""The provider secrets a deployment made for one endpoint, and removing them with the endpoint.

A secret env value (the dashboard's write-only env values, `SecretEnv`) is stored at the provider
as `env_secret_name(target, key, version)`: one secret per endpoint, variable and value. Nothing
else refers to those secrets, so once the endpoint is deleted they only keep a user's secret
values at the provider. Secrets a user made and named (`Secret("name")` in code, `podroute
secret add`) are never touched: a secret is the endpoint's only when its whole name is the one
`env_secret_name` gives for the endpoint's target and one of its releases' env variables.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from podroute.deploy.model import ActualEndpoint, env_secret_name
from podroute.deploy.preflight import VERSION_DIGITS
from podroute.providers.base import DeployError, Provider

log = logging.getLogger("podroute.deploy")


@dataclass
class SecretCleanup:
    """What removing an endpoint's secrets did: the names removed, those left with why, and why
    none were looked for (`unlisted`: the endpoint or the provider's secrets could not be read)."""

    removed: list[str] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)
    unlisted: str = ""

    def summary(self) -> str:
        """One line for a person ("" when the endpoint had no secrets of its own)."""
        parts = []
        if self.removed:
            parts.append(f"removed {len(self.removed)} provider secret(s) of its secret env values")
        if self.left:
            names = ", ".join(sorted(self.left))
            parts.append(f"could not remove {names}; delete them with `podroute secret delete ENV NAME`")
        if self.unlisted:
            parts.append(
                f"its provider secrets were not looked for ({self.unlisted}); "
                "`podroute secret list ENV` shows what is left"
            )
        return "; ".join(parts)

    def after(self, line: str) -> str:
        """`line` (what was done to the endpoint) followed by the summary, when there is one."""
        summary = self.summary()
        return f"{line}; {summary}" if summary else line


def env_keys(endpoint: ActualEndpoint) -> set[str]:
    """Every env variable any release of `endpoint` set (a release keeps `env` or `env_keys`)."""
    keys: set[str] = set()
    for release in [*endpoint.releases, *([endpoint.release] if endpoint.release else [])]:
        keys.update(release.config.get("env_keys") or ())
        keys.update(release.config.get("env") or {})
    return keys


def owned_secrets(endpoint: ActualEndpoint, held: Iterable[str]) -> list[str]:
    """The names among `held` that are secret env values stored for `endpoint` (sorted)."""
    target = endpoint.target
    if target is None:
        return []
    keys = env_keys(endpoint)
    return sorted(
        name
        for name in set(held)
        if len(name) > VERSION_DIGITS
        and any(env_secret_name(target, key, name[-VERSION_DIGITS:]) == name for key in keys)
    )


def remove_owned_secrets(provider: Provider, endpoint: ActualEndpoint) -> SecretCleanup:
    """Delete the provider secrets stored for `endpoint`'s secret env values (call it once the
    endpoint is gone). A secret the provider refuses to delete is reported, not raised: the
    endpoint, the thing that costs money, is already deleted."""
    cleanup = SecretCleanup()
    if not env_keys(endpoint):
        return cleanup
    try:
        names = owned_secrets(endpoint, (info.name for info in provider.list_secrets()))
    except DeployError as error:
        log.warning("secrets of endpoint %s were not listed: %s", endpoint.id, error)
        return SecretCleanup(unlisted=str(error))
    for name in names:
        try:
            provider.delete_secret(name)
        except DeployError as error:
            log.warning("secret %s of endpoint %s was not deleted: %s", name, endpoint.id, error)
            cleanup.left[name] = str(error)
        else:
            cleanup.removed.append(name)
    if cleanup.removed:
        log.info("endpoint %s: removed secrets %s", endpoint.id, ", ".join(cleanup.removed))
    return cleanup
