"""The CLI's view of the runtime's metrics: per-route tables and worker logs.

`podroute deploy status <env>` prints, under each endpoint, its routes over the last 15 minutes
(requests, error %, p50/p95, cost per 1 000 requests); `podroute deploy logs <env> <endpoint> [-f]`
prints the endpoint's recent worker log lines and, with -f, follows them (server-sent events).
Only the local runtime records per-route metrics; for RunPod environments the table says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from podroute.providers.base import Provider


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


def print_route_tables(provider: Provider, endpoint_id: str, emit: Callable[[str], None] = print) -> None:
    """Print an endpoint's per-route table for the last 15 minutes."""
    summary = provider.route_metrics(endpoint_id, "15m")
    if summary is None:
        emit("    per-route metrics: recorded by the local runtime only (see README, 'On RunPod')")
        return
    for line in format_route_table(summary):
        emit(line)


def print_logs(
    provider: Provider, endpoint_id: str, follow: bool, emit: Callable[[str], None] = print
) -> None:
    """Print the endpoint's recent worker log lines; with `follow`, keep printing new ones."""
    for entry in provider.worker_logs(endpoint_id, follow):
        emit(f"{entry['worker']}  {entry['line']}")
