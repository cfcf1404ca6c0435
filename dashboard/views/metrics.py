"""Metrics: what a deployed endpoint is doing, read from the local runtime's observability API.

    /endpoints/<id>/metrics?env=&window=15m|1h|24h|7d     overview (charts refresh every 2 s)
    /endpoints/<id>/metrics/panel                          the refreshing fragment
    /endpoints/<id>/metrics/requests?route=&status=&request_id=   request log
    /endpoints/<id>/metrics/logs?request_id=&worker=       worker log lines (of one request)

Charts are server-rendered SVG (`dashboard.charts`). Only the local runtime records per-route
metrics; a RunPod environment shows workers over time (the sync's health-API samples), a cost
estimate from them and RunPod's bill for the window, and says what else it cannot show (README,
"On RunPod").
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from quart import Blueprint, render_template, request
from werkzeug.exceptions import NotFound

from dashboard.charts import Series, render_line_chart
from dashboard.context import state, transaction
from dashboard.models import Endpoint
from dashboard.queries import current_deployment
from dashboard.usage import endpoint_usage, read_samples
from dashboard.views.loading import load_endpoint
from podroute.providers.base import DeployError
from podroute.providers.factory import read_runtime_token

blueprint = Blueprint("metrics", __name__)

WINDOWS = ("15m", "1h", "24h", "7d")
WINDOW_SECONDS = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 604800}
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")


class RuntimeUnavailableError(Exception):
    """The local runtime cannot answer; the message says what to do."""


def runtime_headers() -> dict[str, str]:
    """The local runtime's control-API credentials (RuntimeUnavailableError saying how to fix)."""
    settings = state().settings
    try:
        token = settings.runtime_token or read_runtime_token(settings.token_file)
    except DeployError as error:
        raise RuntimeUnavailableError(str(error)) from None
    return {"Authorization": f"Bearer {token}"}


async def _runtime_get(path: str, **params: str) -> Any:
    settings = state().settings
    headers = runtime_headers()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(
                f"{settings.runtime_url}/control{path}",
                params=params,
                headers=headers,
            )
    except httpx.TransportError:
        raise RuntimeUnavailableError(
            f"the local runtime at {settings.runtime_url} does not answer; start it with `podroute runtime`"
        ) from None
    if response.status_code != 200:
        raise RuntimeUnavailableError(f"the local runtime answered {response.status_code} for {path}")
    return response.json()


RUNPOD_LIMITS = (
    "per-route metrics, request logs and worker timelines are recorded by the local runtime "
    "only; RunPod reports worker counts and the bill, not per-request data"
)


async def metrics_context(endpoint_id: int, *, usage: bool = False) -> dict[str, Any]:
    """What every metrics view starts from: endpoint, environment, window, the serving row, and
    `problem` when the view has nothing to show (not deployed; per-request data on RunPod)."""
    endpoint: Endpoint = await load_endpoint(endpoint_id)
    environment = request.args.get("env") or state().settings.environments[0]
    if environment not in state().settings.environments:
        raise NotFound(f"there is no environment {environment!r}")
    window = request.args.get("window", "15m")
    if window not in WINDOWS:
        window = "15m"
    async with transaction() as db:
        current = await current_deployment(db, endpoint.id, environment)
    context: dict[str, Any] = {
        "endpoint": endpoint,
        "environment": environment,
        "environments": state().settings.environments,
        "window": window,
        "windows": WINDOWS,
        "current": current,
        "problem": None,
        "usage_only": current is not None and current.provider != "local",
        "limits": RUNPOD_LIMITS,
    }
    if current is None:
        context["problem"] = f"not deployed to {environment}"
    elif context["usage_only"] and not usage:
        context["problem"] = RUNPOD_LIMITS
    return context


def _charts(summary: dict[str, Any], window_s: float) -> list[Any]:
    until = time.time()
    since = until - window_s
    series = summary["series"]
    load = summary["load"]
    cost = summary.get("cost") or {}

    def points(rows: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[tuple[float, float]]:
        return [(row["minute"] + 30, (row[key] or 0) * scale) for row in rows]

    hourly = float(cost.get("price_per_hour") or 0.0)
    return [
        render_line_chart(
            "Requests and errors per minute",
            [Series("requests", points(series, "requests")), Series("errors", points(series, "errors"))],
            since,
            until,
        ),
        render_line_chart(
            "Latency (ms)",
            [Series(name, points(series, f"{name}_s", 1000)) for name in ("p50", "p95", "p99")],
            since,
            until,
        ),
        render_line_chart(
            "Workers vs in flight",
            [
                Series("workers", points(load, "workers_max")),
                Series("in flight", points(load, "inflight_max")),
            ],
            since,
            until,
        ),
        render_line_chart(
            "Cost (USD per hour, live workers x price)",
            [Series("USD/h", points(load, "workers_avg", hourly))],
            since,
            until,
        ),
    ]


@blueprint.get("/endpoints/<int:endpoint_id>/metrics")
async def overview(endpoint_id: int) -> str:
    """The overview page; its panel refreshes itself."""
    return await render_template("metrics/overview.html", **await metrics_context(endpoint_id))


@blueprint.get("/endpoints/<int:endpoint_id>/metrics/panel")
async def panel(endpoint_id: int) -> str:
    """Charts, route table, worker timeline and recent scaling decisions (htmx fragment)."""
    context = await metrics_context(endpoint_id, usage=True)
    window_s = WINDOW_SECONDS[context["window"]]
    if context["problem"] is None and context["usage_only"]:
        return await _usage_panel(context, window_s)
    if context["problem"] is None:
        external = context["current"].external_id
        try:
            summary = await _runtime_get(f"/endpoints/{external}/metrics", window=context["window"])
            workers = await _runtime_get(f"/endpoints/{external}/workers", window="1h")
            scaling = await _runtime_get(f"/endpoints/{external}/scaling", window=context["window"])
        except RuntimeUnavailableError as error:
            context["problem"] = str(error)
        else:
            context.update(
                summary=summary,
                charts=_charts(summary, window_s),
                workers=workers["workers"][-20:],
                decisions=scaling["decisions"][-10:],
                rendered_at=time.strftime("%H:%M:%S", time.gmtime()),
            )
    return await render_template("metrics/_panel.html", **context)


async def _usage_panel(context: dict[str, Any], window_s: float) -> str:
    """A RunPod environment: workers from the sync's samples, the estimate, and RunPod's bill."""
    until = time.time()
    since = until - window_s
    current = context["current"]
    async with transaction() as db:
        samples = await read_samples(db, current.external_id, since)
    usage = await endpoint_usage(state().settings, current, samples, since, until)
    hourly = usage.price_per_hour or 0.0
    workers = [(s.at, float(s.billed_workers)) for s in samples]
    charts = [
        render_line_chart(
            "Workers (RunPod health API, sampled by the sync)",
            [
                Series("billed workers", workers),
                Series("all workers", [(s.at, float(sum(s.counts.values()))) for s in samples]),
            ],
            since,
            until,
        ),
        render_line_chart(
            "Cost estimate (USD per hour, billed workers x price)",
            [Series("USD/h", [(at, count * hourly) for at, count in workers])],
            since,
            until,
        ),
    ]
    context.update(usage=usage, charts=charts, rendered_at=time.strftime("%H:%M:%S", time.gmtime()))
    return await render_template("metrics/_usage.html", **context)


@blueprint.get("/endpoints/<int:endpoint_id>/metrics/requests")
async def requests_log(endpoint_id: int) -> str:
    """Recent requests, filtered by route, status class and request id."""
    context = await metrics_context(endpoint_id)
    filters = {k: request.args.get(k, "").strip()[:200] for k in ("route", "status", "request_id")}
    if filters["status"] not in ("", *STATUS_CLASSES):
        filters["status"] = ""
    context.update(filters=filters, statuses=STATUS_CLASSES, rows=[])
    if context["problem"] is None:
        try:
            found = await _runtime_get(
                f"/endpoints/{context['current'].external_id}/requests", limit="200", **filters
            )
            context["rows"] = [
                {**row, "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["at"]))}
                for row in found["requests"]
            ]
        except RuntimeUnavailableError as error:
            context["problem"] = str(error)
    return await render_template("metrics/requests.html", **context)


@blueprint.get("/endpoints/<int:endpoint_id>/metrics/logs")
async def worker_logs(endpoint_id: int) -> str:
    """Worker log lines: those carrying one request id, or one worker's last lines."""
    context = await metrics_context(endpoint_id)
    request_id = request.args.get("request_id", "").strip()[:200]
    worker = request.args.get("worker", "").strip()[:64]
    context.update(request_id=request_id, worker=worker, lines=[])
    if context["problem"] is None:
        try:
            found = await _runtime_get(
                f"/endpoints/{context['current'].external_id}/logs", request_id=request_id, worker=worker
            )
            context["lines"] = found["lines"]
        except RuntimeUnavailableError as error:
            context["problem"] = str(error)
    return await render_template("metrics/logs.html", **context)
