"""How often the machine takes a core away from a busy process: the floor under every p99.

    python -m bench.stalls [--cpus 0,1] [--seconds 3]

A tight loop pinned to one core reads the clock and records every gap longer than 0.1 ms: time
the process did not run although it wanted to (the host's other jobs, a hypervisor, interrupts).
Each such stall on the server's or the load generator's core delays every request in flight by
its length, whatever the server does, so a p99 ÷ p50 target is only meaningful where stalls of
p50's size are rarer than 1 request in 100. `bench/run.py` prints this for both benchmark cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

THRESHOLDS_MS = (0.1, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Stalls:
    """Gaps a busy loop saw on one core: how many per second above each threshold, the longest."""

    cpu: int
    per_second: dict[float, float]
    longest_ms: float
    lost_fraction: float
    """Share of the wall time lost in gaps above the smallest threshold."""


def _probe(seconds: float) -> dict[str, float | list[int]]:
    """The busy loop (run in the pinned child): gap counts per threshold, longest gap, total lost."""
    limits = [int(ms * 1e6) for ms in THRESHOLDS_MS]
    counts = [0] * len(limits)
    longest = lost = 0
    clock = time.perf_counter_ns
    last = start = clock()
    end = start + int(seconds * 1e9)
    while last < end:
        now = clock()
        gap = now - last
        last = now
        if gap > limits[0]:
            lost += gap
            longest = max(longest, gap)
            for index, limit in enumerate(limits):
                if gap > limit:
                    counts[index] += 1
    return {"counts": counts, "longest_ns": longest, "lost_ns": lost, "wall_ns": last - start}


def measure(cpus: list[int], seconds: float = 3.0) -> list[Stalls]:
    """Run the probe on each of `cpus` at once (all cores busy, as under load) for `seconds`."""
    code = f"import json, bench.stalls as s; print(json.dumps(s._probe({seconds!r})))"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    probes = [
        subprocess.Popen(
            ["taskset", "-c", str(cpu), sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        for cpu in cpus
    ]
    results = []
    for cpu, probe in zip(cpus, probes, strict=True):
        out, _ = probe.communicate()
        raw = json.loads(out)
        wall = raw["wall_ns"] / 1e9
        results.append(
            Stalls(
                cpu=cpu,
                per_second={ms: n / wall for ms, n in zip(THRESHOLDS_MS, raw["counts"], strict=True)},
                longest_ms=raw["longest_ns"] / 1e6,
                lost_fraction=raw["lost_ns"] / raw["wall_ns"],
            )
        )
    return results


def report(stalls: list[Stalls]) -> str:
    """A markdown table of the stalls of each measured core."""
    header = " | ".join(f"> {ms:g} ms" for ms in THRESHOLDS_MS)
    lines = [
        "### Machine: stalls of a busy process on each core at once (per second), before the load",
        "",
        f"| core | {header} | longest ms | time lost |",
        "|---|" + "---:|" * (len(THRESHOLDS_MS) + 2),
    ]
    for s in stalls:
        counts = " | ".join(f"{s.per_second[ms]:.1f}" for ms in THRESHOLDS_MS)
        lines.append(f"| CPU {s.cpu} | {counts} | {s.longest_ms:.1f} | {s.lost_fraction:.2%} |")
    return "\n".join(lines)


def main() -> None:
    """Print the stalls of the given cores, probed at once."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpus", default="0,1", help="comma-separated cores (default 0,1)")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(report(measure([int(cpu) for cpu in args.cpus.split(",")], args.seconds)))


if __name__ == "__main__":
    main()
