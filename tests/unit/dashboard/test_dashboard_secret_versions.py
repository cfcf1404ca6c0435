"""Secret env variables in snapshots: the version of the value, never the value; what a deploy of a
snapshot refers to and may store; a rotated dashboard secret is no change of a draft."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.configs import ConfigState, describe_changes
from dashboard.secret_versions import (
    VERSION_PREFIX,
    draft_env,
    marker_version,
    released_snapshot,
    require_held_secrets,
    secret_release,
    snapshot_env,
)
from dashboard.secrets_at_rest import KeyRing
from podroute.deploy.model import Target, env_secret_name
from podroute.providers.base import DeployError
from podroute.secrets import SecretInfo

OLD = "old-dashboard-secret-long-enough-to-be-real"
NEW = "new-dashboard-secret-long-enough-to-be-real"
LAB = Target("proj", "production", "lab", "lab")


class HoldingProvider:
    """Holds the named provider secrets (all a deploy's check asks of a provider)."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def list_secrets(self) -> list[SecretInfo]:
        return [SecretInfo(name=name) for name in self.names]


def snapshot_of(env: dict[str, tuple[str, bool]], ring: KeyRing) -> dict[str, Any]:
    return {
        "fields": {},
        "env": snapshot_env(env, ring),
        "secrets": sorted(k for k, (_, s) in env.items() if s),
    }


def test_a_snapshot_keeps_plain_values_and_only_the_version_of_secret_ones() -> None:
    ring = KeyRing(OLD)
    snapshot = snapshot_of(
        {"MODE": ("fast", False), "TOKEN": ("hunter2-value", True), "NONE": ("", True)}, ring
    )
    assert snapshot["env"]["MODE"] == "fast" and snapshot["env"]["NONE"] == ""
    marker = snapshot["env"]["TOKEN"]
    assert marker.startswith(VERSION_PREFIX) and "hunter2" not in str(snapshot)
    assert (
        marker_version(marker) == marker.removeprefix(VERSION_PREFIX)
        and len(marker_version(marker) or "") == 12
    )
    assert snapshot_of({"TOKEN": ("hunter2-value", True)}, ring)["env"]["TOKEN"] == marker  # stable
    assert snapshot_of({"TOKEN": ("hunter3-value", True)}, ring)["env"]["TOKEN"] != marker
    assert snapshot_of({"TOKEN": ("hunter2-value", True)}, KeyRing(NEW))["env"]["TOKEN"] != marker


def test_a_changed_secret_shows_as_changed_and_a_rotated_dashboard_secret_does_not() -> None:
    old = KeyRing(OLD)
    serving = snapshot_of({"TOKEN": ("hunter2-value", True)}, old)
    rotated = KeyRing(NEW, [OLD])
    same = draft_env({"TOKEN": ("hunter2-value", True)}, serving, rotated)
    assert same == {"TOKEN": (serving["env"]["TOKEN"], True)}
    changed = draft_env({"TOKEN": ("hunter3-value", True)}, serving, rotated)
    before = ConfigState({}, {"TOKEN": (serving["env"]["TOKEN"], True)})
    assert describe_changes(before, ConfigState({}, changed)) == {"env.TOKEN": ["***", "*** (changed)"]}
    assert describe_changes(before, ConfigState({}, same)) == {}
    forgotten = draft_env({"TOKEN": ("hunter2-value", True)}, serving, KeyRing(NEW))
    assert forgotten["TOKEN"][0] != serving["env"]["TOKEN"]  # without the old secret, it cannot tell


def test_a_release_refers_to_the_versioned_secret_and_stores_only_the_value_it_versioned() -> None:
    ring = KeyRing(OLD)
    snapshot = snapshot_of({"MODE": ("fast", False), "TOKEN": ("hunter2-value", True)}, ring)
    version = marker_version(snapshot["env"]["TOKEN"]) or ""
    name = env_secret_name(LAB, "TOKEN", version)

    current = secret_release(snapshot, LAB, {"TOKEN": "hunter2-value"}, ring)
    assert current.names == {"TOKEN": name} and current.unstorable == {}
    assert current.secret_env.names(LAB) == {"TOKEN": name}  # the library names it the same way
    released = released_snapshot(snapshot, current)
    assert released["env"] == {"MODE": "fast", "TOKEN": f"{{{{ RUNPOD_SECRET_{name} }}}}"}
    assert snapshot["env"]["TOKEN"].startswith(VERSION_PREFIX)  # the snapshot itself is untouched

    edited = secret_release(snapshot, LAB, {"TOKEN": "edited-since"}, ring)
    assert edited.names == {"TOKEN": name} and dict(edited.secret_env.values) == {}
    require_held_secrets(HoldingProvider(name), edited)  # type: ignore[arg-type]
    with pytest.raises(DeployError, match=r"secret env TOKEN: the provider no longer holds"):
        require_held_secrets(HoldingProvider("other"), edited)  # type: ignore[arg-type]
    require_held_secrets(HoldingProvider(), current)  # type: ignore[arg-type]  # it can store it


def test_a_snapshot_without_versions_cannot_be_deployed_again() -> None:
    recorded = {"fields": {}, "env": {"TOKEN": "***"}, "secrets": ["TOKEN"]}
    with pytest.raises(DeployError, match=r"no version of secret env TOKEN.*deploy the current config"):
        secret_release(recorded, LAB, {"TOKEN": "hunter2-value"}, KeyRing(OLD))
    empty = {"fields": {}, "env": {"TOKEN": ""}, "secrets": ["TOKEN"]}
    assert secret_release(empty, LAB, {}, KeyRing(OLD)).names == {}
