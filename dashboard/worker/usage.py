"""Worker samples: where a provider keeps no usage history (RunPod), the sync reads each listed
endpoint's worker counts every `usage_interval_s` and stores them, so the dashboard can chart
workers over time and estimate cost. Two statements per cycle, however many endpoints there are:
one insert of every sample, one delete of those older than `SAMPLES_KEPT_S`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select

from dashboard.models import SAMPLES_KEPT_S, WorkerSample, utc_now
from dashboard.worker.context import Context

logger = logging.getLogger("dashboard.worker.sync")

BILLED_STATES = ("running", "idle", "initializing")
"""Worker states that cost money (RunPod bills a worker from start to full stop)."""


@dataclass(frozen=True)
class Sampled:
    """Worker counts of one provider endpoint in one environment, read at `at`."""

    environment: str
    external_id: str
    counts: dict[str, int]
    at: datetime


def billed_workers(counts: dict[str, int]) -> int:
    """How many of these workers are billed right now."""
    return sum(int(counts.get(state, 0)) for state in BILLED_STATES)


def sampling_due(context: Context) -> bool:
    """True when the newest stored sample is older than `usage_interval_s` (one query)."""
    with context.sessions() as session:
        newest: datetime | None = session.scalar(select(func.max(WorkerSample.at)))
    if newest is None:
        return True
    if newest.tzinfo is None:  # SQLite returns naive UTC
        newest = newest.replace(tzinfo=utc_now().tzinfo)
    return bool(utc_now() - newest >= timedelta(seconds=context.settings.usage_interval_s))


def record_samples(context: Context, samples: list[Sampled]) -> None:
    """Store this cycle's samples and drop the expired ones."""
    cutoff = utc_now() - timedelta(seconds=SAMPLES_KEPT_S)
    with context.sessions.begin() as session:
        if samples:
            session.execute(
                insert(WorkerSample),
                [
                    {
                        "environment": s.environment,
                        "external_id": s.external_id,
                        "at": s.at,
                        "counts": s.counts,
                        "billed": billed_workers(s.counts),
                    }
                    for s in samples
                ],
            )
        session.execute(delete(WorkerSample).where(WorkerSample.at < cutoff))
    logger.debug("worker samples stored", extra={"samples": len(samples)})
