"""The runtime's `/metrics` in Prometheus text format (prometheus-client), read from the metrics store.

Series (labels: endpoint, route = the route template, method, status = status class):

    podroute_requests_total, podroute_request_duration_seconds (histogram),
    podroute_response_bytes_total, podroute_cold_start_requests_total
    podroute_inflight_requests, podroute_waiting_requests, podroute_workers{state} (gauges per endpoint)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from podroute.runtime.metrics import PROMETHEUS_BUCKETS, MetricsStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LoadReader = Callable[[], dict[str, dict[str, Any]]]
"""endpoint id -> {"inflight": int, "waiting": int, "workers": {state: count}}."""

_LABELS = ["endpoint", "route", "method", "status"]


class _StoreCollector(Collector):
    def __init__(self, store: MetricsStore, load: LoadReader) -> None:
        self._store = store
        self._load = load

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "podroute_requests", "Requests forwarded by the gateway.", labels=_LABELS
        )
        durations = HistogramMetricFamily(
            "podroute_request_duration_seconds", "Gateway request duration, wait included.", labels=_LABELS
        )
        sent = CounterMetricFamily("podroute_response_bytes", "Response bytes sent.", labels=_LABELS)
        cold = CounterMetricFamily(
            "podroute_cold_start_requests", "Requests that waited for a worker to start.", labels=_LABELS
        )
        for (endpoint, route, method, klass), series in list(self._store.prometheus.items()):
            labels = [endpoint, route, method, klass]
            requests.add_metric(labels, series.count)
            sent.add_metric(labels, series.bytes_out)
            cold.add_metric(labels, series.cold)
            cumulative, buckets = 0, []
            for bound, count in zip((*PROMETHEUS_BUCKETS, float("inf")), series.buckets, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            durations.add_metric(labels, buckets, series.total_s)
        yield from (requests, durations, sent, cold)
        inflight = GaugeMetricFamily(
            "podroute_inflight_requests", "Requests on workers.", labels=["endpoint"]
        )
        waiting = GaugeMetricFamily(
            "podroute_waiting_requests", "Requests waiting for a worker.", labels=["endpoint"]
        )
        workers = GaugeMetricFamily("podroute_workers", "Workers by state.", labels=["endpoint", "state"])
        for endpoint, load in self._load().items():
            inflight.add_metric([endpoint], load["inflight"])
            waiting.add_metric([endpoint], load["waiting"])
            for state, count in load["workers"].items():
                workers.add_metric([endpoint, state], count)
        yield from (inflight, waiting, workers)


def render_metrics(store: MetricsStore, load: LoadReader) -> bytes:
    """The exposition text of every series (a fresh registry per scrape: nothing global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(store, load))
    return generate_latest(registry)
