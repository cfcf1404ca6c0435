"""The GPU service's computation, called directly after the startup hook has warmed the device."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from podroute import AppSettings, LoadBalancerSlsResource, create_app
from podroute.app import podroute_state
from podroute.arrays import INT64_MAX
from podroute.discovery import load_target
from services.gpu import endpoint
from services.gpu.endpoint import TorchRuntime, compute, gpu_info, summarize
from tests.helpers import REPO_ROOT

ROOT = 3_037_000_499  # the largest integer whose square fits in int64
CUDA = torch.cuda.is_available()


@pytest.fixture
async def runtime() -> TorchRuntime:
    """What the startup hook hands the routes: torch and the warmed device."""
    return await endpoint.warm_up()


def exact_sum_of_squares(values: np.ndarray) -> int:
    return int((values.astype(object) ** 2).sum())


def test_small_integers_give_the_seed_answer(runtime: TorchRuntime) -> None:
    result = summarize(runtime, np.array([1, 2, 3, 4, 5]))
    assert {k: v for k, v in result.items() if k not in ("compute_time_ms", "device")} == {
        "status": "success",
        "input_count": 5,
        "sum_of_squares": 55,
        "mean": 3.0,
        "max": 5,
        "min": 1,
    }
    assert isinstance(result["sum_of_squares"], int) and isinstance(result["max"], int)
    assert result["compute_time_ms"] >= 0
    assert result["device"] == ("cuda:0" if CUDA else "cpu")


def test_integer_sums_are_exact_where_float64_would_round(runtime: TorchRuntime) -> None:
    values = np.array([ROOT, 1, -1, 2])
    result = summarize(runtime, values)
    assert result["sum_of_squares"] == ROOT**2 + 6  # float64 cannot hold this exactly
    assert int(float(ROOT**2 + 6)) != ROOT**2 + 6
    assert (result["max"], result["min"]) == (ROOT, -1)


@pytest.mark.parametrize("largest", [10**6, ROOT // 2], ids=["plain-int64-sum", "split-sum"])
def test_large_random_integers_are_exact(largest: int, runtime: TorchRuntime) -> None:
    values = np.random.default_rng(7).integers(-(10**6), 10**6, 1_000_000)
    values[123_456] = largest  # with ROOT // 2, count * largest**2 overflows: the split sum runs
    result = summarize(runtime, values)
    assert result["sum_of_squares"] == exact_sum_of_squares(values)
    assert result["mean"] == pytest.approx(int(values.astype(object).sum()) / values.size)


def test_a_sum_of_squares_beyond_int64_is_a_clear_400_not_a_wrapped_number(runtime: TorchRuntime) -> None:
    with pytest.raises(ValueError, match="does not fit in int64; send fewer or smaller integers"):
        summarize(runtime, np.array([ROOT, ROOT]))
    with pytest.raises(ValueError, match=f"the square of {ROOT + 1} does not fit in int64"):
        summarize(runtime, np.array([1, -(ROOT + 1)]))
    assert summarize(runtime, np.array([ROOT]))["sum_of_squares"] == ROOT**2 <= INT64_MAX


def test_floats_are_summed_in_float64(runtime: TorchRuntime) -> None:
    result = summarize(runtime, np.array([1.5, -2.5, 0.25]))
    assert result["sum_of_squares"] == pytest.approx(1.5**2 + 2.5**2 + 0.25**2)
    assert result["mean"] == pytest.approx((1.5 - 2.5 + 0.25) / 3)
    assert (result["max"], result["min"]) == (1.5, -2.5)
    with pytest.raises(ValueError, match="overflows float64"):
        summarize(runtime, np.array([1e200, 1e200]))


def test_empty_input_is_rejected(runtime: TorchRuntime) -> None:
    with pytest.raises(ValueError, match="numbers is empty; send at least one number"):
        summarize(runtime, np.array([], dtype=np.int64))


async def test_compute_takes_a_plain_list_when_called_from_python(runtime: TorchRuntime) -> None:
    assert (await compute([1, 2.5], runtime))["sum_of_squares"] == 7.25


@pytest.mark.skipif(CUDA, reason="describes a machine without CUDA")
async def test_info_is_truthful_without_a_gpu(runtime: TorchRuntime) -> None:
    info = await gpu_info(runtime)
    assert info["cuda_available"] is False
    assert (info["device_count"], info["devices"], info["device"]) == (0, [], "cpu")
    assert info["torch_version"] == torch.__version__


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
async def test_info_and_compute_use_the_gpu(runtime: TorchRuntime) -> None:
    info = await gpu_info(runtime)
    assert info["cuda_available"] is True and info["device"] == "cuda:0"
    assert info["device_count"] == len(info["devices"]) >= 1
    first = info["devices"][0]
    assert first["name"] and first["total_memory_bytes"] >= first["free_memory_bytes"] > 0
    assert first["compute_capability"].count(".") == 1
    values = np.random.default_rng(3).integers(-(10**6), 10**6, 1_000_000)
    result = summarize(runtime, values)
    assert result["device"] == "cuda:0"
    assert result["sum_of_squares"] == exact_sum_of_squares(values)


def test_the_resource_is_the_deployable_gpu_class() -> None:
    assert type(endpoint.api) is LoadBalancerSlsResource
    assert not endpoint.api.live


def test_importing_the_module_does_not_import_torch() -> None:
    code = "import sys, services.gpu.endpoint; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"


def test_running_the_module_prints_each_function_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.gpu.endpoint"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert '"sum_of_squares": 55' in result.stdout
    assert '"torch_version"' in result.stdout
    assert '"service": "gpu"' in result.stdout


def test_the_routes_get_torch_from_the_startup_hook_not_a_global() -> None:
    source = Path(endpoint.__file__).read_text()
    assert not re.search(r"^\s*global\s", source, re.MULTILINE)
    resource, registry = load_target("services.gpu.endpoint")  # as `podroute serve` loads it
    app = create_app(resource, registry=registry, settings=AppSettings())
    hooks = podroute_state(app).startup[0].hooks
    wired = {
        b.route.name: [(name, hooks[i].__name__) for name, i in b.startup_args]
        for b in podroute_state(app).routes
    }
    assert wired == {
        "gpu_health": [],
        "gpu_info": [("runtime", "warm_up")],
        "compute": [("runtime", "warm_up")],
    }
