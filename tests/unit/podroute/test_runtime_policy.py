"""The autoscaling policy is a pure function: load and scaling settings in, worker count and reason out."""

from __future__ import annotations

import pytest

from podroute.runtime.policy import IdleWorker, ScalingDecision, choose_idle_drains, desired_workers

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
        2, "0 in flight + 0 waiting / scalerValue 2 -> 0 workers, raised to workersMin 2"
    )


def test_the_reason_says_when_workers_max_caps_the_load() -> None:
    decision = desired_workers({**SCALING, "scalerValue": 1}, inflight=5, waiting=0)
    assert decision == ScalingDecision(
        3, "5 in flight + 0 waiting / scalerValue 1 -> 5 workers, capped at workersMax 3"
    )


def test_idle_workers_past_the_timeout_drain_longest_idle_first_down_to_desired() -> None:
    idle = [IdleWorker("w-a", 61.0), IdleWorker("w-b", 90.0), IdleWorker("w-c", 10.0)]
    drains = choose_idle_drains(live=3, desired=2, idle=idle, idle_timeout_s=60)
    assert drains == [("w-b", "idle 90 s >= idleTimeout 60 s -> drain w-b (3 live, 2 desired)")]
    assert choose_idle_drains(live=3, desired=0, idle=idle, idle_timeout_s=60)[1][0] == "w-a"
    assert choose_idle_drains(live=2, desired=2, idle=idle, idle_timeout_s=60) == []


def test_a_waiting_request_scales_from_zero_even_with_a_large_scaler_value() -> None:
    assert desired_workers({**SCALING, "scalerValue": 100}, inflight=0, waiting=1).workers == 1
