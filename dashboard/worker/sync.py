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
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, update

from dashboard.models import SyncLock, utc_now
from dashboard.worker.context import Context
from dashboard.worker.housekeeping import Enqueue, apply_pending, recover_stopped, trim_broker
from dashboard.worker.leases import new_owner
from dashboard.worker.reconciliation import (
    SyncReport,
    delete_requested,
    read_snapshot,
    reconcile_all,
)
from dashboard.worker.usage import Sampled, record_samples, sampling_due
from podroute.deploy.model import ActualEndpoint
from podroute.providers.base import DeployError, Provider

logger = logging.getLogger("dashboard.worker.sync")


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
    report.resent = recover_stopped(context, enqueue)
    report.applied = apply_pending(context)
    snapshot = read_snapshot(context)
    listings = _list_endpoints(context, report)
    reconcile_all(context, snapshot, listings, report)
    delete_requested(context, listings, report)
    trim_broker(context)
    level = logging.INFO if report.changed else logging.DEBUG
    logger.log(level, "sync", extra={"changes": _summary(report)})
    if report.unavailable:
        logger.warning("provider unavailable during sync", extra={"environments": report.unavailable})
    return report


def _summary(report: SyncReport) -> dict[str, Any]:
    return {name: value for name, value in vars(report).items() if value}


def _list_endpoints(context: Context, report: SyncReport) -> dict[str, list[ActualEndpoint]]:
    """Environment -> its provider's marked endpoints of this project (environments whose provider
    did not answer are left out: nothing is concluded from a listing that failed).

    When sampling is due, the same provider also reads the listed endpoints' worker counts (RunPod:
    its health API; the local runtime keeps its own history and returns none); they are stored
    as samples and fill in the listing's counts, so the workers widget shows them too.
    """
    listings: dict[str, list[ActualEndpoint]] = {}
    samples: list[Sampled] = []
    due = sampling_due(context)
    for environment in context.settings.environments:
        try:
            with context.providers(context.settings, environment, None) as provider:
                listing = provider.list_endpoints(context.project)
                if due and listing:
                    samples += _sample(provider, environment, listing)
                listings[environment] = listing
        except (DeployError, OSError) as error:
            report.unavailable.append(f"{environment}: {error}")
    if due:
        record_samples(context, samples)
    return listings


def _sample(provider: Provider, environment: str, listing: list[ActualEndpoint]) -> list[Sampled]:
    # environments may share one account (and listing): each samples only its own endpoints
    own = [e for e in listing if e.target is not None and e.target.environment == environment]
    if not own:
        return []
    counts = provider.sample_workers([endpoint.id for endpoint in own])
    now = utc_now()
    for endpoint in own:
        if endpoint.id in counts and not endpoint.workers:
            endpoint.workers = dict(counts[endpoint.id])
    return [Sampled(environment, endpoint_id, found, now) for endpoint_id, found in counts.items()]
