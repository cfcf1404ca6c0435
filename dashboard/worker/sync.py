"""The periodic sync (Celery beat): refresh what the providers run and resume stopped tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import or_, select

from dashboard.models import BUILD_ACTIVE, DEPLOYMENT_ACTIVE, Build, Deployment, utc_now
from dashboard.providers import is_not_found
from dashboard.worker.context import Context, note
from dashboard.worker.releases import live_deployments, summarize
from podroute.deploy import DeployError

logger = logging.getLogger("dashboard.worker.sync")

Enqueue = Callable[[str, int], None]
"""`enqueue(task_name, row_id)`: how the sync sends a task again."""


def sync_status(context: Context, enqueue: Enqueue) -> None:
    """Refresh live endpoints' workers, and enqueue again any task whose worker stopped."""
    _recover(context, enqueue)
    with context.sessions() as session:
        live = live_deployments(session)
    for row in live:
        try:
            info = context.providers(context.settings, row.environment, None).status(row.external_id)
        except DeployError as error:
            observed = {"error": str(error), "missing": is_not_found(error)}
        except Exception as error:  # one broken environment must not stop the others from syncing
            observed = {"error": f"{type(error).__name__}: {error}"}
        else:
            observed = summarize(info.status)
        with context.sessions.begin() as session:
            stored = session.get(Deployment, row.id)
            if stored is not None:
                stored.observed, stored.synced_at = observed, utc_now()


def _recover(context: Context, enqueue: Enqueue) -> None:
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
