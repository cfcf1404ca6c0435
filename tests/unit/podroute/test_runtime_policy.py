"""The autoscaling policy is a pure function: load and scaling settings in, worker count and reason out."""

from __future__ import annotations

import pytest

from podroute.runtime.policy import ScalingDecision, desired_workers

SCALING = {"workersMin": 0, "workersMax": 3, "scalerValue": 2}


@pytest.mark.parametrize(
    ("inflight", "waiting", "workers"),
    [(0, 0, 0), (0, 1, 1), (1, 0, 1), (2, 0, 1), (3, 0, 2), (4, 1, 3), (40, 10, 3)],
)
def test_desired_workers_follows_load_within_bounds(inflight: int, waiting: int, workers: int) -> None:
    assert desired_workers(SCALING, inflight, waiting).workers == workers


def test_minimum_holds_without_load_and_reason_names_the_inputs() -> None:
    decision = desired_workers({**SCALING, "workersMin": 2}, inflight=0, waiting=0)
    assert decision == ScalingDecision(
        2, "0 in flight + 0 waiting, scalerValue 2 -> 2 desired (min 2, max 3)"
    )


def test_a_waiting_request_scales_from_zero_even_with_a_large_scaler_value() -> None:
    assert desired_workers({**SCALING, "scalerValue": 100}, inflight=0, waiting=1).workers == 1
