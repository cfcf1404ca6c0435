"""What a rollout checks and prepares before it creates anything: secrets and credentials.

- `credential_lines`: one warning per plain env value that looks like a credential (never quoting
  it), pointing to `Secret("name")` (or, in the dashboard, the "secret" box);
- `SecretEnv`: env values to keep as provider secrets (the dashboard's "secret" variables), each
  named by its version (`secret_version`, a keyed fingerprint of the value);
  `with_secret_env` puts references to them (`{{ RUNPOD_SECRET_<name> }}`, names by
  `env_secret_name`) in the config, so no value reaches a release, and `store_secret_env` creates
  the ones the provider does not hold yet;
- `require_secrets`: DeployError naming every referenced secret the provider does not hold.

`roll_out` runs them before its upload; the CLI also runs `require_secrets` over every build of a
`deploy send` first, so a multi-service deploy fails before its first endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from podroute.deploy.model import DesiredConfig, Target, env_secret_name
from podroute.providers.base import DeployError, Provider
from podroute.secrets import (
    check_secrets,
    credential_warnings,
    missing_secrets_message,
    secret_reference,
)


@dataclass(frozen=True)
class SecretEnv:
    """Env values to store as provider secrets, and the key that fingerprints them.

    The fingerprint (an HMAC of the value under `fingerprint_key`, which the caller keeps secret,
    e.g. derived from the dashboard's secret) names the value's version without revealing it.
    """

    values: Mapping[str, str] = field(repr=False)
    fingerprint_key: bytes = field(repr=False)

    def names(self, target: Target) -> dict[str, str]:
        """Env variable -> the provider secret that holds its current value."""
        return {
            key: env_secret_name(target, key, self._version(key, value)) for key, value in self.values.items()
        }

    def _version(self, key: str, value: str) -> str:
        return secret_version(self.fingerprint_key, key, value)


VERSION_DIGITS = 12
"""Hex digits of a secret value's version (`secret_version`), the end of its provider secret's name."""


def secret_version(fingerprint_key: bytes, key: str, value: str) -> str:
    """The version of value `value` of env variable `key` (12 hex digits of an HMAC-SHA256 under
    `fingerprint_key`): what `SecretEnv` puts in the provider secret's name; a caller may store it
    to tell values apart without keeping them."""
    message = f"{key}\0{value}".encode()
    return hmac.new(fingerprint_key, message, hashlib.sha256).hexdigest()[:VERSION_DIGITS]


def credential_lines(target: Target, config: DesiredConfig) -> list[str]:
    """Warnings (for `progress`) about plain env values of `config` that look like credentials."""
    return [f"warning: {target.key}: {line}" for line in credential_warnings(config.values.get("env", {}))]


def with_secret_env(target: Target, config: DesiredConfig, secret_env: SecretEnv | None) -> DesiredConfig:
    """`config` with each env variable of `secret_env` referring to its provider secret instead of
    holding its value (whatever `config` held for it)."""
    if secret_env is None or not secret_env.values:
        return config
    env = dict(config.values.get("env", {}))
    env.update({key: secret_reference(name) for key, name in secret_env.names(target).items()})
    return DesiredConfig(values={**config.values, "env": env}, sources=dict(config.sources))


def require_secrets(
    provider: Provider, configs: Iterable[DesiredConfig], environment: str, provided: Iterable[str] = ()
) -> None:
    """DeployError naming every secret the configs' env refers to that the provider lacks (the names
    in `provided` are about to be stored, so they count as present). Asks the provider only when
    some env refers to a secret."""
    missing: set[str] = set()
    for config in configs:
        missing.update(check_secrets(config.values, provider))
    missing -= set(provided)
    if missing:
        where = f"the {provider.kind} provider of environment {environment!r}"
        raise DeployError(missing_secrets_message(sorted(missing), where, environment))


def store_secret_env(provider: Provider, target: Target, secret_env: SecretEnv) -> list[str]:
    """Create the provider secrets of `secret_env` the provider does not hold yet; returns their
    names (an existing name already holds that very value: its name is the value's fingerprint)."""
    held = {info.name for info in provider.list_secrets()}
    created = []
    for key, name in sorted(secret_env.names(target).items()):
        if name in held:
            continue
        provider.add_secret(name, secret_env.values[key], f"env {key} of {target.key} ({target.environment})")
        created.append(name)
    return created
