"""Cost from a fixed trace and price table, computed by hand; price tables from the catalog."""

from __future__ import annotations

import pytest

from podroute.cost import (
    PriceError,
    PriceTable,
    estimate_cost,
    load_price_file,
    prices_from_catalog,
    worker_intervals,
    worker_price_per_hour,
)

PRICES = PriceTable(gpu_pools={"ADA_24": 1.116}, cpu_flavors={"cpu3c": 0.03}, as_of="test", source="test")


def test_cost_per_1000_requests_matches_the_hand_computed_value() -> None:
    # two workers: w1 lives 0 .. 100.2 s (billed 101 s), w2 lives 10 .. 40 s (billed 30 s)
    events = [
        {"worker": "w1", "at": 1000.0, "state": "starting"},
        {"worker": "w2", "at": 1010.0, "state": "starting"},
        {"worker": "w2", "at": 1040.0, "state": "stopped"},
        {"worker": "w1", "at": 1100.2, "state": "stopped"},
    ]
    lifetimes = worker_intervals(events, 1000.0, 1200.0)
    resource = {"gpus": ["ADA_24"], "gpuCount": 2}
    hourly = worker_price_per_hour(resource, PRICES)
    assert hourly == pytest.approx(2.232)
    report = estimate_cost(
        lifetimes, 200.0, hourly, 500, {"/a": 30.0, "/b": 10.0}, PRICES, daily_budget_usd=10
    )
    # by hand: (101 + 30) s x 2.232 USD/h / 3600 = 0.081220 USD; per 1000 requests: x 1000 / 500
    assert report.billed_seconds == 131
    assert report.cost_usd == pytest.approx(131 * 2.232 / 3600)
    assert report.per_1000_requests_usd == pytest.approx(0.16244, abs=1e-6)
    assert report.per_route_usd["/a"] == pytest.approx(0.75 * 131 * 2.232 / 3600)
    # 0.0812 USD per 200 s -> 35.09 USD/day: over a 10 USD budget
    assert report.per_day_usd == pytest.approx(131 * 2.232 / 3600 * 432)
    assert report.over_budget


def test_cpu_prices_count_vcpus_and_unknown_pools_say_what_is_missing() -> None:
    assert worker_price_per_hour({"instanceIds": ["cpu3c-4-8"]}, PRICES) == pytest.approx(0.12)
    with pytest.raises(PriceError, match="HOPPER_141"):
        worker_price_per_hour({"gpus": ["HOPPER_141"]}, PRICES)
    shipped = load_price_file()
    assert shipped.as_of and "RunPod" in shipped.source and shipped.gpu_pools["ADA_24"] > 0


def test_catalog_prices_override_the_file() -> None:
    catalog = [{"id": "NVIDIA GeForce RTX 4090", "pool": "ADA_24", "price": {"serverless": 1.2}}]
    table = prices_from_catalog(catalog, [{"id": "cpu5c-2-4", "price": {"serverlessPerVcpu": 0.05}}],
                                "2026-11-30", PRICES)  # fmt: skip
    assert table.gpu_pools["ADA_24"] == 1.2 and table.cpu_flavors["cpu5c"] == 0.05
    assert table.cpu_flavors["cpu3c"] == 0.03 and "catalog" in table.source
