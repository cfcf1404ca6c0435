"""Query functions. Each takes the session first and leaves committing to the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from dashboard.models import (
    DEPLOYMENT_ACTIVE,
    SETTLED_STATUSES,
    AuditEvent,
    Build,
    Deployment,
    Endpoint,
    OrphanEndpoint,
    User,
    utc_now,
)

NOT_DEPLOYED = "not deployed"
"""The status of an endpoint that has never been deployed."""

ENDPOINT_STATUSES = (NOT_DEPLOYED, "queued", "deploying", "ready", "failed", "deleting", "deleted", "missing")
"""Statuses the endpoints list can filter by."""


@dataclass(frozen=True)
class EndpointRow:
    """An endpoint with its status (its latest deployment's, or 'not deployed')."""

    endpoint: Endpoint
    status: str


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    """The user with this id, or None."""
    return await session.get(User, user_id)


async def get_user_by_name(session: AsyncSession, username: str) -> User | None:
    """The user with this username, or None."""
    return await session.scalar(select(User).where(User.username == username))


async def count_users(session: AsyncSession) -> int:
    """How many users exist."""
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def add_user(session: AsyncSession, username: str, password_hash: str) -> User:
    """Add a user (the caller commits; a duplicate name fails on flush)."""
    user = User(username=username, password_hash=password_hash, is_active=True)
    session.add(user)
    await session.flush()
    return user


def _latest_status() -> Any:
    latest = (
        select(Deployment.status)
        .where(Deployment.endpoint_id == Endpoint.id)
        .order_by(Deployment.created_at.desc(), Deployment.id.desc())
        .limit(1)
        .correlate(Endpoint)
        .scalar_subquery()
    )
    return func.coalesce(latest, NOT_DEPLOYED)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _with_status(status: str, environments: tuple[str, ...]) -> Any:
    """Endpoints where some environment's newest operation has `status`; for 'not deployed', where
    one of `environments` (any environment, when empty) has never been deployed to."""
    if status != NOT_DEPLOYED:
        newest = select(func.max(Deployment.id)).group_by(Deployment.endpoint_id, Deployment.environment)
        matching = select(Deployment.endpoint_id).where(
            Deployment.id.in_(newest), Deployment.status == status
        )
        return Endpoint.id.in_(matching)
    deployed = select(Deployment.endpoint_id)
    if environments:
        deployed = (
            deployed.where(Deployment.environment.in_(environments))
            .group_by(Deployment.endpoint_id)
            .having(func.count(Deployment.environment.distinct()) >= len(environments))
        )
    return Endpoint.id.not_in(deployed)


async def list_endpoints(
    session: AsyncSession,
    search: str = "",
    status: str = "",
    *,
    limit: int | None = None,
    offset: int = 0,
    environments: tuple[str, ...] = (),
) -> list[EndpointRow]:
    """Endpoints by name, filtered by a search text (name, service, image) and a status that some
    environment has (see `_with_status`); one page of them with `limit`/`offset` (each row's
    overall status, its newest operation's, is one indexed lookup)."""
    status_column = _latest_status().label("status")
    query = select(Endpoint, status_column).order_by(Endpoint.name).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    if search:
        pattern = f"%{_escape_like(search.lower())}%"
        query = query.where(
            or_(
                *(
                    func.lower(column).like(pattern, escape="\\")
                    for column in (Endpoint.name, Endpoint.service, Endpoint.resource, Endpoint.image_name)
                )
            )
        )
    if status:
        query = query.where(_with_status(status, environments))
    result = await session.execute(query)
    return [EndpointRow(endpoint, row_status) for endpoint, row_status in result.all()]


async def get_endpoint(session: AsyncSession, endpoint_id: int) -> Endpoint | None:
    """The endpoint with this id and its environment, or None."""
    return await session.scalar(
        select(Endpoint).where(Endpoint.id == endpoint_id).options(selectinload(Endpoint.env_vars))
    )


async def get_endpoint_by_name(session: AsyncSession, name: str) -> Endpoint | None:
    """The endpoint with this name and its environment, or None."""
    return await session.scalar(
        select(Endpoint).where(Endpoint.name == name).options(selectinload(Endpoint.env_vars))
    )


async def find_endpoints_for_code(session: AsyncSession, service: str, resource: str) -> list[Endpoint]:
    """Every endpoint that deploys `resource` of `service` (more than one is ambiguous), by id."""
    query = (
        select(Endpoint)
        .where(Endpoint.service == service, Endpoint.resource == resource)
        .options(selectinload(Endpoint.env_vars))
        .order_by(Endpoint.id)
        .limit(10)
    )
    return list(await session.scalars(query))


async def find_endpoint_for_code(session: AsyncSession, service: str, resource: str) -> Endpoint | None:
    """The endpoint that deploys `resource` of `service`, else the one named `resource`, else None."""
    found = await find_endpoints_for_code(session, service, resource)
    return found[0] if found else await get_endpoint_by_name(session, resource)


async def endpoint_status(session: AsyncSession, endpoint_id: int) -> str:
    """The status of one endpoint (its latest deployment's, or 'not deployed')."""
    status = await session.scalar(select(_latest_status()).where(Endpoint.id == endpoint_id))
    return str(status or NOT_DEPLOYED)


@dataclass(frozen=True)
class EnvironmentStatus:
    """The newest operation of an endpoint in one environment: its status and what it was."""

    status: str
    action: str


async def environment_statuses(
    session: AsyncSession, endpoint_ids: list[int]
) -> dict[int, dict[str, EnvironmentStatus]]:
    """Endpoint id -> environment -> its newest deployment row's status, in one query (an
    environment never deployed to is absent)."""
    if not endpoint_ids:
        return {}
    newest = (
        select(func.max(Deployment.id))
        .where(Deployment.endpoint_id.in_(endpoint_ids))
        .group_by(Deployment.endpoint_id, Deployment.environment)
    )
    query = select(
        Deployment.endpoint_id, Deployment.environment, Deployment.status, Deployment.action
    ).where(Deployment.id.in_(newest))
    found: dict[int, dict[str, EnvironmentStatus]] = {}
    for endpoint_id, environment, status, action in (await session.execute(query)).all():
        found.setdefault(endpoint_id, {})[environment] = EnvironmentStatus(status, action)
    return found


async def add_audit_event(
    session: AsyncSession,
    user: User | None,
    action: str,
    target: Endpoint | User | None = None,
    changes: dict[str, Any] | None = None,
    *,
    target_name: str = "",
) -> AuditEvent:
    """Record who did what to which target; `changes` must already be secret-free."""
    event = AuditEvent(
        user_id=user.id if user else None,
        username=user.username if user else "system",
        action=action,
        target_type=type(target).__name__.lower() if target is not None else "",
        target_id=target.id if target is not None else None,
        target_name=target_name or _name_of(target),
        changes=changes or {},
        at=utc_now(),
    )
    session.add(event)
    await session.flush()
    return event


def _name_of(target: Endpoint | User | None) -> str:
    if isinstance(target, Endpoint):
        return target.name
    if isinstance(target, User):
        return target.username
    return ""


async def list_audit_events(
    session: AsyncSession, *, limit: int = 50, before_id: int | None = None, target_id: int | None = None
) -> list[AuditEvent]:
    """Audit events, newest first; page with `before_id`, narrow to one endpoint with `target_id`."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    if target_id is not None:
        query = query.where(AuditEvent.target_type == "endpoint", AuditEvent.target_id == target_id)
    return list(await session.scalars(query))


async def latest_build(session: AsyncSession, endpoint_id: int, *, succeeded: bool = False) -> Build | None:
    """The endpoint's newest build (only successful ones with `succeeded=True`), or None."""
    query = select(Build).where(Build.endpoint_id == endpoint_id).order_by(Build.id.desc()).limit(1)
    if succeeded:
        query = query.where(Build.status == "succeeded")
    return await session.scalar(query)


async def build_with_hash(session: AsyncSession, endpoint_id: int, artifact_hash: str) -> int | None:
    """The id of the endpoint's newest successful build of that artifact, or None (not built here)."""
    if not artifact_hash:
        return None
    query = (
        select(Build.id)
        .where(
            Build.endpoint_id == endpoint_id,
            Build.artifact_hash == artifact_hash,
            Build.status == "succeeded",
        )
        .order_by(Build.id.desc())
        .limit(1)
    )
    found: int | None = await session.scalar(query)
    return found


async def get_build(session: AsyncSession, build_id: int) -> Build | None:
    """The build with this id, or None."""
    return await session.get(Build, build_id)


async def get_deployment(session: AsyncSession, deployment_id: int) -> Deployment | None:
    """The deployment with this id (its build loaded), or None."""
    return await session.scalar(
        select(Deployment).where(Deployment.id == deployment_id).options(selectinload(Deployment.build))
    )


async def list_deployments(
    session: AsyncSession, endpoint_id: int, environment: str, limit: int = 20
) -> list[Deployment]:
    """An environment's deployments of an endpoint, newest first (builds loaded)."""
    query = (
        select(Deployment)
        .where(Deployment.endpoint_id == endpoint_id, Deployment.environment == environment)
        .options(selectinload(Deployment.build))
        .order_by(Deployment.id.desc())
        .limit(limit)
    )
    return list(await session.scalars(query))


async def active_deployment(session: AsyncSession, endpoint_id: int, environment: str) -> Deployment | None:
    """The environment's deployment whose task has not finished, or None."""
    return await session.scalar(
        select(Deployment)
        .where(
            Deployment.endpoint_id == endpoint_id,
            Deployment.environment == environment,
            Deployment.status.in_(DEPLOYMENT_ACTIVE),
        )
        .order_by(Deployment.id.desc())
        .limit(1)
    )


def serving_rows(endpoint_id: int | None = None) -> Select[Deployment]:
    """One statement for what serves everywhere: per (endpoint, environment) the newest settled row
    (ready, deleted or missing), kept when it is ready. The worker's sync uses it too."""
    newest = select(func.max(Deployment.id)).where(Deployment.status.in_(SETTLED_STATUSES))
    if endpoint_id is not None:
        newest = newest.where(Deployment.endpoint_id == endpoint_id)
    newest = newest.group_by(Deployment.endpoint_id, Deployment.environment)
    return select(Deployment).where(Deployment.id.in_(newest), Deployment.status == "ready")


async def live_deployments(session: AsyncSession, endpoint_id: int) -> list[Deployment]:
    """What keeps an endpoint config from being deleted: per environment, the serving release and
    any operation still running (a deploy in flight may have created a provider endpoint)."""
    serving = list(await session.scalars(serving_rows(endpoint_id)))
    running = await session.scalars(
        select(Deployment).where(
            Deployment.endpoint_id == endpoint_id, Deployment.status.in_(DEPLOYMENT_ACTIVE)
        )
    )
    busy = {row.environment: row for row in running}
    rows = {row.environment: row for row in serving}
    rows.update({env: row for env, row in busy.items() if env not in rows})
    return [rows[env] for env in sorted(rows)]


async def current_deployment(session: AsyncSession, endpoint_id: int, environment: str) -> Deployment | None:
    """The deployment serving the environment now (the newest settled row, if it is ready)."""
    row = await session.scalar(
        select(Deployment)
        .where(
            Deployment.endpoint_id == endpoint_id,
            Deployment.environment == environment,
            Deployment.status.in_(SETTLED_STATUSES),
        )
        .options(selectinload(Deployment.build))
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    return row if row is not None and row.status == "ready" else None


async def gateway_urls(session: AsyncSession, endpoint_id: int) -> list[str]:
    """The distinct gateway URLs the endpoint's deployments were given (for the try-it allowlist)."""
    query = (
        select(Deployment.url)
        .where(Deployment.endpoint_id == endpoint_id, Deployment.url != "")
        .distinct()
        .limit(100)
    )
    return list(await session.scalars(query))


async def existing_endpoint_ids(session: AsyncSession, ids: set[int]) -> set[int]:
    """The ids among `ids` whose endpoint still exists (audit links to the others say it is gone)."""
    if not ids:
        return set()
    return set(await session.scalars(select(Endpoint.id).where(Endpoint.id.in_(ids))))


async def deletion_event(session: AsyncSession, endpoint_id: int) -> AuditEvent | None:
    """The audit entry that deleted endpoint `endpoint_id`, if it was deleted (ids are never reused)."""
    return await session.scalar(
        select(AuditEvent)
        .where(
            AuditEvent.target_type == "endpoint",
            AuditEvent.target_id == endpoint_id,
            AuditEvent.action == "delete",
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )


async def list_orphans(session: AsyncSession) -> list[OrphanEndpoint]:
    """The orphans the last sync found, by environment and endpoint id."""
    query = select(OrphanEndpoint).order_by(OrphanEndpoint.environment, OrphanEndpoint.external_id)
    return list(await session.scalars(query))


async def get_orphan(session: AsyncSession, orphan_id: int) -> OrphanEndpoint | None:
    """The orphan with this id, or None."""
    return await session.get(OrphanEndpoint, orphan_id)
