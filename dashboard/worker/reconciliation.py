"""The database side of the sync: the serving rows reconciled with the providers' listings.

Drift and missing marks, deploys another tool made (recorded), orphans (listed), and configs whose
"undeploy all, then delete" has completed (deleted). Statements per cycle do not grow with the
number of endpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, update

from dashboard.configs import snapshot_from_release, snapshot_values
from dashboard.models import (
    DEPLOYMENT_ACTIVE,
    AuditEvent,
    Deployment,
    Endpoint,
    OrphanEndpoint,
    utc_now,
)
from dashboard.queries import serving_rows
from dashboard.worker.context import Context
from dashboard.worker.releases import summarize
from podroute.deploy.model import ActualEndpoint, Reconciliation, RecordedDeployment, Target
from podroute.deploy.reconcile import reconcile

logger = logging.getLogger("dashboard.worker.sync")


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
class SyncSnapshot:
    """The database side of one cycle, read with a fixed number of queries."""

    serving: list[Deployment]
    busy: set[tuple[int, str]]
    known: set[str]
    """Provider endpoint ids some serving or running row points at (never orphans)."""
    endpoints: list[Endpoint]
    orphans: list[OrphanEndpoint]
    newest_id: int
    """The newest deployment id when read: rows made after it mean an operation started since."""


def read_snapshot(context: Context) -> SyncSnapshot:
    """The serving and running rows, endpoint configs and known orphans, in five queries."""
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
    return SyncSnapshot(serving, busy, known, endpoints, orphans, newest_id)


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


def reconcile_all(
    context: Context, snapshot: SyncSnapshot, listings: dict[str, list[ActualEndpoint]], report: SyncReport
) -> None:
    """Store drift and missing marks, record CLI deploys, refresh the orphan list: one transaction."""
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
        started = {
            tuple(row)
            for row in session.execute(
                select(Deployment.endpoint_id, Deployment.environment).where(
                    Deployment.id > snapshot.newest_id
                )
            )
        }
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


def _owner(target: Target | None, snapshot: SyncSnapshot, environment: str) -> Endpoint | None:
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


def delete_requested(context: Context, listings: dict[str, list[ActualEndpoint]], report: SyncReport) -> None:
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
