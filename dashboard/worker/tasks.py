"""Celery tasks: thin wrappers that take a row id and call the worker's jobs.

They acknowledge late and are rejected back to the queue if their worker dies; provider outages
are retried with exponential backoff; after the last retry the row is marked failed with the reason.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from celery import Task, shared_task  # type: ignore[import-untyped]

from dashboard.db import create_sync_sessions
from dashboard.settings import DashboardSettings
from dashboard.worker.builds import fail_build, run_build
from dashboard.worker.celery_app import TASK_NAMES, DashboardCelery, send
from dashboard.worker.context import Context, TransientError
from dashboard.worker.leases import claim_build, claim_deployment, keep_lease, new_owner, release_lease
from dashboard.worker.orphans import fail_orphan, run_delete_orphan
from dashboard.worker.releases import fail_deployment, run_deployment
from dashboard.worker.sync import sync_status as sync_all

logger = logging.getLogger("dashboard.worker.tasks")

MAX_RETRIES = 6
RELIABLE: dict[str, Any] = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}


@cache
def _context_for(settings: DashboardSettings) -> Context:
    return Context(settings=settings, sessions=create_sync_sessions(settings.url))


def context(task: Task) -> Context:
    """The pipeline context of the app running `task` (one engine per worker process)."""
    app = task.app
    settings = app.settings if isinstance(app, DashboardCelery) else DashboardSettings.from_env()
    return _context_for(settings)


def _backoff(task: Task) -> int:
    return int(min(60, 2 ** (task.request.retries or 0)))


def _run_deployment(task: Task, deployment_id: int) -> None:
    ctx = context(task)
    owner = new_owner()
    claim = claim_deployment(ctx, deployment_id, owner)
    if claim != "claimed":
        logger.info("deployment not run", extra={"deployment": deployment_id, "claim": claim})
        return
    try:
        with keep_lease(ctx, deployment_id, owner):
            run_deployment(ctx, deployment_id)
    except TransientError as error:
        release_lease(ctx, deployment_id, owner)
        if task.request.retries >= MAX_RETRIES:
            fail_deployment(ctx, deployment_id, f"the provider stayed unavailable: {error}; try again later")
            return
        raise task.retry(countdown=_backoff(task), exc=error) from None
    except Exception as error:
        fail_deployment(ctx, deployment_id, f"unexpected error ({type(error).__name__}); see the worker log")
        raise


@shared_task(name=TASK_NAMES["deploy"], **RELIABLE)  # type: ignore[untyped-decorator]
def deploy_endpoint(self: Task, deployment_id: int) -> None:
    """Roll a build out to an environment (or resume doing so) until it answers /ping 200."""
    _run_deployment(self, deployment_id)


@shared_task(name=TASK_NAMES["rollback"], **RELIABLE)  # type: ignore[untyped-decorator]
def rollback_endpoint(self: Task, deployment_id: int) -> None:
    """Serve an earlier release's build and environment again (no rebuild)."""
    _run_deployment(self, deployment_id)


@shared_task(name=TASK_NAMES["undeploy"], **RELIABLE)  # type: ignore[untyped-decorator]
def undeploy_endpoint(self: Task, deployment_id: int) -> None:
    """Delete an environment's endpoint; afterwards nothing of it runs."""
    _run_deployment(self, deployment_id)


@shared_task(name=TASK_NAMES["build"], **RELIABLE)  # type: ignore[untyped-decorator]
def build_endpoint(self: Task, build_id: int) -> None:
    """Build the endpoint's service into an artifact (in a child process)."""
    ctx = context(self)
    if claim_build(ctx, build_id) != "claimed":
        return
    try:
        run_build(ctx, build_id)
    except Exception as error:
        fail_build(ctx, build_id, f"unexpected error ({type(error).__name__}: {error})")
        raise


@shared_task(name=TASK_NAMES["scale"], **RELIABLE)  # type: ignore[untyped-decorator]
def scale_endpoint(self: Task, deployment_id: int) -> None:
    """Apply a scaling entry (or "apply stored" / "adopt serving") to its live endpoint at once."""
    _run_deployment(self, deployment_id)


@shared_task(name=TASK_NAMES["orphan"], **RELIABLE)  # type: ignore[untyped-decorator]
def delete_orphan(self: Task, orphan_id: int) -> None:
    """Delete an orphan endpoint on its provider (confirmed gone by a fresh listing)."""
    try:
        run_delete_orphan(context(self), orphan_id)
    except TransientError as error:
        if self.request.retries >= MAX_RETRIES:
            fail_orphan(context(self), orphan_id, f"the provider stayed unavailable: {error}")
            return
        raise self.retry(countdown=_backoff(self), exc=error) from None


@shared_task(name=TASK_NAMES["sync"], bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
def sync_status(self: Task) -> None:
    """Reconcile the record with the providers and resume tasks whose worker stopped (run by beat)."""
    action_of = {name: action for action, name in TASK_NAMES.items()}
    sync_all(context(self), lambda name, row_id: send(self.app, action_of[name], row_id))
