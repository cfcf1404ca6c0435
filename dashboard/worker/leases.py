"""Leases: a run claims its row with an atomic UPDATE, so a second delivery never does the work twice.

A second delivery of the same task finds the row finished (and does nothing) or leased (and leaves
it: if the holder dies, the lease runs out and the sync enqueues the task again). A keeper thread
renews the lease while the run works.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Literal

from sqlalchemy import or_, update

from dashboard.models import DEPLOYMENT_ACTIVE, Build, Deployment, utc_now
from dashboard.worker.context import Context

logger = logging.getLogger("dashboard.worker.leases")

Claim = Literal["claimed", "finished", "leased", "missing"]


def claim_deployment(context: Context, deployment_id: int, owner: str) -> Claim:
    """Take the row's lease unless it is finished or another run holds a live lease."""
    now = utc_now()
    until = now + timedelta(seconds=context.settings.lease_s)
    with context.sessions.begin() as session:
        result = session.execute(
            update(Deployment)
            .where(
                Deployment.id == deployment_id,
                Deployment.status.in_(DEPLOYMENT_ACTIVE),
                or_(Deployment.lease_until.is_(None), Deployment.lease_until < now),
            )
            .values(lease_owner=owner, lease_until=until, attempts=Deployment.attempts + 1, updated_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return "claimed"
        row = session.get(Deployment, deployment_id)
    if row is None:
        return "missing"
    return "leased" if row.active else "finished"


def release_lease(context: Context, deployment_id: int, owner: str) -> None:
    """Give the lease back (before a retry, so the retried task can claim the row at once)."""
    with context.sessions.begin() as session:
        session.execute(
            update(Deployment)
            .where(Deployment.id == deployment_id, Deployment.lease_owner == owner)
            .values(lease_until=None, lease_owner="")
        )


@contextmanager
def keep_lease(context: Context, deployment_id: int, owner: str) -> Iterator[None]:
    """Renew the lease every third of its length until the block ends."""
    stop = threading.Event()
    period = context.settings.lease_s / 3

    def renew() -> None:
        while not stop.wait(period):
            try:
                with context.sessions.begin() as session:
                    session.execute(
                        update(Deployment)
                        .where(Deployment.id == deployment_id, Deployment.lease_owner == owner)
                        .values(lease_until=utc_now() + timedelta(seconds=context.settings.lease_s))
                    )
            except Exception:  # a busy database must not kill the task; the next renewal retries
                logger.warning(
                    "renewing the lease failed", exc_info=True, extra={"deployment": deployment_id}
                )

    thread = threading.Thread(target=renew, name=f"lease-{deployment_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def new_owner() -> str:
    """A lease owner id unique to one run of one task."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:16]}"


def claim_build(context: Context, build_id: int) -> Claim:
    """Start a queued build, or take over one whose worker stopped updating it."""
    now = utc_now()
    stale = now - timedelta(seconds=context.settings.lease_s)
    with context.sessions.begin() as session:
        result = session.execute(
            update(Build)
            .where(
                Build.id == build_id,
                or_(Build.status == "queued", (Build.status == "building") & (Build.updated_at < stale)),
            )
            .values(status="building", updated_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return "claimed"
        row = session.get(Build, build_id)
    if row is None:
        return "missing"
    return "leased" if row.active else "finished"
