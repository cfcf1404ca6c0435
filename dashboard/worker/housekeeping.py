"""The sync's housekeeping: tasks whose worker stopped are sent again, scaling saved while the
queue was down is applied, and the embedded broker's delivered messages are deleted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import cache

from sqlalchemy import Engine, create_engine, or_, select, text
from sqlalchemy.exc import OperationalError

from dashboard.models import BUILD_ACTIVE, DEPLOYMENT_ACTIVE, Build, Deployment, utc_now
from dashboard.worker.context import Context, is_transient, note
from dashboard.worker.leases import claim_deployment, new_owner, release_lease
from dashboard.worker.releases import run_deployment

logger = logging.getLogger("dashboard.worker.sync")

Enqueue = Callable[[str, int], None]
"""`enqueue(task_name, row_id)`: how the sync sends a task again."""

QUEUED_BY_SYNC = ("scale", "apply", "adopt")
"""Actions the sync runs itself when their task never arrived (the queue was down when saved)."""


def apply_pending(context: Context) -> int:
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


def recover_stopped(context: Context, enqueue: Enqueue) -> int:
    """Enqueue again the deployments and builds whose worker stopped (lease or heartbeat ran out)."""
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
