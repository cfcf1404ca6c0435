"""The GPU service's routes: GET /health, GET /info and POST /compute (torch).

Resource class: `LoadBalancerSlsResource`, the deployable class, not `LiveLoadBalancer`, for the
same reason as the CPU service: this file is served unchanged by `podroute dev`, by
`python -m services.gpu` and by the deployed worker; `/execute` would add nothing here (every
function is a route) and must not exist on a deployed worker.

torch is imported, and the device chosen and warmed, by the `warm_up` startup hook, not when this
module is imported: the worker answers `/ping` 204 meanwhile and 200 once it can really compute.
It uses CUDA when available, else the CPU. The hook returns a `TorchRuntime` (torch and the
device), which the routes receive as a `Startup[TorchRuntime]` parameter: no module global.

`python -m services.gpu.endpoint` warms up, calls each function once with sample input and prints
the results.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import Field
from typing_extensions import TypedDict

from podroute import LoadBalancerSlsResource, Startup, on_startup, remote
from podroute.arrays import INT64_MAX, NumberArray, accepts_number_array, as_number_array

if TYPE_CHECKING:
    import torch

api = LoadBalancerSlsResource(
    name="gpu",
    gpus=["AMPERE_16", "AMPERE_24", "ADA_24"],
    workersMin=0,
    workersMax=3,
    idleTimeout=60,
)

_MAX_EXACT_SQUARE_ROOT = math.isqrt(INT64_MAX)
"""The largest magnitude whose square still fits in int64."""


@dataclass(frozen=True)
class TorchRuntime:
    """torch, imported by the startup hook, and the device the routes compute on."""

    torch: Any
    device: torch.device


def _load_torch() -> TorchRuntime:
    import torch

    torch.set_grad_enabled(False)
    if torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
        torch.ones(1, device=device).sum().item()  # creates the CUDA context, which takes seconds
    else:
        device = torch.device("cpu")
    return TorchRuntime(torch, device)


@on_startup(api)
async def warm_up() -> TorchRuntime:
    """Import torch, pick CUDA if available (else the CPU) and run one computation on it.

    The import runs in a thread, so `/ping` keeps answering 204 meanwhile; the warm-up computation
    runs on the event loop's thread, where requests compute too. Routes receive the result.
    """
    runtime = await asyncio.to_thread(_load_torch)
    summarize(runtime, np.arange(1, 1025, dtype=np.int64))
    summarize(runtime, np.linspace(0.5, 1.5, 1024))
    return runtime


class HealthStatus(TypedDict):
    """The answer of GET /health."""

    status: str
    service: str


class DeviceInfo(TypedDict):
    """One CUDA device as /info describes it."""

    index: int
    name: str
    total_memory_bytes: int
    free_memory_bytes: int
    compute_capability: str


class RuntimeInfo(TypedDict):
    """The answer of GET /info."""

    status: str
    torch_version: str
    cuda_available: bool
    cuda_version: str | None
    device_count: int
    device: str
    cpu_threads: int
    devices: list[DeviceInfo]


class ComputeResult(TypedDict):
    """The answer of POST /compute."""

    status: str
    input_count: int
    sum_of_squares: int | float
    mean: float
    max: int | float
    min: int | float
    compute_time_ms: float
    device: str


def _exact_sum_of_squares(values: torch.Tensor, count: int, magnitude: int) -> int:
    """sum(x*x) of an int64 tensor, exactly, or ValueError when it does not fit in int64."""
    if magnitude > _MAX_EXACT_SQUARE_ROOT:
        raise ValueError(
            f"the square of {magnitude} does not fit in int64, so neither does the sum of squares; "
            "send smaller integers, or send them as floats (e.g. 3.0e10) for an approximate result"
        )
    squares = values * values
    if count * magnitude * magnitude <= INT64_MAX:
        return int(squares.sum())
    total = (int((squares >> 32).sum()) << 32) + int((squares & 0xFFFFFFFF).sum())
    if total > INT64_MAX:
        raise ValueError(
            f"the sum of squares ({total}) does not fit in int64; send fewer or smaller integers, "
            "or send them as floats for an approximate result"
        )
    return total


def summarize(runtime: TorchRuntime, values: npt.NDArray[Any]) -> ComputeResult:
    """Sum of squares, mean, max and min of a 1-D int64 or float64 array on the warmed device.

    Integers are summed exactly in int64; floats in float64. Raises ValueError for an empty array
    or a result that does not fit.
    """
    count = int(values.size)
    if count == 0:
        raise ValueError("numbers is empty; send at least one number")
    started = time.perf_counter()
    tensor = runtime.torch.from_numpy(values).to(runtime.device)
    low, high = (int(v) if values.dtype.kind == "i" else float(v) for v in runtime.torch.aminmax(tensor))
    sum_of_squares: int | float
    if values.dtype.kind == "i":
        magnitude = max(abs(int(low)), abs(int(high)))
        sum_of_squares = _exact_sum_of_squares(tensor, count, magnitude)
        total = int(tensor.sum()) if count * magnitude <= INT64_MAX else float(tensor.double().sum())
        mean = total / count
    else:
        sum_of_squares = float(runtime.torch.dot(tensor, tensor))
        mean = float(tensor.mean())
        if not math.isfinite(sum_of_squares):
            raise ValueError("the sum of squares overflows float64; send smaller numbers")
    elapsed_ms = (time.perf_counter() - started) * 1000
    return {
        "status": "success",
        "input_count": count,
        "sum_of_squares": sum_of_squares,
        "mean": mean,
        "max": high,
        "min": low,
        "compute_time_ms": round(elapsed_ms, 3),
        "device": str(runtime.device),
    }


@remote(api, method="GET", path="/health")
async def gpu_health() -> HealthStatus:
    """Health of the GPU service (answers once torch is loaded)."""
    return {"status": "healthy", "service": "gpu"}


def _device_info(torch: Any, index: int) -> DeviceInfo:
    free, total = torch.cuda.mem_get_info(index)
    major, minor = torch.cuda.get_device_capability(index)
    return {
        "index": index,
        "name": torch.cuda.get_device_name(index),
        "total_memory_bytes": int(total),
        "free_memory_bytes": int(free),
        "compute_capability": f"{major}.{minor}",
    }


@remote(api, method="GET", path="/info")
async def gpu_info(runtime: Startup[TorchRuntime]) -> RuntimeInfo:
    """torch version, CUDA availability and each CUDA device (name, memory, compute capability).

    On a machine without a GPU, `cuda_available` is false, `devices` is empty and `device` is "cpu".
    """
    torch = runtime.torch
    available = bool(torch.cuda.is_available())
    count = int(torch.cuda.device_count()) if available else 0
    return {
        "status": "success",
        "torch_version": str(torch.__version__),
        "cuda_available": available,
        "cuda_version": torch.version.cuda,
        "device_count": count,
        "device": str(runtime.device),
        "cpu_threads": int(torch.get_num_threads()),
        "devices": [_device_info(torch, index) for index in range(count)],
    }


Numbers = Annotated[
    NumberArray,
    Field(
        description="The numbers: all integers (int64, exact results) or any mix with floats (float64). "
        "Also accepted as a .npy file or raw int64/float64 bytes; see the other media types.",
        examples=[[1, 2, 3, 4, 5]],
    ),
]


@remote(api, method="POST", path="/compute")
@accepts_number_array("numbers")
async def compute(numbers: Numbers, runtime: Startup[TorchRuntime]) -> ComputeResult:
    """Sum of squares, mean, max and min of the numbers, on CUDA when available, else the CPU.

    Integer input gives an exact int64 `sum_of_squares` (400 if it would not fit); float input
    gives float64 results. An empty list is answered 400, non-numbers 422. For large inputs send
    `application/x-npy` or raw `application/octet-stream; dtype=int64` bodies: they skip JSON.
    """
    # Inline on the event loop: a million numbers take about a millisecond, less than a thread hop
    # costs once torch's thread pool has to follow the work to another thread.
    return summarize(runtime, numbers if isinstance(numbers, np.ndarray) else as_number_array(numbers))


async def _demo() -> None:
    runtime = await warm_up()
    samples = {
        "gpu_health()": gpu_health(),
        "gpu_info()": gpu_info(runtime),
        "compute([1, 2, 3, 4, 5])": compute([1, 2, 3, 4, 5], runtime),
    }
    for call, result in samples.items():
        print(f"{call}\n  -> {json.dumps(await result)}")


if __name__ == "__main__":
    asyncio.run(_demo())
