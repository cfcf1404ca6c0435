"""What-if replay: run a recorded request trace through the autoscaler with other settings.

The simulation calls the same policy functions as the runtime's pool (`desired_workers`,
`choose_idle_drains`), with the runtime's routing (a ready worker with the fewest requests in
flight; a request with no ready worker waits for one: a cold start). Worker start-up and stop
times are taken from the recording (start-up: the longest wait of each cold-start episode; stop:
draining to stopped), so replaying the real settings reproduces the real worker-seconds. Each
request occupies a worker for its recorded service time (duration - wait).
"""

from __future__ import annotations

import heapq
import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from podroute.cost import billed_seconds, worker_intervals
from podroute.runtime.policy import IdleWorker, choose_idle_drains, desired_workers

SCALING_KEYS = ("workersMin", "workersMax", "scalerValue", "idleTimeout")
"""The settings a replay can change."""

_EPSILON = 1e-9


@dataclass(frozen=True)
class TraceRequest:
    """One recorded request: when it arrived and how long a worker spent on it."""

    at: float
    service_s: float


@dataclass(frozen=True)
class Trace:
    """A window's requests plus the worker timing the replay assumes."""

    since: float
    until: float
    requests: list[TraceRequest]
    cold_start_s: float
    stop_s: float
    warm_at_start: int = 0


@dataclass
class ReplayResult:
    """What a run (real or replayed) cost in workers, money and waiting."""

    worker_seconds: float
    billed_seconds: int
    cold_starts: int
    p95_wait_s: float
    peak_workers: int
    requests: int
    cost_usd: float = 0.0
    workers_started: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "worker_seconds": round(self.worker_seconds, 3),
            "billed_seconds": self.billed_seconds,
            "cold_starts": self.cold_starts,
            "p95_wait_s": round(self.p95_wait_s, 4),
            "peak_workers": self.peak_workers,
            "requests": self.requests,
            "cost_usd": round(self.cost_usd, 6),
            "workers_started": self.workers_started,
        }


def p95(values: Sequence[float]) -> float:
    """The 95th percentile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def trace_from_records(
    requests: Iterable[Mapping[str, Any]], events: Sequence[Mapping[str, Any]], since: float, until: float
) -> Trace:
    """A Trace from the metrics store's request records and worker timeline."""
    startups = [float(e["startup_s"]) for e in events if e["state"] == "ready" and e.get("startup_s")]
    window = [r for r in requests if since <= float(r["at"]) <= until]
    episodes = _cold_episodes(window)
    draining: dict[str, float] = {}
    stops: list[float] = []
    for event in events:
        if event["state"] == "draining":
            draining[str(event["worker"])] = float(event["at"])
        elif event["state"] == "stopped" and str(event["worker"]) in draining:
            stops.append(float(event["at"]) - draining[str(event["worker"])])
    before = [e for e in events if float(e["at"]) <= since]
    alive = [w for w, (_, stop) in worker_intervals(before, 0.0, since + 1.0).items() if stop > since]
    records = sorted(
        (TraceRequest(float(r["at"]), max(0.0, float(r["duration_s"]) - float(r["wait_s"])))
         for r in requests if since <= float(r["at"]) <= until and r.get("worker")),
        key=lambda r: r.at,
    )  # fmt: skip
    return Trace(
        since=since,
        until=until,
        requests=records,
        cold_start_s=statistics.median(episodes) if episodes else statistics.fmean(startups or [1.0]),
        stop_s=statistics.fmean(stops) if stops else 0.0,
        warm_at_start=len(alive),
    )


def _cold_episodes(requests: Iterable[Mapping[str, Any]]) -> list[float]:
    """How long each scale-from-zero took as the requests saw it: cold requests are grouped into
    episodes (one worker start each) and an episode's longest wait is its start-up time. Unlike the
    workers' own start-up times, this is measured where a cold start hurts, under the same load."""
    cold = sorted((float(r["at"]), float(r["wait_s"])) for r in requests if r["cold"] and r.get("worker"))
    episodes: list[float] = []
    ends_at = -1.0
    for at, wait in cold:
        if at > ends_at:
            episodes.append(wait)
            ends_at = at + wait
        else:
            episodes[-1] = max(episodes[-1], wait)
    return episodes


@dataclass
class _Worker:
    id: str
    started_at: float
    ready_at: float
    inflight: int = 0
    last_active: float = 0.0
    draining: bool = False
    stopped_at: float | None = None


def replay(trace: Trace, scaling: Mapping[str, float], price_per_hour: float = 0.0) -> ReplayResult:
    """Simulate the autoscaler on `trace` under `scaling` (SCALING_KEYS) until every request is
    served and every idle worker above workersMin has stopped (or the window ends, if later)."""
    minimum, idle_timeout = int(scaling["workersMin"]), float(scaling["idleTimeout"])
    counter = itertools.count()
    workers: list[_Worker] = []
    warm = max(trace.warm_at_start, minimum)
    for _ in range(warm):
        workers.append(_Worker(f"r{next(counter)}", trace.since, trace.since, last_active=trace.since))
    completions: list[tuple[float, int, _Worker]] = []
    waiting: list[float] = []
    waits: list[float] = []
    cold = 0
    pending = list(trace.requests)
    index = 0
    now = trace.since
    timeline: list[tuple[float, int]] = []

    def live() -> list[_Worker]:
        return [w for w in workers if w.stopped_at is None and not w.draining]

    def ready_workers(t: float) -> list[_Worker]:
        return [w for w in live() if w.ready_at <= t + _EPSILON]

    def assign(t: float, arrived: float, service_s: float, worker: _Worker) -> None:
        worker.inflight += 1
        worker.last_active = t
        heapq.heappush(completions, (t + service_s, next(counter), worker))
        waits.append(t - arrived)

    waiting_service: list[float] = []
    horizon = trace.until
    while True:
        # next event: arrival, completion, a worker becoming ready, or a tick while anything changes
        candidates = []
        if index < len(pending):
            candidates.append(pending[index].at)
        if completions:
            candidates.append(completions[0][0])
        candidates += [w.ready_at for w in live() if w.ready_at > now + _EPSILON]
        idle_deadlines = [w.last_active + idle_timeout for w in ready_workers(now) if w.inflight == 0]
        if len(live()) > minimum:
            candidates += [max(now + _EPSILON, d) for d in idle_deadlines]
        if not candidates:
            break
        now = max(now, min(candidates))
        while completions and completions[0][0] <= now + _EPSILON:
            _, _, worker = heapq.heappop(completions)
            worker.inflight -= 1
            worker.last_active = now
        while index < len(pending) and pending[index].at <= now + _EPSILON:
            request = pending[index]
            index += 1
            ready = ready_workers(now)
            if ready:
                assign(now, request.at, request.service_s, min(ready, key=lambda w: w.inflight))
            else:
                waiting.append(request.at)
                waiting_service.append(request.service_s)
                cold += 1
        ready = ready_workers(now)
        while waiting and ready:
            assign(now, waiting.pop(0), waiting_service.pop(0), min(ready, key=lambda w: w.inflight))
        # reconcile: the runtime's policy, on the same inputs
        inflight = sum(w.inflight for w in workers if w.stopped_at is None)
        decision = desired_workers(scaling, inflight, len(waiting))
        current = live()
        for _ in range(decision.workers - len(current)):
            workers.append(_Worker(f"r{next(counter)}", now, now + trace.cold_start_s, last_active=now))
        current = live()
        idle = [
            IdleWorker(w.id, now - w.last_active) for w in current if w.ready_at <= now and not w.inflight
        ]
        drains = {
            worker_id
            for worker_id, _ in choose_idle_drains(len(current), decision.workers, idle, idle_timeout)
        }
        for worker in current:
            if worker.id in drains:
                worker.draining = True
        for worker in workers:
            if worker.draining and worker.stopped_at is None and worker.inflight == 0:
                worker.stopped_at = now + trace.stop_s
        timeline.append((now, len(live())))
        if index >= len(pending) and not completions and not waiting and len(live()) <= minimum:
            break
    end = max(horizon, now)
    lifetimes = [(w.started_at, w.stopped_at if w.stopped_at is not None else end) for w in workers]
    worker_seconds = sum(stop - start for start, stop in lifetimes)
    billed = billed_seconds(lifetimes)
    return ReplayResult(
        worker_seconds=worker_seconds,
        billed_seconds=billed,
        cold_starts=cold,
        p95_wait_s=p95(waits),
        peak_workers=max((n for _, n in timeline), default=warm),
        requests=len(pending),
        cost_usd=billed * price_per_hour / 3600,
        workers_started=len(workers) - warm,
        timeline=timeline,
    )


def actual_result(
    requests: Iterable[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    since: float,
    until: float,
    price_per_hour: float = 0.0,
) -> ReplayResult:
    """The same figures for what really happened in the window (from the recorded trace)."""
    rows = [r for r in requests if since <= float(r["at"]) <= until]
    lifetimes = worker_intervals(events, since, until)
    billed = billed_seconds(lifetimes.values())
    return ReplayResult(
        worker_seconds=sum(stop - start for start, stop in lifetimes.values()),
        billed_seconds=billed,
        cold_starts=sum(1 for r in rows if r["cold"]),
        p95_wait_s=p95([float(r["wait_s"]) for r in rows]),
        peak_workers=_peak(lifetimes.values()),
        requests=len(rows),
        cost_usd=billed * price_per_hour / 3600,
        workers_started=sum(
            1 for e in events if e["state"] == "starting" and since <= float(e["at"]) <= until
        ),
    )


def _peak(intervals: Iterable[tuple[float, float]]) -> int:
    changes = sorted(itertools.chain.from_iterable(((s, 1), (e, -1)) for s, e in intervals))
    peak = running = 0
    for _, delta in changes:
        running += delta
        peak = max(peak, running)
    return peak
