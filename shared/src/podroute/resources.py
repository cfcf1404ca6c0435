"""Load-balanced serverless resources: the endpoint a set of routes is deployed as.

Field names follow RunPod Flash (`workersMin`, `idleTimeout`, ...), so Flash code ports by changing
the import. Every resource is validated on construction; a bad value raises `ResourceConfigError`
naming each field and what to change.

| class | for | compute |
| --- | --- | --- |
| `LiveLoadBalancer` | local development (has `/execute`) | GPU |
| `LoadBalancerSlsResource` | deployment | GPU |
| `CpuLiveLoadBalancer` | local development (has `/execute`) | CPU |
| `CpuLoadBalancerSlsResource` | deployment | CPU |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from podroute.catalog import (
    CPU_DATA_CENTERS,
    CPU_INSTANCE_IDS,
    DATA_CENTERS,
    GPU_ANY,
    GPU_POOLS,
    GPU_TYPES,
)
from podroute.secrets import with_secret_references

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_ENV_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MOUNT_PATH_PATTERN = re.compile(r"^/[A-Za-z0-9._/-]+$")
DEFAULT_VOLUME_MOUNT_PATH = "/runpod-volume"
"""Where RunPod serverless workers see their network volume."""

ComputeKind = Literal["gpu", "cpu"]


@dataclass(frozen=True)
class FieldProblem:
    """One invalid field of a resource and what to do about it."""

    field: str
    message: str


class ResourceConfigError(ValueError):
    """A resource's configuration is invalid; `problems` lists each field and the fix."""

    def __init__(self, resource_type: str, problems: list[FieldProblem]) -> None:
        self.resource_type = resource_type
        self.problems = problems
        lines = "\n".join(f"  {p.field}: {p.message}" for p in problems)
        super().__init__(f"invalid {resource_type} configuration:\n{lines}")


def _problems_from(error: ValidationError) -> list[FieldProblem]:
    problems = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "config"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field; check the spelling (fields use Flash's camelCase names)"
        problems.append(FieldProblem(field, message))
    return problems


def _check_worker_range(minimum: int, maximum: int) -> None:
    if minimum > maximum:
        raise ValueError(
            f"workersMin ({minimum}) must not exceed workersMax ({maximum}): "
            "lower workersMin or raise workersMax"
        )


class _LoadBalancerBase(BaseModel):
    """Fields and rules every load-balanced resource shares."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, str_strip_whitespace=True, defer_build=True
    )

    live: ClassVar[bool] = False
    compute: ClassVar[ComputeKind] = "gpu"

    name: str = Field(description="Endpoint name: letters, digits, '-' or '_', at most 63 chars.")
    imageName: str = Field(
        default="",
        description="Worker image. Empty means the image `podroute build` makes for the service.",
    )
    workersMin: int = Field(default=0, description="Workers kept running even when idle.")
    workersMax: int = Field(default=1, description="Most workers the endpoint scales out to.")
    idleTimeout: int = Field(default=60, description="Seconds an idle worker lives (1-3600).")
    scalerType: str = Field(
        default="REQUEST_COUNT", description="Load balancers scale by REQUEST_COUNT only."
    )
    scalerValue: int = Field(default=4, description="Requests in flight per worker before scaling.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment of each worker; a value may be Secret('name'), a platform secret.",
    )
    executionTimeoutMs: int = Field(default=0, description="Per-request limit in ms; 0 = none.")
    flashboot: bool = Field(default=True, description="Keep a snapshot for faster cold starts.")
    locations: list[str] = Field(
        default_factory=list, description="Data center ids; empty means anywhere allowed."
    )
    networkVolumeId: str = Field(default="", description="Network volume to mount; '' = none.")
    volumeMountPath: str = Field(
        default=DEFAULT_VOLUME_MOUNT_PATH,
        description="Where workers see the network volume (RunPod serverless: /runpod-volume).",
    )

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise ResourceConfigError(type(self).__name__, _problems_from(error)) from None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not value:
            raise ValueError("a name is required, e.g. name='my-api'")
        if not _NAME_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a safe name: use 1-63 letters, digits, '-' or '_', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("workersMin", "workersMax")
    @classmethod
    def _check_worker_count(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"must be 0 or more, got {value}")
        return value

    @field_validator("idleTimeout")
    @classmethod
    def _check_idle_timeout(cls, value: int) -> int:
        if not 1 <= value <= 3600:
            raise ValueError(f"must be between 1 and 3600 seconds, got {value}")
        return value

    @field_validator("scalerType")
    @classmethod
    def _check_scaler_type(cls, value: str) -> str:
        if value != "REQUEST_COUNT":
            raise ValueError(
                f"load-balanced endpoints scale by 'REQUEST_COUNT' only, got {value!r}; "
                "remove scalerType or set it to 'REQUEST_COUNT'"
            )
        return value

    @field_validator("scalerValue")
    @classmethod
    def _check_scaler_value(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be 1 or more (requests per worker), got {value}")
        return value

    @field_validator("executionTimeoutMs")
    @classmethod
    def _check_execution_timeout(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"must be 0 (no limit) or a positive number of ms, got {value}")
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [key for key in value if not _ENV_KEY_PATTERN.match(key)]
        if bad:
            raise ValueError(
                f"invalid variable name(s) {', '.join(map(repr, bad))}: use letters, digits and "
                "'_', not starting with a digit"
            )
        return with_secret_references(value)

    @field_validator("volumeMountPath")
    @classmethod
    def _check_volume_mount_path(cls, value: str) -> str:
        if not _MOUNT_PATH_PATTERN.match(value) or "/../" in f"{value}/" or value.rstrip("/") == "":
            raise ValueError(
                f"{value!r} is not an absolute folder path below '/': use e.g. '{DEFAULT_VOLUME_MOUNT_PATH}'"
            )
        return value.rstrip("/")

    @field_validator("locations", mode="before")
    @classmethod
    def _split_locations(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("locations")
    @classmethod
    def _check_locations(cls, value: list[str]) -> list[str]:
        allowed = CPU_DATA_CENTERS if cls.compute == "cpu" else DATA_CENTERS
        unknown = [loc for loc in value if loc not in allowed]
        if unknown:
            raise ValueError(
                f"unknown or unavailable data center(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(allowed)}"
            )
        return value

    @field_validator("workersMax")
    @classmethod
    def _check_max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get("workersMin")
        if minimum is not None:
            _check_worker_range(minimum, value)
        return value

    @model_validator(mode="after")
    def _check_worker_range_on_assignment(self) -> _LoadBalancerBase:
        _check_worker_range(self.workersMin, self.workersMax)
        return self

    @property
    def kind(self) -> str:
        """A short description: 'gpu', 'cpu', plus ' live' for development resources."""
        return f"{self.compute}{' live' if self.live else ''}"

    def to_config(self) -> dict[str, Any]:
        """The resource's fields as plain JSON-ready data, plus its class name under `type`."""
        return {"type": type(self).__name__, **self.model_dump(mode="json")}


class LoadBalancerSlsResource(_LoadBalancerBase):
    """A GPU load-balanced serverless endpoint, for deployment (no `/execute`)."""

    gpus: list[str] = Field(
        default_factory=lambda: [GPU_ANY],
        description="GPU pool ids (e.g. ADA_24) or GPU type ids; ['ANY'] = every pool.",
    )
    gpuCount: int = Field(default=1, description="GPUs per worker (1-8).")
    minCudaVersion: str = Field(default="12.8", description="Lowest CUDA version on the host.")

    @field_validator("gpus")
    @classmethod
    def _check_gpus(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one GPU pool, or ['ANY']")
        unknown = [gpu for gpu in value if gpu != GPU_ANY and gpu not in GPU_POOLS and gpu not in GPU_TYPES]
        if unknown:
            raise ValueError(
                f"unknown GPU pool(s) or type(s) {', '.join(map(repr, unknown))}; "
                f"valid pools: {GPU_ANY}, {', '.join(GPU_POOLS)}"
            )
        return value

    @field_validator("gpuCount")
    @classmethod
    def _check_gpu_count(cls, value: int) -> int:
        if not 1 <= value <= 8:
            raise ValueError(f"must be between 1 and 8 GPUs per worker, got {value}")
        return value

    @field_validator("minCudaVersion")
    @classmethod
    def _check_cuda_version(cls, value: str) -> str:
        if not re.fullmatch(r"\d{2}\.\d", value):
            raise ValueError(f"expected a version like '12.8', got {value!r}")
        return value


class LiveLoadBalancer(LoadBalancerSlsResource):
    """A GPU load-balanced endpoint for local development: adds `/execute`."""

    live: ClassVar[bool] = True


class CpuLoadBalancerSlsResource(_LoadBalancerBase):
    """A CPU load-balanced serverless endpoint, for deployment (no `/execute`)."""

    compute: ClassVar[ComputeKind] = "cpu"

    instanceIds: list[str] = Field(
        default_factory=lambda: ["cpu3g-2-8"],
        description="CPU instance ids, '<flavor>-<vCPU>-<RAM GB>' such as cpu3c-1-2.",
    )

    @field_validator("instanceIds")
    @classmethod
    def _check_instance_ids(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one CPU instance id, e.g. ['cpu3c-1-2']")
        unknown = [item for item in value if item not in CPU_INSTANCE_IDS]
        if unknown:
            raise ValueError(
                f"unknown CPU instance id(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(CPU_INSTANCE_IDS)}"
            )
        return value


class CpuLiveLoadBalancer(CpuLoadBalancerSlsResource):
    """A CPU load-balanced endpoint for local development: adds `/execute`."""

    live: ClassVar[bool] = True


Resource = _LoadBalancerBase
"""Any load-balanced resource (the common base class)."""

RESOURCE_TYPES: dict[str, type[Resource]] = {
    cls.__name__: cls
    for cls in (
        LiveLoadBalancer,
        LoadBalancerSlsResource,
        CpuLiveLoadBalancer,
        CpuLoadBalancerSlsResource,
    )
}
"""Resource classes by name, for rebuilding a resource from stored configuration."""


def resource_from_config(config: dict[str, Any]) -> Resource:
    """Rebuild a resource from `Resource.to_config()` output (raises ResourceConfigError)."""
    fields = dict(config)
    type_name = str(fields.pop("type", ""))
    cls = RESOURCE_TYPES.get(type_name)
    if cls is None:
        problem = FieldProblem(
            "type", f"unknown resource type {type_name!r}; valid: {', '.join(RESOURCE_TYPES)}"
        )
        raise ResourceConfigError("resource", [problem])
    return cls(**fields)
