"""What a rollout checks and prepares before it creates anything: secrets and credentials.

- `credential_lines`: one warning per plain env value that looks like a credential (never quoting it),
  pointing to `Secret("name")` (or, in the dashboard, the "secret" box);
- `with_secret_env`: the config with secret env values (the dashboard's "secret" variables) replaced
  by references to provider secrets named by `env_secret_name`, so no value reaches a release;
- `require_secrets`: DeployError naming every referenced secret the provider does not hold;
- `store_secret_env`: puts those values into the provider's secret store (replacing older values).

`roll_out` runs them in that order, before its upload; the CLI also runs `require_secrets` over every
build of a `deploy send` first, so a multi-service deploy fails before its first endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from podroute.deploy.model import DesiredConfig, Target, env_secret_name
from podroute.providers.base import DeployError, Provider
from podroute.secrets import (
    SecretStore,
    check_secrets,
    credential_warnings,
    missing_secrets_message,
    secret_reference,
)


def credential_lines(target: Target, config: DesiredConfig) -> list[str]:
    """Warnings (for `progress`) about plain env values of `config` that look like credentials."""
    return [f"warning: {target.key}: {line}" for line in credential_warnings(config.values.get("env", {}))]


def with_secret_env(target: Target, config: DesiredConfig, secret_env: Mapping[str, str]) -> DesiredConfig:
    """`config` with each env variable of `secret_env` referring to its provider secret instead of
    holding its value (whatever `config` held for it)."""
    if not secret_env:
        return config
    env = dict(config.values.get("env", {}))
    env.update({key: secret_reference(env_secret_name(target, key)) for key in secret_env})
    return DesiredConfig(values={**config.values, "env": env}, sources=dict(config.sources))


def require_secrets(
    store: SecretStore, configs: Iterable[DesiredConfig], environment: str, provided: Iterable[str] = ()
) -> None:
    """DeployError naming every secret the configs' env refers to that `store` lacks (the names in
    `provided` are about to be stored, so they count as present). Asks the store only when some env
    refers to a secret."""
    missing: set[str] = set()
    for config in configs:
        missing.update(check_secrets(config.values, store))
    missing -= set(provided)
    if missing:
        where = f"the provider of environment {environment!r}"
        raise DeployError(missing_secrets_message(sorted(missing), where, environment))


def store_secret_env(provider: Provider, target: Target, secret_env: Mapping[str, str]) -> list[str]:
    """Store each value of `secret_env` as the provider secret `env_secret_name(target, key)`
    (replacing an older value); returns the names."""
    names = []
    for key, value in sorted(secret_env.items()):
        name = env_secret_name(target, key)
        provider.add_secret(name, value, f"env {key} of {target.key} ({target.environment})", replace=True)
        names.append(name)
    return names
