"""Deployment snapshots: what a release deployed, and how two snapshots (or the draft) differ.

A deployment row's `config` is immutable once written; these functions only read it. A "secret"
env variable is snapshotted as the version of its value, never the value
(`dashboard.secret_versions`), so diffs compare versions and show '***' only.
"""

from __future__ import annotations

from typing import Any

from dashboard.configs import ConfigState, describe_changes, state_of
from dashboard.models import Deployment, Endpoint, User
from dashboard.secret_versions import draft_env, snapshot_env
from dashboard.secrets_at_rest import key_ring


def config_snapshot(endpoint: Endpoint) -> dict[str, Any]:
    """What a deployment deploys: the config fields, the env (secret variables as the version of
    their value, never the value) and the names of the secret variables."""
    state = state_of(endpoint)
    return {
        "fields": state.fields,
        "env": snapshot_env(state.env, key_ring()),
        "secrets": sorted(key for key, (_value, secret) in state.env.items() if secret),
    }


def _state(config: dict[str, Any]) -> ConfigState:
    secrets = set(config.get("secrets", []))
    return ConfigState(
        dict(config.get("fields", {})),
        {key: (value, key in secrets) for key, value in config.get("env", {}).items()},
    )


def release_diff(release: Deployment, current: Deployment) -> dict[str, list[Any]]:
    """Field -> [in `release`, in `current`] for config and build; secrets appear only as '***'."""
    changes = describe_changes(_state(release.config), _state(current.config))
    old_hash, new_hash = release.build_hash, current.build_hash
    if old_hash != new_hash:
        changes = {"build": [old_hash[:12] or None, new_hash[:12] or None], **changes}
    return changes


def draft_changes(current: Deployment, endpoint: Endpoint) -> dict[str, list[Any]]:
    """Field -> [serving, draft]: how the stored draft differs from the config `current` released
    (a secret value counts as changed when its version differs; it shows as '***')."""
    draft = state_of(endpoint)
    marked = ConfigState(draft.fields, draft_env(draft.env, current.config, key_ring()))
    return describe_changes(_state(current.config), marked)


def restored_by_rollback(current: Deployment) -> bool:
    """True when what serves came from a rollback (also after scaling the restored release)."""
    return current.action == "rollback" or (current.action == "scale" and current.rollback_of_id is not None)


def next_row(
    current: Deployment,
    user: User,
    action: str,
    config: dict[str, Any],
    line: str,
    *,
    release_of: Deployment | None = None,
    rollback_of_id: int | None = None,
    status: str = "queued",
) -> Deployment:
    """A queued operation on the provider endpoint `current` serves (a new history row: the rows
    before it never change), releasing `release_of`'s build and release (default: `current`'s)."""
    source = release_of or current
    return Deployment(
        endpoint_id=current.endpoint_id,
        build_id=source.build_id,
        environment=current.environment,
        provider=current.provider,
        action=action,
        status=status,
        step="queued",
        external_id=current.external_id,
        url=current.url,
        release=source.release,
        build_hash=source.build_hash,
        rollback_of_id=rollback_of_id,
        config=config,
        created_by=user.username,
        log=[line],
    )
