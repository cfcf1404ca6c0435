"""Live worker state for the worker panels: a fresh read of the provider, not the status sync's
copy (the sync runs every `DASHBOARD_SYNC_INTERVAL_S`; a panel polling every 2 s must not show
data older than that). Panels polling one endpoint from several tabs share one read."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quart import current_app

from dashboard.models import Deployment, utc_now
from dashboard.settings import DashboardSettings
from dashboard.worker.context import dashboard_provider
from dashboard.worker.releases import summarize
from podroute.providers.base import DeployError

MAX_AGE_S = 1.0
"""How old a shared read may be before the next poll reads the provider again."""

_FORGET_AFTER_S = 60.0


@dataclass(frozen=True)
class Observation:
    """What a provider reported for an endpoint (`summarize`'s shape), when, and why not if it failed."""

    observed: dict[str, Any]
    at: datetime | None
    error: str = ""


class LiveWorkers:
    """Reads endpoints' actual state from their providers, each read shared for `max_age_s`."""

    def __init__(self, max_age_s: float = MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._reads: dict[tuple[str, str], tuple[float, Observation]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def observe(self, settings: DashboardSettings, current: Deployment) -> Observation:
        """The live state of the endpoint `current` serves; on a provider error, the sync's copy
        with the error (the panel says the provider did not answer)."""
        key = (current.environment, current.external_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            now = time.monotonic()
            seen = self._reads.get(key)
            if seen is not None and now - seen[0] < self.max_age_s:
                return seen[1]
            observation = await asyncio.to_thread(_read, settings, current)
            self._forget_old(now)
            self._reads[key] = (now, observation)
            return observation

    def _forget_old(self, now: float) -> None:
        for key, (at, _) in list(self._reads.items()):
            if now - at > _FORGET_AFTER_S:
                del self._reads[key]
                self._locks.pop(key, None)


def _read(settings: DashboardSettings, current: Deployment) -> Observation:
    try:
        with dashboard_provider(settings, current.environment) as provider:
            endpoint = provider.status(current.external_id)
    except DeployError as error:
        return Observation(current.observed or {}, current.synced_at, str(error))
    return Observation(summarize(endpoint), utc_now())


def live_workers() -> LiveWorkers:
    """The running app's live reader (one per app)."""
    reader: LiveWorkers = current_app.extensions.setdefault("live_workers", LiveWorkers())
    return reader
