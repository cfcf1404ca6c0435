"""The CLI's view of the runtime's metrics: per-route tables and worker logs.

`podroute deploy status <env>` prints, under each endpoint, its routes over the last 15 minutes
(requests, error %, p50/p95, cost per 1 000 requests); `podroute deploy logs <env> <endpoint> [-f]`
prints the endpoint's recent worker log lines and, with -f, follows them (server-sent events).
Only the local runtime records per-route metrics; for RunPod environments the table says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from podroute.deploy import DeployError, ProviderUnavailableError


class _RuntimeMetrics:
    """GETs against a local runtime's observability API."""

    def __init__(self, environment: Mapping[str, Any]) -> None:
        self.base = str(environment["runtime_url"]).rstrip("/")
        token = Path(str(environment["token_file"])).read_text().strip()
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: str) -> Any:
        try:
            response = httpx.get(
                f"{self.base}/control{path}", params=params, headers=self.headers, timeout=30
            )
        except httpx.TransportError as error:
            raise ProviderUnavailableError(
                f"cannot reach the local runtime at {self.base} ({error})"
            ) from None
        if response.status_code != 200:
            raise DeployError(f"the runtime answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def follow(self, path: str, **params: str) -> Iterator[dict[str, Any]]:
        # the runtime sends a keep-alive comment every 15 s: a 60 s read timeout means it is gone
        timeout = httpx.Timeout(30, read=60)
        with httpx.stream(
            "GET", f"{self.base}/control{path}", params=params, headers=self.headers, timeout=timeout
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    entry: dict[str, Any] = orjson.loads(line[6:])
                    yield entry


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def format_route_table(summary: Mapping[str, Any]) -> list[str]:
    """Rows of a per-route table from a `/metrics?window=` answer."""
    cost = summary.get("cost") or {}
    per_route_cost = cost.get("per_route_usd") or {}
    lines = [f"    {'route':<32} {'requests':>8} {'error %':>8} {'p50':>9} {'p95':>9} {'$/1000 req':>11}"]
    for route in summary["routes"]:
        requests = route["requests"]
        route_cost = per_route_cost.get(route["route"])
        per_1000 = f"{route_cost / requests * 1000:.5f}" if route_cost is not None and requests else "-"
        lines.append(
            f"    {route['route']:<32} {requests:>8} {route['error_rate'] * 100:>7.1f}% "
            f"{_ms(route['p50_s']):>9} {_ms(route['p95_s']):>9} {per_1000:>11}"
        )
    if not summary["routes"]:
        lines.append("    (no requests in the last 15 minutes)")
    if cost.get("over_budget"):
        lines.append(
            f"    WARNING: projected {cost['per_day_usd']:.2f} USD/day exceeds the daily budget "
            f"of {cost['daily_budget_usd']:.2f} USD"
        )
    return lines


def print_route_tables(
    environment: Mapping[str, Any], endpoint_id: str, emit: Callable[[str], None] = print
) -> None:
    """Print an endpoint's per-route table for the last 15 minutes."""
    if environment.get("provider") != "local":
        emit("    per-route metrics: recorded by the local runtime only (see README, 'On RunPod')")
        return
    summary = _RuntimeMetrics(environment).get(f"/endpoints/{endpoint_id}/metrics", window="15m")
    for line in format_route_table(summary):
        emit(line)


def print_logs(
    environment: Mapping[str, Any], endpoint_id: str, follow: bool, emit: Callable[[str], None] = print
) -> None:
    """Print the endpoint's recent worker log lines; with `follow`, keep printing new ones."""
    if environment.get("provider") != "local":
        raise DeployError("worker logs are kept by the local runtime; on RunPod use its console")
    runtime = _RuntimeMetrics(environment)
    path = f"/endpoints/{endpoint_id}/logs"
    entries = runtime.follow(path, follow="1") if follow else iter(runtime.get(path)["lines"])
    for entry in entries:
        emit(f"{entry['worker']}  {entry['line']}")
