"""One endpoint's workers: routing, request-count autoscaling, idle scale-down and rollouts.

- Requests go to the ready worker (current release first) with the fewest requests in flight; an
  `X-Runpod-Worker-Id` naming a ready worker is preferred.
- The desired worker count comes from `policy.desired_workers` (in flight + waiting over
  scalerValue, within [workersMin, workersMax]); a waiting request scales from zero.
- A request holds its worker through `lease()`, which releases it however the request ends.
- A worker idle for `idleTimeout` above the desired count is drained, then stopped
  (`policy.choose_idle_drains`).
- Every decision (with its inputs), worker transition and worker log line goes to the metrics
  store, when the pool has one.
- A new release (build or env) starts new workers; each outdated worker is drained once enough new
  ones are ready, so a rollout drops no request.
- Unhealthy or dead workers leave the pool and are replaced, with a growing back-off when a release
  keeps failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from podroute.runtime.metrics import MetricsStore
from podroute.runtime.policy import IdleWorker, ScalingDecision, choose_idle_drains, desired_workers
from podroute.runtime.state import EndpointRecord
from podroute.runtime.workers import LIVE_STATES, Worker, WorkerSpec

logger = logging.getLogger("podroute.runtime.pool")

SpecFactory = Callable[[EndpointRecord], Awaitable[WorkerSpec]]


class NoWorkerError(Exception):
    """No worker became ready within the wait limit."""


@dataclass(frozen=True)
class Lease:
    """A worker held for one request: how long the request waited for it and whether it had to
    wait for a worker to start (a cold start) rather than for a busy one."""

    worker: Worker
    waited_s: float
    cold_start: bool


class EndpointPool:
    """The workers of one endpoint and the loop that scales them."""

    def __init__(
        self,
        record: EndpointRecord,
        make_spec: SpecFactory,
        tick_s: float = 0.1,
        metrics: MetricsStore | None = None,
    ) -> None:
        self.record = record
        self.metrics = metrics
        self.workers: list[Worker] = []
        self.waiting = 0
        self.decisions: deque[dict[str, Any]] = deque(maxlen=50)
        self.failures: deque[dict[str, Any]] = deque(maxlen=10)
        self._make_spec = make_spec
        self._tick_s = tick_s
        self._changed = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._consecutive_failures = 0
        self._next_start_at = 0.0
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scaling loop."""
        self._loop_task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop the loop and every worker."""
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await asyncio.gather(*(w.stop() for w in self.workers))
        self.workers.clear()

    def wake(self) -> None:
        """Re-run scaling now (after a config change or a waiting request)."""
        self._changed.set()

    # -- routing ------------------------------------------------------------------------------

    def _routable(self) -> list[Worker]:
        ready = [w for w in self.workers if w.state == "ready"]
        current = [w for w in ready if w.release_key == self.record.release.key]
        return current or ready

    def pick(self, preferred: str | None = None) -> Worker | None:
        """The worker for the next request, or None when none is ready."""
        candidates = self._routable()
        if not candidates:
            return None
        if preferred:
            for worker in candidates:
                if worker.id == preferred:
                    return worker
        return min(candidates, key=lambda w: w.inflight)

    @contextlib.asynccontextmanager
    async def lease(self, wait_s: float, preferred: str | None = None) -> AsyncIterator[Lease]:
        """Hold a ready worker for the block (waiting up to `wait_s`); released however it ends."""
        started = time.monotonic()
        cold = not self._routable()
        worker = await self.acquire(wait_s, preferred)
        try:
            yield Lease(worker, time.monotonic() - started, cold)
        finally:
            self.release(worker)

    async def acquire(self, wait_s: float, preferred: str | None = None) -> Worker:
        """A ready worker with the request counted in flight; waits up to `wait_s`.

        Every successful `acquire` needs exactly one `release`; prefer `lease()`, which pairs them.
        """
        deadline = time.monotonic() + wait_s
        worker = self.pick(preferred)
        if worker is None:
            self.waiting += 1
            self.wake()
            try:
                while (worker := self.pick(preferred)) is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise NoWorkerError(self.record.id)
                    await asyncio.sleep(min(0.05, remaining))
            finally:
                self.waiting -= 1
        worker.inflight += 1
        worker.last_active = time.monotonic()
        return worker

    def release(self, worker: Worker) -> None:
        """The request on `worker` has finished."""
        worker.inflight -= 1
        worker.last_active = time.monotonic()

    # -- scaling ------------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """Requests being served by this endpoint's workers."""
        return sum(w.inflight for w in self.workers)

    def decision(self) -> ScalingDecision:
        """What the scaling policy asks for under the current load."""
        return desired_workers(self.record.scaling, self.inflight, self.waiting)

    def desired(self) -> int:
        """How many workers the load asks for, within [workersMin, workersMax]."""
        return self.decision().workers

    def _decide(self, action: str, reason: str) -> None:
        entry = {"at": time.time(), "action": action, "reason": reason}
        self.decisions.append(entry)
        logger.info("endpoint %s: %s (%s)", self.record.id, action, reason)
        if self.metrics is not None:
            live = sum(1 for w in self.workers if w.state in LIVE_STATES)
            desired = self.desired()
            self.metrics.record_decision(
                self.record.id, action, reason, self.inflight, self.waiting, live, desired
            )

    def _worker_state(self, worker: Worker, state: str, reason: str) -> None:
        if self.metrics is not None:
            startup = worker.startup_s if state == "ready" else None
            self.metrics.record_worker_event(
                self.record.id, worker.id, state, reason, worker.release_key, startup
            )

    def _worker_log(self, worker: Worker, line: str) -> None:
        if self.metrics is not None:
            self.metrics.record_log(self.record.id, worker.id, line)

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self.reconcile()
            except Exception:  # the loop must survive one bad tick
                logger.exception("endpoint %s: scaling tick failed", self.record.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._tick_s)
            self._changed.clear()

    async def reconcile(self) -> None:
        """One scaling step: drop the dead, start what is missing, drain what is idle or old."""
        await self._remove_unhealthy()
        if self.metrics is not None:
            live = sum(1 for w in self.workers if w.state in LIVE_STATES)
            self.metrics.sample_load(self.record.id, self.inflight + self.waiting, live, time.time())
        current = [
            w for w in self.workers if w.release_key == self.record.release.key and w.state in LIVE_STATES
        ]
        decision = self.decision()
        desired = decision.workers
        if len(current) < desired:
            await self._start_workers(desired - len(current), decision.reason)
        self._drain_outdated(desired)
        self._drain_idle(current, desired)
        await self._stop_drained()

    async def _remove_unhealthy(self) -> None:
        for worker in [w for w in self.workers if w.state == "unhealthy"]:
            self.failures.append(
                {
                    "at": time.time(),
                    "worker": worker.id,
                    "release": worker.release_key,
                    "reason": worker.failure,
                    "log": worker.last_lines(),
                }
            )
            if worker.ready_at is None:
                self._consecutive_failures += 1
                backoff = min(30.0, 0.5 * 2 ** (self._consecutive_failures - 1))
                self._next_start_at = time.monotonic() + backoff
            self._decide("replace", f"worker {worker.id} unhealthy: {worker.failure}")
            await worker.stop(grace_s=2)
            self.workers.remove(worker)

    async def _start_workers(self, count: int, reason: str) -> None:
        if time.monotonic() < self._next_start_at:
            return
        try:
            spec = await self._make_spec(self.record)
        except Exception as error:  # e.g. the worker environment failed to install
            self._consecutive_failures += 1
            self._next_start_at = time.monotonic() + min(30.0, 0.5 * 2 ** (self._consecutive_failures - 1))
            failure = {"at": time.time(), "worker": None, "release": self.record.release.key}
            self.failures.append({**failure, "reason": str(error), "log": []})
            self._decide("start failed", str(error).splitlines()[0])
            return
        for _ in range(count):
            worker = Worker(spec, on_state=self._worker_state, on_log=self._worker_log)
            self.workers.append(worker)
            await worker.start()
            self._decide("scale out", f"started {worker.id}: {reason}")

    def _drain_outdated(self, desired: int) -> None:
        ready_current = sum(
            1 for w in self.workers if w.release_key == self.record.release.key and w.state == "ready"
        )
        outdated = [
            w for w in self.workers if w.release_key != self.record.release.key and w.state in LIVE_STATES
        ]
        if ready_current:
            self._consecutive_failures = 0
        keep = max(0, desired - ready_current)
        for worker in sorted(outdated, key=lambda w: w.inflight)[: max(0, len(outdated) - keep)]:
            reason = f"{worker.id} runs an outdated release; {ready_current} new worker(s) ready"
            worker.set_state("draining", reason)
            self._decide("drain", reason)

    def _drain_idle(self, current: list[Worker], desired: int) -> None:
        live = [w for w in current if w.state in LIVE_STATES]
        over_max = len(live) - self.record.scaling["workersMax"]
        if over_max > 0:  # a lowered workersMax applies at once: drain the least busy
            for worker in sorted(live, key=lambda w: (w.state == "ready", w.inflight))[:over_max]:
                reason = f"{worker.id} above workersMax {self.record.scaling['workersMax']}"
                worker.set_state("draining", reason)
                self._decide("scale in", reason)
            live = [w for w in live if w.state in LIVE_STATES]
        now = time.monotonic()
        idle = [IdleWorker(w.id, now - w.last_active) for w in live if w.state == "ready" and w.inflight == 0]
        by_id = {w.id: w for w in live}
        timeout = float(self.record.scaling["idleTimeout"])
        for worker_id, reason in choose_idle_drains(len(live), desired, idle, timeout):
            by_id[worker_id].set_state("draining", reason)
            self._decide("scale in", reason)

    async def _stop_drained(self) -> None:
        for worker in [w for w in self.workers if w.state == "draining" and w.inflight == 0]:
            await worker.stop()
            self.workers.remove(worker)

    def describe(self) -> dict[str, Any]:
        """Workers, counts and recent decisions, for the control API."""
        counts: dict[str, int] = {}
        for worker in self.workers:
            counts[worker.state] = counts.get(worker.state, 0) + 1
        return {
            "desired": self.desired(),
            "inflight": self.inflight,
            "waiting": self.waiting,
            "workers": [w.describe() for w in self.workers],
            "counts": counts,
            "decisions": list(self.decisions)[-20:],
            "failures": list(self.failures),
        }
