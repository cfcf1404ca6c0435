"""The autoscaling policy: one pure function from an endpoint's load and scaling settings to the
number of workers it should have, with the reason in words.

desired = ceil((in flight + waiting) / scalerValue), clamped to [workersMin, workersMax]; a request
waiting with no worker asks for at least one, so `workersMin = 0` scales from zero. The pool applies
the answer; a what-if replay can call the same function with recorded inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalingDecision:
    """How many workers the endpoint should have, and why."""

    workers: int
    reason: str


def desired_workers(scaling: Mapping[str, int], inflight: int, waiting: int) -> ScalingDecision:
    """The worker count `scaling` (workersMin, workersMax, scalerValue) asks for under this load."""
    minimum, maximum = scaling["workersMin"], scaling["workersMax"]
    scaler = max(1, scaling["scalerValue"])
    wanted = math.ceil((inflight + waiting) / scaler)  # >= 1 whenever a request waits
    workers = max(minimum, min(maximum, wanted))
    reason = (
        f"{inflight} in flight + {waiting} waiting, scalerValue {scaler}"
        f" -> {workers} desired (min {minimum}, max {maximum})"
    )
    return ScalingDecision(workers, reason)
