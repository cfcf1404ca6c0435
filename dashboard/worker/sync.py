"""The periodic sync (Celery beat): the record reconciled with what the providers really run.

Each cycle, per environment, one `list_endpoints(project)` call to the provider and the library's
pure `reconcile` decide:

- *drift*: the serving config differs from the row's snapshot: stored on the row (`observed.drift`),
  shown field by field with "apply stored config" and "adopt serving config";
- *missing*: the row's endpoint is gone: the row is marked `missing` (never shown ready);
- *orphans*: endpoints with the project's marker that no row knows. One whose target matches an
  endpoint config with nothing recorded in that environment (a CLI deploy) is recorded as a
  deployment (`created_by` "cli:<user>"); the others are listed on the Orphans page;
- endpoints marked "undeploy all, then delete" lose their config once nothing of them is left.

It also resends tasks whose worker stopped, applies scaling saved while the queue was down, and
trims the embedded broker's delivered messages. The database work is batched: the number of
statements per cycle does not grow with the number of endpoints. A cycle that changed nothing
logs at DEBUG only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy import Engine, create_engine, delete, func, or_, select, text, update
from sqlalchemy.exc import OperationalError

from dashboard.configs import snapshot_from_release, snapshot_values
from dashboard.models import (
    BUILD_ACTIVE,
    DEPLOYMENT_ACTIVE,
    AuditEvent,
    Build,
    Deployment,
    Endpoint,
    OrphanEndpoint,
    SyncLock,
    utc_now,
)
from dashboard.queries import serving_rows
from dashboard.worker.context import Context, is_transient, note
from dashboard.worker.leases import claim_deployment, new_owner, release_lease
from dashboard.worker.releases import run_deployment, summarize
from podroute.deploy.model import ActualEndpoint, Reconciliation, RecordedDeployment, Target
from podroute.deploy.reconcile import reconcile
from podroute.providers.base import DeployError

logger = logging.getLogger("dashboard.worker.sync")

Enqueue = Callable[[str, int], None]
"""`enqueue(task_name, row_id)`: how the sync sends a task again."""

QUEUED_BY_SYNC = ("scale", "apply", "adopt")
"""Actions the sync runs itself when their task never arrived (the queue was down when saved)."""


@dataclass
class SyncReport:
    """What one cycle changed (it is logged at INFO only when something did)."""

    recorded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    orphans_new: list[str] = field(default_factory=list)
    orphans_gone: int = 0
    drift_changed: int = 0
    deleted_configs: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    resent: int = 0
    applied: int = 0

    @property
    def changed(self) -> bool:
        """True when the cycle recorded, marked, deleted or resent anything."""
        return bool(
            self.recorded
            or self.missing
            or self.orphans_new
            or self.orphans_gone
            or self.drift_changed
            or self.deleted_configs
            or self.resent
            or self.applied
        )


@dataclass
class _Snapshot:
    """The database side of one cycle, read with a fixed number of queries."""

    serving: list[Deployment]
    busy: set[tuple[int, str]]
    known: set[str]
    """Provider endpoint ids some serving or running row points at (never orphans)."""
    endpoints: list[Endpoint]
    orphans: list[OrphanEndpoint]
    newest_id: int
    """The newest deployment id when read: rows made after it mean an operation started since."""


def sync_status(context: Context, enqueue: Enqueue) -> SyncReport | None:
    """One sync cycle (see the module docstring); returns what it changed, or None when another
    run holds the sync lock (cycles never overlap)."""
    owner = new_owner()
    if not _claim_sync(context, owner):
        logger.debug("sync skipped: another run holds the lock")
        return None
    try:
        return _cycle(context, enqueue)
    finally:
        with context.sessions.begin() as session:
            session.execute(
                update(SyncLock).where(SyncLock.id == 1, SyncLock.owner == owner).values(until=None)
            )


def _claim_sync(context: Context, owner: str) -> bool:
    now = utc_now()
    until = now + timedelta(seconds=max(context.settings.lease_s, context.settings.sync_interval_s) * 4)
    with context.sessions.begin() as session:
        claimed = session.execute(
            update(SyncLock)
            .where(SyncLock.id == 1, or_(SyncLock.until.is_(None), SyncLock.until < now))
            .values(owner=owner, until=until)
        )
        return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


def _cycle(context: Context, enqueue: Enqueue) -> SyncReport:
    report = SyncReport()
    report.resent = _recover(context, enqueue)
    report.applied = _apply_pending(context)
    snapshot = _read(context)
    listings = _list_endpoints(context, report)
    _reconcile_all(context, snapshot, listings, report)
    _delete_requested(context, listings, report)
    trim_broker(context)
    level = logging.INFO if report.changed else logging.DEBUG
    logger.log(level, "sync", extra={"changes": _summary(report)})
    if report.unavailable:
        logger.warning("provider unavailable during sync", extra={"environments": report.unavailable})
    return report


def _summary(report: SyncReport) -> dict[str, Any]:
    return {name: value for name, value in vars(report).items() if value}


def _read(context: Context) -> _Snapshot:
    with context.sessions() as session:
        serving = list(session.scalars(serving_rows()))
        running = session.execute(
            select(Deployment.endpoint_id, Deployment.environment, Deployment.external_id).where(
                Deployment.status.in_(DEPLOYMENT_ACTIVE)
            )
        ).all()
        busy = {(row.endpoint_id, row.environment) for row in running}
        known = {row.external_id for row in running if row.external_id}
        known |= {row.external_id for row in serving if row.external_id}
        endpoints = list(session.scalars(select(Endpoint)))
        orphans = list(session.scalars(select(OrphanEndpoint)))
        newest_id = session.scalar(select(func.max(Deployment.id))) or 0
    return _Snapshot(serving, busy, known, endpoints, orphans, newest_id)


def _list_endpoints(context: Context, report: SyncReport) -> dict[str, list[ActualEndpoint]]:
    """Environment -> its provider's marked endpoints of this project (environments whose provider
    did not answer are left out: nothing is concluded from a listing that failed)."""
    listings: dict[str, list[ActualEndpoint]] = {}
    for environment in context.settings.environments:
        try:
            with context.providers(context.settings, environment, None) as provider:
                listings[environment] = provider.list_endpoints(context.project)
        except (DeployError, OSError) as error:
            report.unavailable.append(f"{environment}: {error}")
    return listings


def _records(
    context: Context, rows: Iterable[Deployment], by_id: dict[int, Endpoint]
) -> list[RecordedDeployment]:
    return [
        RecordedDeployment(
            target=context.target(by_id[row.endpoint_id], row.environment),
            endpoint_id=row.external_id,
            config=snapshot_values(row.config),
            build=row.build_hash,
        )
        for row in rows
        if row.endpoint_id in by_id
    ]


def _reconcile_all(
    context: Context, snapshot: _Snapshot, listings: dict[str, list[ActualEndpoint]], report: SyncReport
) -> None:
    by_id = {endpoint.id: endpoint for endpoint in snapshot.endpoints}
    updates: list[dict[str, Any]] = []
    new_rows: list[Deployment] = []
    new_orphans: list[OrphanEndpoint] = []
    seen_orphans: set[tuple[str, str]] = set()
    now = utc_now()
    for environment, listing in listings.items():
        rows = [row for row in snapshot.serving if row.environment == environment]
        result = reconcile(context.project, environment, _records(context, rows, by_id), listing)
        actual = {endpoint.id: endpoint for endpoint in listing}
        idle = [row for row in rows if (row.endpoint_id, environment) not in snapshot.busy]
        updates += _row_updates(idle, actual, result, report, now)
        for endpoint in result.orphans:
            if endpoint.id in snapshot.known:
                continue  # a running operation's row points at it
            owner = _owner(endpoint.target, snapshot, environment)
            if owner is not None and (owner.id, environment) in snapshot.busy:
                continue  # an operation in flight is making it; its row will know it
            if owner is not None and endpoint.release is not None:
                kind = context.settings.provider_of(environment)
                new_rows.append(_recorded(owner, environment, kind, endpoint, now))
                report.recorded.append(f"{owner.name}@{environment}: {endpoint.id}")
                continue
            seen_orphans.add((environment, endpoint.id))
            if not any(
                (o.environment, o.external_id) == (environment, endpoint.id) for o in snapshot.orphans
            ):
                new_orphans.append(_orphan(endpoint, environment, now))
                report.orphans_new.append(f"{environment}: {endpoint.id}")
    gone = [
        orphan.id
        for orphan in snapshot.orphans
        if orphan.environment in listings and (orphan.environment, orphan.external_id) not in seen_orphans
    ]
    report.orphans_gone = len(gone)
    if not (updates or new_rows or new_orphans or gone):
        return
    with context.sessions.begin() as session:
        started = set(
            session.execute(
                select(Deployment.endpoint_id, Deployment.environment).where(
                    Deployment.id > snapshot.newest_id
                )
            ).tuples()
        )
        if started:  # an operation began while the provider was listed: leave its rows to it
            updates = [u for u in updates if (u["endpoint_id"], u["environment"]) not in started]
            new_rows = [r for r in new_rows if (r.endpoint_id, r.environment) not in started]
        if updates:
            session.execute(update(Deployment), [_without_keys(u) for u in updates])
        session.add_all([*new_rows, *new_orphans])
        if gone:
            session.execute(delete(OrphanEndpoint).where(OrphanEndpoint.id.in_(gone)))


def _without_keys(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if key not in ("endpoint_id", "environment")}


def _row_updates(
    rows: list[Deployment],
    actual: dict[str, ActualEndpoint],
    result: Reconciliation,
    report: SyncReport,
    now: Any,
) -> list[dict[str, Any]]:
    drift = {item.endpoint_id: item for item in result.drift}
    updates: list[dict[str, Any]] = []
    for row in rows:
        endpoint = actual.get(row.external_id)
        if endpoint is None:
            line = f"the provider no longer has endpoint {row.external_id}: marked missing"
            updates.append(
                {
                    "id": row.id,
                    "status": "missing",
                    "synced_at": now,
                    "log": [*row.log, line][-200:],
                    **_key(row),
                }
            )
            report.missing.append(f"{row.environment}: {row.external_id}")
            continue
        fields = drift[row.external_id].fields if row.external_id in drift else ()
        observed = {
            **summarize(endpoint),
            "drift": [{"name": f.name, "stored": f.stored, "serving": f.serving} for f in fields],
        }
        if observed["drift"] != (row.observed.get("drift") or []):
            report.drift_changed += 1
        if observed != row.observed:
            updates.append({"id": row.id, "observed": observed, "synced_at": now, **_key(row)})
    return updates


def _key(row: Deployment) -> dict[str, Any]:
    return {"endpoint_id": row.endpoint_id, "environment": row.environment}


def _owner(target: Target | None, snapshot: _Snapshot, environment: str) -> Endpoint | None:
    """The endpoint config a marked endpoint's target belongs to, when nothing serves it there yet."""
    if target is None:
        return None
    serving = {(row.endpoint_id, row.environment) for row in snapshot.serving}
    for endpoint in snapshot.endpoints:
        if (endpoint.service, endpoint.resource) == (target.service, target.resource):
            return None if (endpoint.id, environment) in serving else endpoint
    return None


def _recorded(owner: Endpoint, environment: str, kind: str, endpoint: ActualEndpoint, now: Any) -> Deployment:
    """A row for a deployment another tool made (the CLI), as the provider describes it."""
    release = endpoint.release
    assert release is not None
    config = {**release.config, **endpoint.overrides}
    author = release.deployed_by or "cli:unknown"
    return Deployment(
        endpoint_id=owner.id,
        environment=environment,
        provider=kind,
        action="deploy",
        status="ready",
        step="done",
        progress=100,
        external_id=endpoint.id,
        url=endpoint.url,
        release=release.number,
        build_hash=release.build,
        config=snapshot_from_release(owner, config),
        created_by=author[:64],
        observed={**summarize(endpoint), "drift": []},
        log=[f"found on the provider: release {release.number} by {author}, recorded by the sync"],
        created_at=now,
        updated_at=now,
        finished_at=now,
        synced_at=now,
    )


def _orphan(endpoint: ActualEndpoint, environment: str, now: Any) -> OrphanEndpoint:
    target = endpoint.target
    return OrphanEndpoint(
        environment=environment,
        external_id=endpoint.id,
        name=endpoint.name,
        url=endpoint.url,
        target=target.key if target else "",
        labels=dict(endpoint.labels),
        seen_at=now,
        error="",
    )


def _delete_requested(
    context: Context, listings: dict[str, list[ActualEndpoint]], report: SyncReport
) -> None:
    """Delete configs marked "undeploy all, then delete" once nothing of them is left anywhere."""
    if set(listings) != set(context.settings.environments):
        return  # a provider did not answer: gone cannot be confirmed
    with context.sessions() as session:
        marked = list(session.scalars(select(Endpoint).where(Endpoint.delete_requested_at.is_not(None))))
        if not marked:
            return
        serving = {row.endpoint_id for row in session.scalars(serving_rows())}
        busy = set(
            session.scalars(select(Deployment.endpoint_id).where(Deployment.status.in_(DEPLOYMENT_ACTIVE)))
        )
    on_provider = {
        (e.target.service, e.target.resource) for listing in listings.values() for e in listing if e.target
    }
    done = [
        e
        for e in marked
        if e.id not in serving and e.id not in busy and (e.service, e.resource) not in on_provider
    ]
    if not done:
        return
    with context.sessions.begin() as session:
        for endpoint in done:
            session.add(
                AuditEvent(
                    at=utc_now(),
                    username=endpoint.delete_requested_by or "system",
                    action="delete",
                    target_type="endpoint",
                    target_id=endpoint.id,
                    target_name=endpoint.name,
                    changes={"name": [endpoint.name, None], "undeployed": [None, "confirmed gone"]},
                )
            )
        session.execute(delete(Endpoint).where(Endpoint.id.in_([e.id for e in done])))
    report.deleted_configs = [e.name for e in done]


def _apply_pending(context: Context) -> int:
    """Run scaling entries whose task never arrived (saved while the queue was down)."""
    waited = utc_now() - timedelta(seconds=context.settings.sync_interval_s)
    with context.sessions() as session:
        pending = list(
            session.scalars(
                select(Deployment.id).where(
                    Deployment.action.in_(QUEUED_BY_SYNC),
                    Deployment.status == "queued",
                    Deployment.attempts == 0,
                    Deployment.created_at < waited,
                )
            )
        )
    applied = 0
    for deployment_id in pending:
        owner = new_owner()
        if claim_deployment(context, deployment_id, owner) != "claimed":
            continue
        note(context, Deployment, deployment_id, "applied by the sync (its task never arrived)")
        try:
            run_deployment(context, deployment_id)
        except Exception as error:  # the next cycle tries again; one row must not stop the sync
            release_lease(context, deployment_id, owner)
            if not is_transient(error):
                logger.exception(
                    "applying a pending scaling change failed", extra={"deployment": deployment_id}
                )
            continue
        applied += 1
    return applied


def _recover(context: Context, enqueue: Enqueue) -> int:
    now = utc_now()
    stale = now - timedelta(seconds=context.settings.lease_s)
    with context.sessions() as session:
        deployments = session.scalars(
            select(Deployment.id).where(
                Deployment.status.in_(DEPLOYMENT_ACTIVE),
                or_(
                    Deployment.lease_until < now,
                    Deployment.lease_until.is_(None) & (Deployment.updated_at < stale),
                ),
            )
        ).all()
        builds = session.scalars(
            select(Build.id).where(Build.status.in_(BUILD_ACTIVE), Build.updated_at < stale)
        ).all()
    for deployment_id in deployments:
        logger.warning(
            "deployment task stopped without finishing; enqueueing it again",
            extra={"deployment": deployment_id},
        )
        note(context, Deployment, deployment_id, "the worker running this stopped; resuming")
        enqueue("dashboard.tasks.deploy_endpoint", deployment_id)
    for build_id in builds:
        note(context, Build, build_id, "the worker running this stopped; building again")
        enqueue("dashboard.tasks.build_endpoint", build_id)
    return len(deployments) + len(builds)


@cache
def _broker_engine(url: str) -> Engine:
    return create_engine(url)


def trim_broker(context: Context) -> int:
    """Delete the embedded SQLite broker's delivered messages; returns how many.

    kombu's SQLAlchemy transport only hides a message once a worker takes it (`visible = 0`) and
    never reads it again (an unacknowledged one comes back as a new row), so without this the table
    grows by one row per task, sync cycles included, forever.
    """
    if not context.settings.uses_embedded_broker:
        return 0
    url = context.settings.celery_broker_url.removeprefix("sqla+")
    try:
        with _broker_engine(url).begin() as connection:
            result = connection.execute(text("DELETE FROM kombu_message WHERE visible = 0"))
    except OperationalError:  # no message table yet (nothing was ever sent), or the file is busy
        return 0
    return int(result.rowcount)
