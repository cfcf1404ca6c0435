"""The runtime's observability API: `/metrics` (Prometheus) and, under the control API,

GET  /control/endpoints/<id>/metrics?window=15m|1h|24h|7d   totals, routes, releases, workers,
                                                            per-minute series, load, cost
GET  /control/endpoints/<id>/requests?route=&status=5xx&request_id=&limit=
GET  /control/endpoints/<id>/workers?window=                each worker's timeline
GET  /control/endpoints/<id>/scaling?window=                decisions with inputs and reason
GET  /control/endpoints/<id>/logs?worker=&request_id=&follow=1   (follow: server-sent events)
GET  /control/endpoints/<id>/cost?window=
POST /control/endpoints/<id>/replay  {"since", "until" | "window", "variants": [{workersMin...}]}
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from quart import Quart, Response, request

from podroute.cost import PriceError, PriceTable, estimate_cost, worker_intervals, worker_price_per_hour
from podroute.runtime.metrics import WINDOWS, MetricsStore
from podroute.runtime.prometheus import CONTENT_TYPE, LoadReader, render_metrics
from podroute.runtime.replay import SCALING_KEYS, actual_result, replay, trace_from_records


@dataclass(frozen=True)
class EndpointFacts:
    """What the observability API needs to know about an endpoint besides its metrics."""

    id: str
    scaling: Mapping[str, int]
    resource: Mapping[str, Any]


class ObservabilityError(Exception):
    """A query cannot be answered as asked (status + message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Observability:
    """The pieces the routes read: metrics, endpoints, prices, live load, and the token check."""

    metrics: MetricsStore
    endpoint: Callable[[str], EndpointFacts]
    prices: Callable[[], PriceTable]
    load: LoadReader
    authorized: Callable[[], Awaitable[Response | None]]
    daily_budget_usd: float = 0.0


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")


def window_of(raw: str | None, default: str = "15m") -> float:
    """`15m|1h|24h|7d` -> seconds; ObservabilityError names the choices."""
    name = raw or default
    if name not in WINDOWS:
        raise ObservabilityError(400, f"window must be one of {', '.join(WINDOWS)}, got {name!r}")
    return float(WINDOWS[name])


def cost_of(view: Observability, facts: EndpointFacts, window_s: float, now: float) -> dict[str, Any]:
    """The endpoint's cost report for the last `window_s` seconds."""
    summary = view.metrics.summarize(facts.id, window_s, now)
    events = view.metrics.worker_events(facts.id)
    prices = view.prices()
    try:
        hourly = worker_price_per_hour(facts.resource, prices)
    except PriceError as error:
        return {"error": str(error)}
    lifetimes = worker_intervals(events, now - window_s, now)
    busy = {r["route"]: r["busy_s"] for r in summary["routes"]}
    report = estimate_cost(
        lifetimes, window_s, hourly, summary["totals"]["requests"], busy, prices, view.daily_budget_usd
    )
    return report.to_json()


def worker_timelines(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events grouped per worker: its transitions, start-up time, start and stop."""
    workers: dict[str, dict[str, Any]] = {}
    for event in events:
        entry = workers.setdefault(
            event["worker"],
            {"worker": event["worker"], "release": event["release"], "transitions": [], "startup_s": None,
             "started_at": None, "stopped_at": None, "state": None},
        )  # fmt: skip
        entry["transitions"].append({k: event[k] for k in ("at", "state", "reason")})
        entry["state"] = event["state"]
        if event["state"] == "starting":
            entry["started_at"] = event["at"]
        if event["state"] == "stopped":
            entry["stopped_at"] = event["at"]
        if event["startup_s"] is not None:
            entry["startup_s"] = event["startup_s"]
    return list(workers.values())


def _replay(view: Observability, facts: EndpointFacts, payload: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    until = float(payload.get("until") or now)
    since = float(payload.get("since") or until - window_of(payload.get("window"), "1h"))
    requests = view.metrics.requests(facts.id, since=since, limit=view.metrics.settings.raw_limit)
    events = view.metrics.worker_events(facts.id)
    trace = trace_from_records(requests, events, since, until)
    try:
        hourly = worker_price_per_hour(facts.resource, view.prices())
    except PriceError:
        hourly = 0.0
    real = {k: facts.scaling[k] for k in SCALING_KEYS}
    variants = payload.get("variants") or []
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ObservabilityError(400, 'variants must be a list of objects such as {"workersMin": 1}')
    results = []
    for variant in [{}, *variants]:
        unknown = sorted(set(variant) - set(SCALING_KEYS))
        if unknown:
            raise ObservabilityError(
                400, f"unknown setting(s) {', '.join(unknown)}; use {', '.join(SCALING_KEYS)}"
            )
        settings = {**real, **{k: int(v) for k, v in variant.items()}}
        results.append({"settings": settings, **replay(trace, settings, hourly).to_json()})
    return {
        "since": since,
        "until": until,
        "requests": len(trace.requests),
        "cold_start_s": round(trace.cold_start_s, 3),
        "stop_s": round(trace.stop_s, 3),
        "actual": {
            "settings": real,
            **actual_result(requests, events, since, until, hourly).to_json(),
        },
        "replayed": results,
    }


async def _follow_logs(view: Observability, endpoint: str, worker: str) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)

    def listener(entry: dict[str, Any]) -> None:
        if not worker or entry["worker"] == worker:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(entry)

    unsubscribe = view.metrics.subscribe_logs(endpoint, listener)
    try:
        for entry in await view.metrics.query(view.metrics.logs, endpoint, worker, "", 50):
            yield b"data: " + orjson.dumps(entry) + b"\n\n"
        while True:
            try:
                entry = await asyncio.wait_for(queue.get(), 15)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            yield b"data: " + orjson.dumps(entry) + b"\n\n"
    finally:
        unsubscribe()


def register_observability(app: Quart, view: Observability) -> None:
    """Add `/metrics` and the control API's observability routes to the runtime's app."""

    @app.errorhandler(ObservabilityError)
    async def observability_error(error: ObservabilityError) -> Response:
        return _json({"error": str(error)}, error.status)

    def facts_of(endpoint_id: str) -> EndpointFacts:
        try:
            return view.endpoint(endpoint_id)
        except KeyError:
            raise ObservabilityError(404, f"no endpoint {endpoint_id!r}") from None

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        refused = await view.authorized()
        if refused is not None:
            return refused
        return Response(render_metrics(view.metrics, view.load), content_type=CONTENT_TYPE)

    @app.put("/control/metrics/collection")
    async def metrics_collection() -> Response:
        payload = orjson.loads(await request.get_data(as_text=False) or b"{}")
        if not isinstance(payload, dict) or not isinstance(payload.get("enabled"), bool):
            raise ObservabilityError(400, 'send {"enabled": true} or {"enabled": false}')
        view.metrics.enabled = payload["enabled"]
        return _json({"enabled": view.metrics.enabled})

    @app.get("/control/endpoints/<endpoint_id>/metrics")
    async def endpoint_metrics(endpoint_id: str) -> Response:
        facts = facts_of(endpoint_id)
        window_s = window_of(request.args.get("window"))
        now = time.time()
        summary = await view.metrics.query(view.metrics.summarize, facts.id, window_s, now)
        cost = await asyncio.to_thread(cost_of, view, facts, window_s, now)
        return _json({**summary, "endpoint": facts.id, "now": view.load().get(facts.id, {}), "cost": cost})

    @app.get("/control/endpoints/<endpoint_id>/requests")
    async def endpoint_requests(endpoint_id: str) -> Response:
        facts = facts_of(endpoint_id)
        args = request.args
        try:
            limit = min(1000, int(args.get("limit", "100")))
            rows = await view.metrics.query(
                view.metrics.requests, facts.id, args.get("route", ""), args.get("status", ""),
                args.get("request_id", ""), 0.0, limit,
            )  # fmt: skip
        except ValueError as error:
            raise ObservabilityError(400, str(error)) from None
        return _json({"requests": rows})

    @app.get("/control/endpoints/<endpoint_id>/workers")
    async def endpoint_workers(endpoint_id: str) -> Response:
        facts = facts_of(endpoint_id)
        since = time.time() - window_of(request.args.get("window"), "1h")
        events = await view.metrics.query(view.metrics.worker_events, facts.id, since)
        return _json({"workers": worker_timelines(events)})

    @app.get("/control/endpoints/<endpoint_id>/scaling")
    async def endpoint_scaling(endpoint_id: str) -> Response:
        facts = facts_of(endpoint_id)
        window_s = window_of(request.args.get("window"))
        now = time.time()
        decisions = await view.metrics.query(view.metrics.decisions, facts.id, now - window_s)
        summary = await asyncio.to_thread(view.metrics.summarize, facts.id, window_s, now)
        return _json({"decisions": decisions, "load": summary["load"], "scaling": dict(facts.scaling)})

    @app.get("/control/endpoints/<endpoint_id>/logs")
    async def endpoint_logs(endpoint_id: str) -> Response:
        facts = facts_of(endpoint_id)
        worker, request_id = request.args.get("worker", ""), request.args.get("request_id", "")
        if request.args.get("follow") in ("1", "true"):
            response = Response(_follow_logs(view, facts.id, worker), content_type="text/event-stream")
            response.headers["Cache-Control"] = "no-cache"
            response.timeout = None
            return response
        lines = await view.metrics.query(view.metrics.logs, facts.id, worker, request_id)
        return _json({"lines": lines})

    @app.get("/control/endpoints/<endpoint_id>/cost")
    async def endpoint_cost(endpoint_id: str) -> Response:
        facts = facts_of(endpoint_id)
        window_s = window_of(request.args.get("window"), "1h")
        await view.metrics.flush()
        return _json(await asyncio.to_thread(cost_of, view, facts, window_s, time.time()))

    @app.post("/control/endpoints/<endpoint_id>/replay")
    async def endpoint_replay(endpoint_id: str) -> Response:
        facts = facts_of(endpoint_id)
        try:
            payload = orjson.loads(await request.get_data(as_text=False) or b"{}")
        except orjson.JSONDecodeError:
            raise ObservabilityError(400, "the body must be a JSON object") from None
        if not isinstance(payload, dict):
            raise ObservabilityError(400, "the body must be a JSON object")
        await view.metrics.flush()
        try:
            return _json(await asyncio.to_thread(_replay, view, facts, payload))
        except (TypeError, ValueError) as error:
            raise ObservabilityError(400, f"cannot replay: {error}") from None
