"""Ending a drift: "apply stored config" and "adopt serving config" as queued history entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.configs import resource_of
from dashboard.models import Deployment, Endpoint, User, utc_now
from dashboard.queries import add_audit_event, build_with_hash, current_deployment
from dashboard.releases import ReleaseConflictError, refuse_if_busy
from dashboard.scaling import SCALING_COLUMNS
from dashboard.snapshots import next_row, restored_by_rollback
from podroute.resources import ResourceConfigError


def _follow_up(current: Deployment, user: User, action: str, config: dict[str, Any], line: str) -> Deployment:
    """A queued operation on the serving endpoint that keeps its release (scale, apply, adopt)."""
    restored = current.rollback_of_id if restored_by_rollback(current) else None
    row = next_row(current, user, action, config, line, rollback_of_id=restored)
    row.observed = {"drift": list(current.observed.get("drift", []))}
    return row


async def _serving_with_drift(session: AsyncSession, endpoint: Endpoint, environment: str) -> Deployment:
    await refuse_if_busy(session, endpoint, environment)
    current = await current_deployment(session, endpoint.id, environment)
    if current is None:
        raise ReleaseConflictError(f"nothing is deployed in {environment}")
    if not current.observed.get("drift"):
        raise ReleaseConflictError(f"{environment} serves the stored config; there is no drift to end")
    return current


async def queue_apply_stored(
    session: AsyncSession, user: User, endpoint: Endpoint, environment: str
) -> Deployment:
    """Queue "apply stored config": the provider serves the serving row's snapshot again."""
    current = await _serving_with_drift(session, endpoint, environment)
    names = ", ".join(f["name"] for f in current.observed["drift"])
    row = _follow_up(current, user, "apply", current.config, f"queued: apply the stored config ({names})")
    session.add(row)
    await session.flush()
    await add_audit_event(session, user, "apply-stored", endpoint, {"environment": [None, environment]})
    return row


ADOPTED_COMPUTE: dict[str, str] = {
    "gpus": "gpus",
    "gpuCount": "gpu_count",
    "instanceIds": "instance_ids",
    "flashboot": "flashboot",
    "locations": "locations",
}
"""Compute fields a provider reports and the config can take as they are: Flash field -> column."""


@dataclass
class Adoption:
    """What "adopt serving config" stores, and what it leaves (with the reason)."""

    config: dict[str, Any]
    """The new snapshot: the serving values in place of the stored ones."""
    changes: dict[str, list[Any]] = field(default_factory=dict)
    """Adopted field -> [stored, serving]."""
    env_removed: list[str] = field(default_factory=list)
    release: dict[str, Any] | None = None
    """The serving release taken over (number, build) when the build drifted."""
    kept: dict[str, str] = field(default_factory=dict)
    """Field -> why it could not be adopted."""


def plan_adoption(
    config: dict[str, Any], drift: list[dict[str, Any]], release: dict[str, Any] | None
) -> Adoption:
    """What adopting a row's drift changes (pure).

    - scaling fields and `executionTimeoutMs`: the serving values (the provider also records them
      as the endpoint's desired overrides, so the CLI agrees);
    - compute fields the provider reports (GPU pools and count, CPU instances, FlashBoot,
      locations): the serving values;
    - env keys: keys the provider no longer serves are removed; keys it serves that are not stored
      are *not* adopted: providers report env keys, never values (they may be secrets, and the
      library never copies them out of the provider), so there is no value to store;
    - build (and image): the serving release is taken over (its number and build) when the sync
      saw which release serves (a CLI deploy on top of the dashboard's); otherwise not.
    """
    fields = dict(config.get("fields", {}))
    env = dict(config.get("env", {}))
    plan = Adoption(config={})
    for item in drift:
        name, stored, serving = item["name"], item["stored"], item["serving"]
        if name in SCALING_COLUMNS:
            fields[name] = int(serving)
            plan.changes[name] = [stored, int(serving)]
        elif name in ADOPTED_COMPUTE:
            fields[name] = serving
            plan.changes[name] = [stored, serving]
        elif name == "env_keys":
            gone = sorted(set(stored) - set(serving))
            added = sorted(set(serving) - set(stored))
            for key in gone:
                env.pop(key, None)
            if gone:
                plan.env_removed = gone
                plan.changes["env_keys"] = [sorted(stored), sorted(set(stored) - set(gone))]
            if added:
                plan.kept["env_keys"] = (
                    f"{', '.join(added)}: providers report env keys, never their values; set them "
                    "with Edit and deploy, or apply the stored config"
                )
        elif name in ("build", "image") and release is not None and release.get("number") is not None:
            plan.release = release
            plan.changes.setdefault("release", [None, int(release["number"])])
        else:
            plan.kept[name] = "only a release changes it: deploy, or apply the stored config"
    secrets = [key for key in config.get("secrets", []) if key in env]
    plan.config = {**config, "fields": fields, "env": env, "secrets": secrets}
    return plan


async def queue_adopt_serving(
    session: AsyncSession, user: User, endpoint: Endpoint, environment: str
) -> Deployment:
    """Queue "adopt serving config": what the provider serves becomes the stored (desired) config.

    See `plan_adoption` for what is adopted and why the rest is not. The endpoint's config takes
    the adopted values (validated by podroute's rules), the new history entry snapshots them, and
    the worker records the serving scaling on the provider. ReleaseConflictError when nothing of
    the drift can be adopted.
    """
    current = await _serving_with_drift(session, endpoint, environment)
    plan = plan_adoption(current.config, current.observed["drift"], current.observed.get("release"))
    if not plan.changes:
        why = "; ".join(f"{name}: {reason}" for name, reason in plan.kept.items())
        raise ReleaseConflictError(f"{environment}: nothing that differs can be adopted ({why})")
    for name, (_stored, serving) in plan.changes.items():
        column = SCALING_COLUMNS.get(name) or ADOPTED_COMPUTE.get(name)
        if column:
            setattr(endpoint, column, serving)
    endpoint.env_vars = [var for var in endpoint.env_vars if var.key not in plan.env_removed]
    try:
        resource_of(endpoint)
    except ResourceConfigError as error:
        raise ReleaseConflictError(f"the serving config is not a valid config here: {error}") from None
    endpoint.version += 1
    endpoint.updated_at = utc_now()
    line = "queued: adopt the serving " + ", ".join(
        f"{k}={v[1]}" for k, v in plan.changes.items() if k != "env_keys"
    )
    if plan.env_removed:
        line += f"; env keys no longer served removed: {', '.join(plan.env_removed)}"
    if plan.kept:
        line += "; not adopted: " + "; ".join(f"{name} ({reason})" for name, reason in plan.kept.items())
    row = _follow_up(current, user, "adopt", plan.config, line)
    if plan.release is not None:
        row.release = int(plan.release["number"])
        row.build_hash = str(plan.release.get("build", ""))
        row.build_id = await build_with_hash(session, endpoint.id, row.build_hash)
    session.add(row)
    await session.flush()
    await add_audit_event(
        session, user, "adopt-serving", endpoint, {"environment": [None, environment], **plan.changes}
    )
    return row
