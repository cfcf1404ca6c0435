"""Secret env variables in deployment snapshots: the version of the value, never the value.

A snapshot (`deployments.config`, a plain JSON column) records each "secret" env variable as
`secret-version:<12 hex>`: the keyed fingerprint of its value (`podroute.deploy.preflight.
secret_version`, keyed by the dashboard secret), which is also the version in the name of the
provider secret that holds it (`<endpoint name>-<KEY>-<version>`, `env_secret_name`). So:

- no secret value is stored in plain text (the value itself lives only in the encrypted `EnvVar`
  and at the provider);
- two snapshots, or a snapshot and the draft, still tell a changed value apart (their versions
  differ), while pages show '***' only;
- a snapshot deployed again (a rollback without a provider release number) refers to the very
  provider secret it was deployed with, which the provider still holds.

`secret_release` is the worker's side: every secret variable refers to the provider secret of its
version; the value comes from the encrypted `EnvVar` only while it is still the value the snapshot
versioned (so the provider secret can be created when missing). Any other version must already
be held by the provider (`require_held_secrets`).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dashboard.secrets_at_rest import KeyRing
from podroute.deploy.model import Target, env_secret_name
from podroute.deploy.preflight import SecretEnv, secret_version
from podroute.providers.base import DeployError, Provider
from podroute.secrets import secret_reference

VERSION_PREFIX = "secret-version:"
"""Marks a snapshot's env value as the version of a secret value (the value is not stored)."""


def secret_marker(key: str, value: str, fingerprint_key: bytes) -> str:
    """What a snapshot stores for secret variable `key` holding `value`: its version marker (an
    empty value stays empty: there is nothing to hide, and nothing is stored at the provider)."""
    return VERSION_PREFIX + secret_version(fingerprint_key, key, value) if value else ""


def marker_version(stored: str) -> str | None:
    """The version a snapshot's env value marks, or None when it is no version marker."""
    return stored[len(VERSION_PREFIX) :] if stored.startswith(VERSION_PREFIX) else None


def snapshot_env(env: Mapping[str, tuple[str, bool]], ring: KeyRing) -> dict[str, str]:
    """A config's env (key -> (value, secret)) as a snapshot stores it: plain values as they are,
    secret ones as version markers under the current dashboard secret."""
    return {
        key: secret_marker(key, value, ring.fingerprint_key) if secret else value
        for key, (value, secret) in env.items()
    }


def _matches(marker: str, key: str, value: str, ring: KeyRing) -> bool:
    version = marker_version(marker)
    if version is None or not value:
        return False
    return any(hmac.compare_digest(secret_version(k, key, value), version) for k in ring.fingerprint_keys)


def draft_env(
    env: Mapping[str, tuple[str, bool]], snapshot: Mapping[str, Any], ring: KeyRing
) -> dict[str, tuple[str, bool]]:
    """The draft's env (key -> (value, secret)) in a snapshot's terms, to compare with `snapshot`:
    a secret value becomes the marker `snapshot` holds when that marker versions this value under
    the current or an older dashboard secret (a rotated secret is no change), else its marker
    under the current one."""
    known = snapshot.get("env", {})
    marked = {}
    for key, (value, secret) in env.items():
        if secret and _matches(str(known.get(key, "")), key, value, ring):
            marked[key] = (str(known[key]), True)
        else:
            marked[key] = (secret_marker(key, value, ring.fingerprint_key) if secret else value, secret)
    return marked


@dataclass(frozen=True)
class SecretRelease:
    """How a snapshot's secret env variables are released to one target."""

    names: dict[str, str]
    """Env variable -> the provider secret its release refers to (named by the snapshot's version)."""
    secret_env: SecretEnv = field(repr=False)
    """The values the worker may store as provider secrets: those still equal to what it versioned."""

    @property
    def unstorable(self) -> dict[str, str]:
        """Env variable -> provider secret the provider must already hold (no value to store)."""
        return {key: name for key, name in self.names.items() if key not in self.secret_env.values}


def secret_release(
    snapshot: Mapping[str, Any], target: Target, current: Mapping[str, str], ring: KeyRing
) -> SecretRelease:
    """How `snapshot`'s secret variables are released to `target`, given the endpoint's current
    secret values (`current`, from the encrypted `EnvVar` rows). DeployError when a secret variable
    of the snapshot holds no version (a release another tool made records keys only)."""
    env = snapshot.get("env", {})
    names: dict[str, str] = {}
    values: dict[str, str] = {}
    for key in snapshot.get("secrets", []):
        stored = str(env.get(key, ""))
        if not stored:
            continue
        version = marker_version(stored)
        if version is None:
            raise DeployError(
                f"this deployment's config records no version of secret env {key} (a release "
                "another tool made keeps env keys only), so it cannot be deployed again: deploy "
                "the current config instead"
            )
        names[key] = env_secret_name(target, key, version)
        value = current.get(key, "")
        if value and hmac.compare_digest(secret_version(ring.fingerprint_key, key, value), version):
            values[key] = value
    return SecretRelease(names, SecretEnv(values, fingerprint_key=ring.fingerprint_key))


def released_snapshot(snapshot: Mapping[str, Any], release: SecretRelease) -> dict[str, Any]:
    """`snapshot` with each secret variable referring to its provider secret (what the release's
    env holds) instead of its version marker."""
    env = dict(snapshot.get("env", {}))
    env.update({key: secret_reference(name) for key, name in release.names.items()})
    return {**snapshot, "env": env}


def require_held_secrets(provider: Provider, release: SecretRelease) -> None:
    """DeployError naming every secret variable whose provider secret is gone while the dashboard
    has no value to store it again (it keeps only the version of the value a release had)."""
    needed = release.unstorable
    if not needed:
        return
    held = {info.name for info in provider.list_secrets()}
    missing = sorted(key for key, name in needed.items() if name not in held)
    if missing:
        raise DeployError(
            f"secret env {', '.join(missing)}: the provider no longer holds the value this "
            "deployment's config was made with, and the value changed since (the dashboard keeps "
            "only a version of each past value); nothing was created. Deploy the current config "
            "instead"
        )
