"""What an endpoint costs: billed worker-seconds x the price of its compute, as RunPod bills it.

RunPod bills each worker per second, rounded up, from start to full stop: cold start, execution
and the idle-timeout tail; `workersMin` workers are always on. A GPU worker costs its pool's price
x `gpuCount`; a CPU worker its vCPUs x the flavor's per-vCPU price. Prices come from RunPod's
catalog when it can be reached (`prices_from_catalog`), else from `data/prices.json` (with its
date and source). Per route, cost is split by each route's share of busy worker-seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from podroute.catalog import GPU_ANY, pool_of


class PriceError(ValueError):
    """No price is known for an endpoint's compute; the message names what is missing."""


@dataclass(frozen=True)
class PriceTable:
    """USD per GPU-hour by serverless pool, USD per vCPU-hour by CPU flavor, and where they came from."""

    gpu_pools: dict[str, float]
    cpu_flavors: dict[str, float]
    as_of: str
    source: str


def load_price_file() -> PriceTable:
    """The prices shipped in `podroute/data/prices.json`."""
    raw = json.loads(resources.files("podroute").joinpath("data/prices.json").read_text())
    return PriceTable(
        gpu_pools={k: float(v) for k, v in raw["gpu_pools"].items()},
        cpu_flavors={k: float(v) for k, v in raw["cpu_flavors"].items()},
        as_of=str(raw["as_of"]),
        source=str(raw["source"]),
    )


def prices_from_catalog(
    gpus: Sequence[Mapping[str, Any]], cpus: Sequence[Mapping[str, Any]], as_of: str, fallback: PriceTable
) -> PriceTable:
    """A price table from `GET /v2/catalog/gpus` and `/cpus` rows; pools/flavors missing there keep
    the fallback's price. A pool's price is the highest of its GPUs' `price.serverless`."""
    pools = dict(fallback.gpu_pools)
    seen: dict[str, float] = {}
    for gpu in gpus:
        price = (gpu.get("price") or {}).get("serverless")
        pool = gpu.get("pool") or pool_of(str(gpu.get("id", "")))
        if pool and isinstance(price, (int, float)) and price > 0:
            seen[str(pool)] = max(seen.get(str(pool), 0.0), float(price))
    pools.update(seen)
    flavors = dict(fallback.cpu_flavors)
    for cpu in cpus:
        price = (cpu.get("price") or {}).get("serverlessPerVcpu")
        flavor = str(cpu.get("id", "")).split("-")[0]
        if flavor and isinstance(price, (int, float)) and price > 0:
            flavors[flavor] = float(price)
    return PriceTable(pools, flavors, as_of, "RunPod catalog (GET /v2/catalog/gpus, /v2/catalog/cpus)")


def worker_price_per_hour(resource: Mapping[str, Any], prices: PriceTable) -> float:
    """USD per hour of one worker of a resource config (the build manifest's `resource`).

    GPU: the first listed pool (RunPod tries them in order; a GPU type counts as its pool; `ANY`
    as the cheapest pool) x gpuCount. CPU: the first instance id's vCPUs x its flavor's price.
    """
    if "instanceIds" in resource:
        instance = str(resource["instanceIds"][0])
        flavor, vcpus = instance.split("-")[0], int(instance.split("-")[1])
        if flavor not in prices.cpu_flavors:
            raise PriceError(f"no price for CPU flavor {flavor!r}; add it to podroute/data/prices.json")
        return vcpus * prices.cpu_flavors[flavor]
    first = str((resource.get("gpus") or [GPU_ANY])[0])
    if first == GPU_ANY:
        hourly = min(prices.gpu_pools.values())
    else:
        pool = first if first in prices.gpu_pools else pool_of(first)
        if pool is None or pool not in prices.gpu_pools:
            raise PriceError(f"no price for GPU pool {first!r}; add it to podroute/data/prices.json")
        hourly = prices.gpu_pools[pool]
    return hourly * int(resource.get("gpuCount", 1))


def billed_seconds(intervals: Iterable[tuple[float, float]]) -> int:
    """Per-worker lifetimes (start, stop) -> billed seconds, each rounded up to a whole second."""
    return sum(math.ceil(max(0.0, stop - start) - 1e-9) for start, stop in intervals)


def worker_intervals(
    events: Iterable[Mapping[str, Any]], since: float, until: float
) -> dict[str, tuple[float, float]]:
    """Worker lifetimes from timeline events (`starting` .. `stopped`), clipped to [since, until].

    A worker without a `stopped` event is still running: it is billed up to `until`.
    """
    started: dict[str, float] = {}
    stopped: dict[str, float] = {}
    for event in events:
        worker = str(event["worker"])
        if event["state"] == "starting":
            started.setdefault(worker, float(event["at"]))
        elif event["state"] == "stopped":
            stopped[worker] = float(event["at"])
    lifetimes: dict[str, tuple[float, float]] = {}
    for worker, start in started.items():
        stop = stopped.get(worker, until)
        start, stop = max(start, since), min(stop, until)
        if stop > start:
            lifetimes[worker] = (start, stop)
    return lifetimes


@dataclass(frozen=True)
class CostReport:
    """An endpoint's cost over a window, and projections from it."""

    window_s: float
    worker_seconds: float
    billed_seconds: int
    price_per_hour: float
    cost_usd: float
    per_hour_usd: float
    per_day_usd: float
    requests: int
    per_1000_requests_usd: float | None
    per_route_usd: dict[str, float] = field(default_factory=dict)
    daily_budget_usd: float = 0.0
    over_budget: bool = False
    prices_as_of: str = ""
    prices_source: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (money rounded to 1/10 000 cent)."""
        money = ("cost_usd", "per_hour_usd", "per_day_usd", "per_1000_requests_usd")
        body = {k: (round(v, 6) if k in money and v is not None else v) for k, v in self.__dict__.items()}
        body["per_route_usd"] = {k: round(v, 6) for k, v in self.per_route_usd.items()}
        return body


def estimate_cost(
    lifetimes: Mapping[str, tuple[float, float]],
    window_s: float,
    price_per_hour: float,
    requests: int,
    busy_s_by_route: Mapping[str, float],
    prices: PriceTable,
    daily_budget_usd: float = 0.0,
) -> CostReport:
    """Cost of the workers that lived in a window, per hour/day (projected from the window), per
    1 000 requests and per route (share of busy seconds); flags a projection over the daily budget."""
    worker_seconds = sum(stop - start for start, stop in lifetimes.values())
    billed = billed_seconds(lifetimes.values())
    cost = billed * price_per_hour / 3600
    per_hour = cost * 3600 / window_s if window_s > 0 else 0.0
    busy_total = sum(busy_s_by_route.values())
    per_route = {r: cost * b / busy_total for r, b in busy_s_by_route.items()} if busy_total > 0 else {}
    return CostReport(
        window_s=window_s,
        worker_seconds=round(worker_seconds, 3),
        billed_seconds=billed,
        price_per_hour=price_per_hour,
        cost_usd=cost,
        per_hour_usd=per_hour,
        per_day_usd=per_hour * 24,
        requests=requests,
        per_1000_requests_usd=cost / requests * 1000 if requests else None,
        per_route_usd=per_route,
        daily_budget_usd=daily_budget_usd,
        over_budget=bool(daily_budget_usd) and per_hour * 24 > daily_budget_usd,
        prices_as_of=prices.as_of,
        prices_source=prices.source,
    )
