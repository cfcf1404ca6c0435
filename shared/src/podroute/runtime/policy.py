"""The autoscaling policy as pure functions: the runtime's pool and the what-if replay both call them.

- `decide_workers`: desired workers = ceil((in flight + waiting) / scalerValue), clamped to
  [workersMin, workersMax]; a waiting request with no worker asks for at least one, so
  `workersMin = 0` scales from zero.
- `choose_idle_drains`: among ready workers idle for at least `idleTimeout`, the longest idle are
  drained while more workers are live than desired.

Neither reads a clock, touches a worker or logs: inputs in, decision (with its reason) out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalingSettings:
    """The knobs the policy reads (RunPod's names)."""

    workersMin: int
    workersMax: int
    scalerValue: int
    idleTimeout: float

    @classmethod
    def from_scaling(cls, scaling: dict[str, int]) -> ScalingSettings:
        """From an endpoint's `scaling` dict."""
        return cls(
            workersMin=int(scaling["workersMin"]),
            workersMax=int(scaling["workersMax"]),
            scalerValue=max(1, int(scaling["scalerValue"])),
            idleTimeout=float(scaling["idleTimeout"]),
        )


@dataclass(frozen=True)
class ScaleDecision:
    """How many workers the load asks for, and why, with the inputs that led there."""

    desired: int
    reason: str
    inflight: int
    waiting: int


@dataclass(frozen=True)
class IdleWorker:
    """A ready worker with nothing in flight, and for how long it has been idle."""

    id: str
    idle_s: float


def decide_workers(inflight: int, waiting: int, settings: ScalingSettings) -> ScaleDecision:
    """Desired worker count for `inflight` + `waiting` requests under `settings`."""
    demand = inflight + waiting
    wanted = math.ceil(demand / settings.scalerValue)
    reason = f"{demand} in flight / scalerValue {settings.scalerValue} -> {wanted} workers"
    if waiting and wanted == 0:
        wanted = 1
        reason = f"{waiting} waiting with no worker -> 1 worker"
    desired = min(settings.workersMax, wanted)
    if desired < wanted:
        reason += f", capped at workersMax {settings.workersMax}"
    if desired < settings.workersMin:
        desired = settings.workersMin
        reason += f", raised to workersMin {settings.workersMin}"
    return ScaleDecision(desired=desired, reason=reason, inflight=inflight, waiting=waiting)


def choose_idle_drains(
    live: int, desired: int, idle: Sequence[IdleWorker], settings: ScalingSettings
) -> list[tuple[str, str]]:
    """Workers to drain (id, reason): idle >= idleTimeout, longest idle first, down to `desired`."""
    expired = sorted((w for w in idle if w.idle_s >= settings.idleTimeout), key=lambda w: -w.idle_s)
    return [
        (
            worker.id,
            f"idle {worker.idle_s:.0f} s >= idleTimeout {settings.idleTimeout:g} s -> drain {worker.id}"
            f" ({live} live, {desired} desired)",
        )
        for worker in expired[: max(0, live - desired)]
    ]
