"""Resource validation: defaults, every rule, and messages that say what to change."""

from __future__ import annotations

import pytest

from podroute import (
    CpuLiveLoadBalancer,
    CpuLoadBalancerSlsResource,
    LiveLoadBalancer,
    LoadBalancerSlsResource,
    ResourceConfigError,
)
from podroute.catalog import CPU_INSTANCE_IDS, GPU_POOLS
from podroute.resources import resource_from_config


def problems(error: pytest.ExceptionInfo[ResourceConfigError]) -> dict[str, str]:
    return {p.field: p.message for p in error.value.problems}


def test_defaults_follow_flash() -> None:
    gpu = LoadBalancerSlsResource(name="api")
    assert (gpu.workersMin, gpu.workersMax, gpu.idleTimeout) == (0, 1, 60)
    assert (gpu.scalerType, gpu.scalerValue, gpu.gpuCount, gpu.gpus) == ("REQUEST_COUNT", 4, 1, ["ANY"])
    assert gpu.env == {} and gpu.executionTimeoutMs == 0 and gpu.flashboot is True
    cpu = CpuLoadBalancerSlsResource(name="api")
    assert cpu.instanceIds == ["cpu3g-2-8"]
    assert not hasattr(cpu, "gpus")


def test_live_and_compute_kinds() -> None:
    assert LiveLoadBalancer(name="a").live and CpuLiveLoadBalancer(name="a").live
    assert not LoadBalancerSlsResource(name="a").live
    assert CpuLiveLoadBalancer(name="a").kind == "cpu live"
    assert LoadBalancerSlsResource(name="a").kind == "gpu"


@pytest.mark.parametrize("name", ["", "has space", "-leading", "a" * 64, "semi;colon", "../x"])
def test_name_must_be_safe(name: str) -> None:
    with pytest.raises(ResourceConfigError) as error:
        LiveLoadBalancer(name=name)
    assert "name" in problems(error)


def test_name_is_required() -> None:
    with pytest.raises(ResourceConfigError) as error:
        LiveLoadBalancer()  # type: ignore[call-arg]
    assert problems(error)["name"] == "Field required"


def test_workers_min_above_max_names_both_fields_and_the_fix() -> None:
    with pytest.raises(ResourceConfigError) as error:
        LoadBalancerSlsResource(name="api", workersMin=3, workersMax=2)
    message = str(error.value)
    assert "workersMin (3) must not exceed workersMax (2)" in problems(error)["workersMax"]
    assert "lower workersMin or raise workersMax" in message


def test_negative_workers_rejected() -> None:
    with pytest.raises(ResourceConfigError) as error:
        LoadBalancerSlsResource(name="api", workersMin=-1)
    assert "must be 0 or more" in problems(error)["workersMin"]


@pytest.mark.parametrize("value", [0, 3601, -5])
def test_idle_timeout_range(value: int) -> None:
    with pytest.raises(ResourceConfigError) as error:
        LoadBalancerSlsResource(name="api", idleTimeout=value)
    assert "between 1 and 3600" in problems(error)["idleTimeout"]


def test_idle_timeout_bounds_accepted() -> None:
    assert LoadBalancerSlsResource(name="api", idleTimeout=1).idleTimeout == 1
    assert LoadBalancerSlsResource(name="api", idleTimeout=3600).idleTimeout == 3600


def test_scaler_type_only_request_count() -> None:
    with pytest.raises(ResourceConfigError) as error:
        LoadBalancerSlsResource(name="api", scalerType="QUEUE_DELAY")
    assert "REQUEST_COUNT" in problems(error)["scalerType"]


def test_scaler_value_at_least_one() -> None:
    with pytest.raises(ResourceConfigError) as error:
        LoadBalancerSlsResource(name="api", scalerValue=0)
    assert "1 or more" in problems(error)["scalerValue"]


def test_unknown_gpu_pool_lists_valid_ones() -> None:
    with pytest.raises(ResourceConfigError) as error:
        LoadBalancerSlsResource(name="api", gpus=["ADA_99"])
    message = problems(error)["gpus"]
    assert "'ADA_99'" in message
    assert all(pool in message for pool in GPU_POOLS)


def test_gpu_pools_and_types_accepted() -> None:
    resource = LoadBalancerSlsResource(name="api", gpus=["ADA_24", "NVIDIA H100 80GB HBM3"], gpuCount=2)
    assert resource.gpus == ["ADA_24", "NVIDIA H100 80GB HBM3"]


def test_unknown_cpu_instance_lists_valid_ones() -> None:
    with pytest.raises(ResourceConfigError) as error:
        CpuLoadBalancerSlsResource(name="api", instanceIds=["cpu9x-1-1"])
    message = problems(error)["instanceIds"]
    assert "cpu9x-1-1" in message and all(i in message for i in CPU_INSTANCE_IDS)
    assert CpuLoadBalancerSlsResource(name="api", instanceIds=["cpu3c-1-2"]).instanceIds == ["cpu3c-1-2"]


def test_env_keys_must_be_identifiers() -> None:
    with pytest.raises(ResourceConfigError) as error:
        LiveLoadBalancer(name="api", env={"GOOD": "1", "1BAD": "x", "has-dash": "y"})
    message = problems(error)["env"]
    assert "'1BAD'" in message and "'has-dash'" in message and "GOOD" not in message


def test_locations_accept_csv_and_check_cpu_data_centers() -> None:
    assert LiveLoadBalancer(name="a", locations="US-KS-2, EU-RO-1").locations == ["US-KS-2", "EU-RO-1"]
    with pytest.raises(ResourceConfigError) as error:
        CpuLiveLoadBalancer(name="a", locations=["US-KS-2"])
    assert "EU-RO-1" in problems(error)["locations"]


def test_unknown_field_is_reported_as_a_typo() -> None:
    with pytest.raises(ResourceConfigError) as error:
        LiveLoadBalancer(name="api", workerMax=3)
    assert "unknown field" in problems(error)["workerMax"]


def test_several_problems_reported_together() -> None:
    with pytest.raises(ResourceConfigError) as error:
        LiveLoadBalancer(name="api", idleTimeout=0, scalerValue=0, gpuCount=9)
    assert set(problems(error)) == {"idleTimeout", "scalerValue", "gpuCount"}


def test_assignment_is_validated_too() -> None:
    resource = LiveLoadBalancer(name="api")
    with pytest.raises(ValueError, match="between 1 and 3600"):
        resource.idleTimeout = 0


def test_config_round_trip() -> None:
    original = CpuLoadBalancerSlsResource(name="api", workersMax=3, env={"A": "b"}, instanceIds=["cpu5c-2-4"])
    config = original.to_config()
    assert config["type"] == "CpuLoadBalancerSlsResource"
    assert resource_from_config(config) == original


def test_config_with_unknown_type() -> None:
    with pytest.raises(ResourceConfigError, match="unknown resource type 'Nope'"):
        resource_from_config({"type": "Nope", "name": "x"})
