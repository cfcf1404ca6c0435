"""What RunPod can tell about an endpoint's usage: worker counts over time, prices, and the bill.

- `sample_worker_counts`: the health API's worker counts (`GET <serverless>/<id>/health`) with the
  time they were read; a periodic sync that stores these samples gets a workers-over-time chart
  and a cost estimate (samples x interval x price) for RunPod endpoints.
- `fetch_prices`: `GET /v2/catalog/gpus` and `/v2/catalog/cpus` as a `PriceTable` (falling back to
  the shipped price file for anything the catalog does not list).
- `read_serverless_billing`: `GET /v2/billing/serverless`, RunPod's actual spend per bucket, to put
  next to the estimate.

RunPod's APIs report no per-route traffic, latency or request ids for load-balancing endpoints, so
those figures exist only for the local runtime (see the README, "On RunPod").
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import httpx

import podroute
from podroute.cost import PriceTable, load_price_file, prices_from_catalog
from podroute.providers.base import DeployError, ProviderUnavailableError
from podroute.providers.runpod.http import RunPodSettings


@dataclass(frozen=True)
class WorkerSample:
    """Worker counts by state read from the health API at `at` (epoch seconds)."""

    endpoint_id: str
    at: float
    counts: dict[str, int]

    @property
    def billed_workers(self) -> int:
        """Workers that cost money right now: running, idle and initializing ones."""
        return sum(self.counts.get(k, 0) for k in ("running", "idle", "initializing"))


def _get(settings: RunPodSettings, url: str, what: str, params: dict[str, str] | None = None) -> Any:
    headers = {
        "Authorization": f"Bearer {settings.api_key}",
        "User-Agent": f"podroute/{podroute.__version__} (+runpod usage)",
    }
    try:
        response = httpx.get(url, params=params, headers=headers, timeout=settings.timeout_s)
    except httpx.TransportError as error:
        raise ProviderUnavailableError(f"cannot reach RunPod for {what} ({error}); try again later") from None
    if response.status_code in (401, 403):
        raise DeployError(f"RunPod refused the API key for {what}; check RUNPOD_API_KEY")
    if response.status_code >= 400:
        raise DeployError(f"RunPod answered {response.status_code} to {what}: {response.text[:300]}")
    return response.json()


def sample_worker_counts(settings: RunPodSettings, endpoint_id: str) -> WorkerSample:
    """One sample of an endpoint's worker counts from the health API."""
    body = _get(settings, f"{settings.serverless_url}/{endpoint_id}/health", "the health check")
    counts = {str(k): int(v) for k, v in (body.get("workers") or {}).items()}
    return WorkerSample(endpoint_id, time.time(), counts)


def estimate_from_samples(samples: list[WorkerSample], price_per_hour: float) -> float:
    """USD for billed workers between consecutive samples (each sample holds until the next)."""
    ordered = sorted(samples, key=lambda s: s.at)
    seconds = sum(a.billed_workers * (b.at - a.at) for a, b in itertools.pairwise(ordered))
    return seconds * price_per_hour / 3600


def fetch_prices(settings: RunPodSettings) -> PriceTable:
    """Serverless prices from RunPod's catalog; the shipped file fills what it does not list."""
    fallback = load_price_file()
    params = {"product": "SERVERLESS"}
    gpus = _get(settings, f"{settings.rest_url}/catalog/gpus", "the GPU catalog", params).get("gpus") or []
    cpus = _get(settings, f"{settings.rest_url}/catalog/cpus", "the CPU catalog", params).get("cpus") or []
    return prices_from_catalog(gpus, cpus, time.strftime("%Y-%m-%d"), fallback)


def read_serverless_billing(
    settings: RunPodSettings, endpoint_id: str, start: str, end: str, bucket: str = "day"
) -> list[dict[str, Any]]:
    """RunPod's bill for an endpoint: records `{startTime, endTime, totalAmount, gpuAmount, ...}`.

    `start`/`end` are ISO 8601 times; `bucket` is hour, day, week, month or year.
    """
    params = {"serverlessId": endpoint_id, "startTime": start, "endTime": end, "bucketSize": bucket}
    records = _get(settings, f"{settings.rest_url}/billing/serverless", "the serverless bill", params)
    if not isinstance(records, list):
        raise DeployError("RunPod's billing answer is not a list of records; the API may have changed")
    return records
