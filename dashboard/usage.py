"""Usage of a RunPod environment on the metrics page: workers over time from the sync's samples, a
cost estimate from them, and RunPod's own bill for the same window to hold it against.

RunPod reports worker counts (health API), prices (catalog) and the bill (billing API) but no
per-request data for load-balancing endpoints, so this is all the page can show there (README,
"On RunPod"). Prices and the bill are read through the environment's provider and cached for a
minute, so a page refreshing every two seconds does not call RunPod every two seconds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.configs import snapshot_values
from dashboard.models import Deployment, WorkerSample, as_utc
from dashboard.settings import DashboardSettings
from dashboard.worker.context import dashboard_provider
from podroute.cost import PriceError, PriceTable, worker_price_per_hour
from podroute.providers.base import DeployError
from podroute.providers.runpod.usage import WorkerSample as Sample
from podroute.providers.runpod.usage import estimate_from_samples

CACHE_S = 60.0
"""How long prices and bills read from the provider are reused."""

_cache: dict[tuple[str, ...], tuple[float, Any]] = {}


@dataclass(frozen=True)
class Usage:
    """What the metrics page shows for an endpoint whose provider keeps no per-request data."""

    samples: list[Sample]
    price_per_hour: float | None
    estimate_usd: float | None
    billed_usd: float | None
    note: str
    """Why a figure is missing ("" when all are there)."""


async def read_samples(session: AsyncSession, external_id: str, since: float) -> list[Sample]:
    """The stored worker samples of a provider endpoint since `since` (epoch seconds), oldest first."""
    rows = await session.scalars(
        select(WorkerSample)
        .where(
            WorkerSample.external_id == external_id,
            WorkerSample.at >= datetime.fromtimestamp(since, UTC),
        )
        .order_by(WorkerSample.at)
    )
    return [Sample(row.external_id, as_utc(row.at).timestamp(), dict(row.counts)) for row in rows]


def _cached(key: tuple[str, ...], read: Any) -> Any:
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and now - hit[0] < CACHE_S:
        return hit[1]
    value = read()
    _cache[key] = (now, value)
    return value


def _prices(settings: DashboardSettings, environment: str) -> PriceTable:
    def read() -> PriceTable:
        with dashboard_provider(settings, environment) as provider:
            return provider.price_table()

    table: PriceTable = _cached(("prices", environment), read)
    return table


def _bill(
    settings: DashboardSettings, environment: str, external_id: str, since: float, until: float
) -> float | None:
    start = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds")
    end = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")

    def read() -> float | None:
        with dashboard_provider(settings, environment) as provider:
            records = provider.read_bill(external_id, start, end)
        if records is None:
            return None
        return sum(float(r.get("totalAmount") or 0.0) for r in records)

    # the window moves every refresh; its bill is reused for CACHE_S like the prices
    bill: float | None = _cached(("bill", environment, external_id, str(int(until - since))), read)
    return bill


async def endpoint_usage(
    settings: DashboardSettings, current: Deployment, samples: list[Sample], since: float, until: float
) -> Usage:
    """Workers, estimate and bill of the serving deployment over [since, until]."""
    notes = []
    price: float | None = None
    try:
        table = await asyncio.to_thread(_prices, settings, current.environment)
        price = worker_price_per_hour(snapshot_values(current.config), table)
    except (DeployError, PriceError) as error:
        notes.append(f"no price: {error}")
    estimate = estimate_from_samples(samples, price) if price is not None and len(samples) > 1 else None
    if len(samples) < 2:
        notes.append(
            f"the estimate needs two worker samples in the window (one is taken every "
            f"{settings.usage_interval_s:g} s)"
        )
    billed: float | None = None
    try:
        billed = await asyncio.to_thread(
            _bill, settings, current.environment, current.external_id, since, until
        )
    except DeployError as error:
        notes.append(f"RunPod's bill could not be read: {error}")
    return Usage(samples, price, estimate, billed, "; ".join(notes))
