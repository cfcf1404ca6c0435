"""The autoscaling policy: pure functions from an endpoint's load and scaling settings to what the
pool should do, with the reason in words. The runtime's pool and the what-if replay
(`podroute.runtime.replay`) both call them: one policy, two callers.

- `desired_workers`: ceil((in flight + waiting) / scalerValue), clamped to [workersMin, workersMax];
  a request waiting with no worker asks for at least one, so `workersMin = 0` scales from zero.
- `choose_idle_drains`: among ready workers idle for at least `idleTimeout`, the longest idle are
  drained while more workers are live than desired.

Neither reads a clock, touches a worker or logs: inputs in, decision (with its reason) out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalingDecision:
    """How many workers the endpoint should have, and why."""

    workers: int
    reason: str


@dataclass(frozen=True)
class IdleWorker:
    """A ready worker with nothing in flight, and for how long it has been idle."""

    id: str
    idle_s: float


def desired_workers(scaling: Mapping[str, float], inflight: int, waiting: int) -> ScalingDecision:
    """The worker count `scaling` (workersMin, workersMax, scalerValue) asks for under this load."""
    minimum, maximum = int(scaling["workersMin"]), int(scaling["workersMax"])
    scaler = max(1, int(scaling["scalerValue"]))
    demand = inflight + waiting
    wanted = math.ceil(demand / scaler)  # >= 1 whenever a request waits
    reason = f"{inflight} in flight + {waiting} waiting / scalerValue {scaler} -> {wanted} workers"
    workers = wanted
    if workers > maximum:
        workers = maximum
        reason += f", capped at workersMax {maximum}"
    if workers < minimum:
        workers = minimum
        reason += f", raised to workersMin {minimum}"
    return ScalingDecision(workers, reason)


def choose_idle_drains(
    live: int, desired: int, idle: Sequence[IdleWorker], idle_timeout_s: float
) -> list[tuple[str, str]]:
    """Workers to drain (id, reason): idle >= idleTimeout, longest idle first, down to `desired`."""
    expired = sorted((w for w in idle if w.idle_s >= idle_timeout_s), key=lambda w: -w.idle_s)
    return [
        (
            worker.id,
            f"idle {worker.idle_s:.0f} s >= idleTimeout {idle_timeout_s:g} s -> drain {worker.id}"
            f" ({live} live, {desired} desired)",
        )
        for worker in expired[: max(0, live - desired)]
    ]
