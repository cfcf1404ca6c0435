"""Ending a drift: "apply stored config" and "adopt serving config" as queued history entries."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.models import Deployment, Endpoint, User, utc_now
from dashboard.queries import add_audit_event, current_deployment
from dashboard.releases import ReleaseConflictError, refuse_if_busy
from dashboard.scaling import SCALING_COLUMNS
from dashboard.snapshots import restored_by_rollback


def _follow_up(current: Deployment, user: User, action: str, config: dict[str, Any], line: str) -> Deployment:
    """A queued operation on the serving endpoint that keeps its release (scale, apply, adopt)."""
    return Deployment(
        endpoint_id=current.endpoint_id,
        build_id=current.build_id,
        environment=current.environment,
        provider=current.provider,
        action=action,
        status="queued",
        step="queued",
        external_id=current.external_id,
        url=current.url,
        release=current.release,
        build_hash=current.build_hash,
        rollback_of_id=current.rollback_of_id if restored_by_rollback(current) else None,
        config=config,
        observed={"drift": list(current.observed.get("drift", []))},
        created_by=user.username,
        log=[line],
    )


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


async def queue_adopt_serving(
    session: AsyncSession, user: User, endpoint: Endpoint, environment: str
) -> Deployment:
    """Queue "adopt serving config": the serving scaling becomes the stored (and desired) one.

    The new entry snapshots the serving values; the endpoint's scaling controls take them too.
    Env keys and builds cannot be adopted from a provider (it keeps no env values, and a build is
    a release): for those, deploy or apply the stored config.
    """
    current = await _serving_with_drift(session, endpoint, environment)
    drift = {f["name"]: f["serving"] for f in current.observed["drift"]}
    scaling = {name: int(value) for name, value in drift.items() if name in SCALING_COLUMNS}
    if not scaling:
        raise ReleaseConflictError(
            f"{environment} differs in {', '.join(drift)}, which only a release changes: deploy, or "
            "apply the stored config"
        )
    fields = {**current.config.get("fields", {}), **scaling}
    changes = {name: [current.config.get("fields", {}).get(name), value] for name, value in scaling.items()}
    for name, value in scaling.items():
        setattr(endpoint, SCALING_COLUMNS[name], value)
    endpoint.version += 1
    endpoint.updated_at = utc_now()
    line = "queued: adopt the serving " + ", ".join(f"{k}={v}" for k, v in scaling.items())
    row = _follow_up(current, user, "adopt", {**current.config, "fields": fields}, line)
    session.add(row)
    await session.flush()
    await add_audit_event(
        session, user, "adopt-serving", endpoint, {"environment": [None, environment], **changes}
    )
    return row
