"""Orphans: provider endpoints with the project's marker that no record knows, deleted on request.

Only endpoints the sync listed as orphans (marked for this project and environment) can be
deleted here; endpoints without the marker are never listed, so never touched.
"""

from __future__ import annotations

from sqlalchemy import delete

from dashboard.models import OrphanEndpoint
from dashboard.worker.context import Context, TransientError, is_transient
from podroute.deploy.rollout import undeploy
from podroute.providers.base import DeployError


def run_delete_orphan(context: Context, orphan_id: int) -> None:
    """Delete the orphan's provider endpoint (the library confirms it is gone), then its row."""
    with context.sessions() as session:
        orphan = session.get(OrphanEndpoint, orphan_id)
    if orphan is None or orphan.delete_requested_at is None:
        return
    try:
        with context.providers(context.settings, orphan.environment, None) as provider:
            undeploy(provider, orphan.external_id)
    except DeployError as error:
        if is_transient(error):
            raise TransientError(str(error)) from error
        return fail_orphan(context, orphan_id, str(error))
    with context.sessions.begin() as session:
        session.execute(delete(OrphanEndpoint).where(OrphanEndpoint.id == orphan_id))


def fail_orphan(context: Context, orphan_id: int, message: str) -> None:
    """Record why deleting an orphan failed (the page shows it; deleting again retries)."""
    with context.sessions.begin() as session:
        orphan = session.get(OrphanEndpoint, orphan_id)
        if orphan is not None:
            orphan.error, orphan.delete_requested_at = message, None
