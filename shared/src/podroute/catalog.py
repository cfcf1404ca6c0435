"""RunPod's known identifiers: serverless GPU pools, GPU types, CPU instances, data centers.

Sources: `runpod-contract.md` §4. Membership of pools changes over time on RunPod's side, so these
sets are what PodRoute validates against locally; a value outside them is almost always a typo.
"""

from __future__ import annotations

GPU_POOLS: dict[str, tuple[str, ...]] = {
    "AMPERE_16": (
        "NVIDIA RTX A4000",
        "NVIDIA RTX A4500",
        "NVIDIA RTX 4000 Ada Generation",
        "NVIDIA RTX 2000 Ada Generation",
    ),
    "AMPERE_24": ("NVIDIA L4", "NVIDIA RTX A5000", "NVIDIA GeForce RTX 3090"),
    "ADA_24": ("NVIDIA GeForce RTX 4090",),
    "ADA_32_PRO": ("NVIDIA GeForce RTX 5090",),
    "AMPERE_48": ("NVIDIA RTX A6000", "NVIDIA A40"),
    "ADA_48_PRO": ("NVIDIA L40", "NVIDIA L40S", "NVIDIA RTX 6000 Ada Generation"),
    "AMPERE_80": ("NVIDIA A100 80GB PCIe", "NVIDIA A100-SXM4-80GB"),
    "ADA_80_PRO": ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL"),
    "BLACKWELL_96": (
        "NVIDIA RTX PRO 6000 Blackwell Server Edition",
        "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
        "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
    ),
    "HOPPER_141": ("NVIDIA H200", "NVIDIA H200 NVL"),
    "BLACKWELL_180": ("NVIDIA B200",),
}
"""Serverless GPU pool id -> the GPU type ids it holds."""

GPU_ANY = "ANY"
"""Shorthand for every pool."""

GPU_TYPES: frozenset[str] = frozenset(t for types in GPU_POOLS.values() for t in types)
"""Every GPU type id that belongs to a known pool."""

CPU_INSTANCE_IDS: tuple[str, ...] = tuple(
    f"{flavor}-{vcpu}-{vcpu * ram_per_vcpu}"
    for flavor, ram_per_vcpu in (("cpu3g", 4), ("cpu3c", 2), ("cpu5c", 2))
    for vcpu in (1, 2, 4, 8)
)
"""CPU instance ids, `<flavor>-<vCPU>-<RAM GB>` (cpu3g-1-4 ... cpu5c-8-16)."""

DATA_CENTERS: tuple[str, ...] = (
    "US-CA-2",
    "US-IL-1",
    "US-KS-2",
    "US-MO-1",
    "US-MO-2",
    "US-NC-2",
    "US-NE-1",
    "US-WA-1",
    "EU-CZ-1",
    "EU-RO-1",
    "EUR-NO-1",
)
"""Data centers serverless endpoints may be pinned to."""

CPU_DATA_CENTERS: tuple[str, ...] = ("EU-RO-1",)
"""CPU serverless workers run only here."""


def pool_of(gpu: str) -> str | None:
    """The pool a GPU type id belongs to, or None when it is not a known type."""
    for pool, types in GPU_POOLS.items():
        if gpu in types:
            return pool
    return None
