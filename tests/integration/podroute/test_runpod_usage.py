"""RunPod usage through the fake RunPod on real Hypercorn: worker-count samples from the health API,
catalog prices, and the serverless bill next to the estimate."""

from __future__ import annotations

import time

import httpx
import pytest

from podroute.cost import worker_price_per_hour
from podroute.providers.base import DeployError
from podroute.providers.runpod.http import RunPodSettings
from podroute.providers.runpod.usage import (
    WorkerSample,
    estimate_from_samples,
    fetch_prices,
    read_serverless_billing,
    sample_worker_counts,
)
from tests.fake_runpod import API_KEY, FakeRunPod, fake_runpod_server


def _settings(base: str, **overrides: str) -> RunPodSettings:
    values = {"api_key": API_KEY, "rest_url": f"{base}/v2", "serverless_url": f"{base}/dataplane/v2",
              "endpoint_url": f"{base}/lb/{{id}}", **overrides}  # fmt: skip
    return RunPodSettings(**values)  # type: ignore[arg-type]


def test_prices_come_from_the_catalog_and_the_bill_from_the_billing_api() -> None:
    with fake_runpod_server(FakeRunPod()) as (fake, base):
        settings = _settings(base)
        prices = fetch_prices(settings)
        assert prices.gpu_pools["ADA_24"] == 1.10 and "catalog" in prices.source
        assert prices.gpu_pools["AMPERE_80"] == 2.736  # not in the fake's catalog: the shipped file
        assert worker_price_per_hour({"gpus": ["NVIDIA GeForce RTX 4090"], "gpuCount": 2}, prices) == 2.2
        assert fake.count("GET /v2/catalog/gpus") == 1

        fake.billing_records = [
            {"startTime": "2026-11-29T00:00:00Z", "endTime": "2026-11-30T00:00:00Z", "totalAmount": 1.5,
             "gpuAmount": 1.4, "cpuAmount": 0, "diskAmount": 0.1, "feeAmount": 0, "serverlessId": "ep1"},
            {"startTime": "2026-11-29T00:00:00Z", "endTime": "2026-11-30T00:00:00Z", "totalAmount": 9.0,
             "gpuAmount": 9.0, "cpuAmount": 0, "diskAmount": 0, "feeAmount": 0, "serverlessId": "other"},
        ]  # fmt: skip
        bill = read_serverless_billing(settings, "ep1", "2026-11-29T00:00:00Z", "2026-11-30T00:00:00Z")
        assert [r["totalAmount"] for r in bill] == [1.5]
        with pytest.raises(DeployError, match="API key"):
            fetch_prices(_settings(base, api_key="wrong"))


def test_worker_counts_are_sampled_from_the_health_api() -> None:
    with fake_runpod_server(FakeRunPod(cold_start_s=0.05)) as (_, base):
        body = {"name": "usage", "type": "LOAD_BALANCER", "image": "img:1", "gpu": {"pools": ["ADA_24"]},
                "scaling": {"type": "REQUEST_COUNT", "requestCount": 1},
                "workers": {"min": 1, "max": 2, "idleTimeout": 5}, "timeout": 300000}  # fmt: skip
        created = httpx.post(
            f"{base}/v2/serverless", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert created.status_code == 201, created.text
        settings = _settings(base)
        first = sample_worker_counts(settings, created.json()["id"])
        assert first.counts["initializing"] == 1 and first.billed_workers == 1
        time.sleep(0.1)
        later = sample_worker_counts(settings, created.json()["id"])
        assert later.counts["idle"] == 1 and later.at > first.at
    samples = [WorkerSample("ep", 0.0, {"idle": 2}), WorkerSample("ep", 1800.0, {"running": 1}),
               WorkerSample("ep", 3600.0, {})]  # fmt: skip
    # 2 workers for half an hour, then 1 for half an hour: 1.5 worker-hours at 2 USD/h
    assert estimate_from_samples(samples, 2.0) == pytest.approx(3.0)
