"""The PodRoute benchmark (`nox -s bench`; not part of CI): CPU routes side by side, then /gpu/compute.

    python bench/run.py [-r ROUNDS] [-d SECONDS] [--cold N] [--only a,b] [--no-access-log]
                        [--skip-cpu] [--skip-gpu] [--gpu-server uvicorn] [--out report.md]

1. CPU routes: `GET /health`, `POST /transform` and `POST /validate` on every peer of
   `bench/peers.json`, interleaved over rounds by `../shared/bench/peer_bench.py` (server pinned to
   CPU 0, wrk to CPU 1): the real Flash worker (the baseline), "podroute (as deployed)" (the default
   `podroute serve services.cpu.endpoint`, with its ratios to Flash and p99/p50 beside those of the
   bare-ASGI floor, `bench/floor_app.py`), the same on Hypercorn, uvicorn and Granian, the same
   handlers as bare Quart routes on the same server settings (`bench/peers.py`) and on FastAPI +
   uvicorn (`bench/fastapi_app.py`). Then a table of per-round ratios of each podroute variant to
   bare Quart on its server and to FastAPI + uvicorn. First, how often the machine stalls a busy
   process on each core (`bench/stalls.py`): the floor under every p99.
2. `/gpu/compute` latency for 1e3, 1e5 and 1e6 numbers, split into parsing and compute
   (`bench/gpu_latency.py`), on the server deployed workers run unless `--gpu-server` says another.

podroute and the services are compiled to bytecode first, as the worker image does at build time.
Needs `wrk` and `taskset` on PATH and fastapi installed next to podroute; the Flash peer's venv is
built by peer_bench's setup on first use (network to PyPI). Every peer runs with its access log on,
as deployed workers do; `--no-access-log` turns it off for every peer except the Flash baseline
(whose no-access-log variant is always measured too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from podroute.server import DEFAULT_WORKER_SERVER

PROJECT = Path(__file__).resolve().parent.parent
PEER_BENCH = Path(
    os.environ.get("PODROUTE_PEER_BENCH", "") or PROJECT / ".." / "shared" / "bench" / "peer_bench.py"
)
"""The harness; PODROUTE_PEER_BENCH points elsewhere when this checkout is not next to shared/."""
PEERS = PROJECT / "bench" / "peers.json"
REQUESTS = ("GET /health", "POST /transform", "POST /validate")
SERVERS = ("hypercorn", "uvicorn", "granian")
FASTAPI = "fastapi/uvicorn"
DEPLOYED = "podroute (as deployed)"
"""`podroute serve` with its default server, as built artifacts and the runtime's workers run it."""
FLASH = "flash-lb-handler/uvicorn"
DEPLOYED_NO_LOG = "podroute (as deployed) without access log"
ACCESS_LOG_TARGET = 0.03
"""The access log may cost at most 3 % of the deployed worker's throughput."""
FLOOR = "floor: bare ASGI + pydantic/uvicorn"
"""The same three routes with no framework (`bench/floor_app.py`): what the machine allows."""
DEPLOYED_TARGETS = {"GET /health": 2.0, "POST /transform": 1.5, "POST /validate": 1.5}
"""Throughput of podroute as deployed over the Flash worker's, per request (issue #12)."""
TAIL_TARGET = 2.0
"""p99 must stay within twice p50."""
OVERHEAD_TARGET = 0.95
"""podroute's throughput must stay within 5 % of bare Quart on the same server."""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-r", "--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("-d", "--duration", type=float, default=8.0, help="seconds per wrk run (default 8)")
    parser.add_argument("--cold", type=int, default=3, help="cold starts per peer (default 3; 0 skips)")
    parser.add_argument("--only", help="comma-separated peer names (default: all in bench/peers.json)")
    parser.add_argument("--no-access-log", action="store_true", help="turn the access log off for our peers")
    parser.add_argument("--skip-cpu", action="store_true", help="skip the CPU peer comparison")
    parser.add_argument("--skip-gpu", action="store_true", help="skip the /gpu/compute latency part")
    parser.add_argument(
        "--gpu-server",
        choices=SERVERS,
        default=DEFAULT_WORKER_SERVER,
        help=f"server for the gpu part (default {DEFAULT_WORKER_SERVER}, what deployed workers run)",
    )
    parser.add_argument("--gpu-repeat", type=int, default=15, help="requests per body size and kind")
    parser.add_argument("--out", type=Path, help="also write the markdown report to this file")
    return parser.parse_args(argv)


def _run_peer_bench(args: argparse.Namespace, raw_json: Path) -> str:
    if not PEER_BENCH.is_file():
        raise SystemExit(f"{PEER_BENCH} is missing: the shared/ folder must sit next to the repository")
    env = {
        **os.environ,
        "PROJECT_DIR": str(PROJECT),
        "PODROUTE_PYTHON": sys.executable,
        "BENCH_ACCESS_FLAG": "--no-access-log" if args.no_access_log else "",
    }
    command = [
        sys.executable, str(PEER_BENCH), "-c", str(PEERS), "-r", str(args.rounds), "-d", str(args.duration),
        "--cold", str(args.cold), "--json", str(raw_json),
    ]  # fmt: skip
    if args.only:
        command += ["--only", args.only]
    result = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode not in (0, 1):  # 1: some peer failed a round; the report says which
        raise SystemExit(f"peer_bench failed with exit status {result.returncode}")
    report = result.stdout
    start = report.find("Date: ")  # the setup scripts also print to stdout, before the report
    return report[start:] if start >= 0 else report


def _ratios(rounds: list[dict[str, Any]], name: str, reference: str, request: str) -> list[float]:
    by_round: dict[int, dict[str, float]] = {}
    for row in rounds:
        result = row.get("results", {}).get(request)
        if result:
            by_round.setdefault(row["round"], {})[row["config"]] = result["rps"]
    return [r[name] / r[reference] for r in by_round.values() if name in r and reference in r]


def _latency(rounds: list[dict[str, Any]], name: str, request: str) -> tuple[float, float, float]:
    results = [
        row["results"][request]
        for row in rounds
        if row["config"] == name and request in row.get("results", {})
    ]
    return (
        statistics.median(r["rps"] for r in results),
        statistics.median(r["p50"] for r in results),
        statistics.median(r["p99"] for r in results),
    )


def _ratio_table(raw_json: Path) -> str:
    rounds: list[dict[str, Any]] = json.loads(raw_json.read_text())["rounds"]
    names = {row["config"] for row in rounds if row.get("results")}
    lines = [
        "### podroute vs the same handlers as bare Quart routes (same server and settings) and on "
        "FastAPI + uvicorn",
        "",
        "| server | request | podroute req/s | p50 / p99 ms | bare Quart req/s | p50 / p99 ms "
        "| podroute ÷ Quart (per round) | podroute ÷ FastAPI+uvicorn (per round) |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    missed = []
    for server in SERVERS:
        ours, bare = f"podroute/{server}", f"quart/{server}"
        if ours not in names or bare not in names:
            continue
        for request in REQUESTS:
            rps, p50, p99 = _latency(rounds, ours, request)
            q_rps, q_p50, q_p99 = _latency(rounds, bare, request)
            vs_quart = _ratios(rounds, ours, bare, request)
            vs_fastapi = _ratios(rounds, ours, FASTAPI, request) if FASTAPI in names else []
            if statistics.median(vs_quart) < OVERHEAD_TARGET:
                missed.append(f"{ours} {request}")
            lines.append(
                f"| {server} | {request} | {rps:,.0f} | {p50:.2f} / {p99:.2f} | {q_rps:,.0f} "
                f"| {q_p50:.2f} / {q_p99:.2f} | {_format_ratios(vs_quart)} | {_format_ratios(vs_fastapi)} |"
            )
    verdict = "met everywhere" if not missed else "missed for " + ", ".join(missed)
    lines += ["", f"Target: podroute within 5 % of bare Quart on the same server (ratio >= 0.95): {verdict}."]
    return "\n".join(lines)


def _deployed_table(raw_json: Path) -> str:
    rounds: list[dict[str, Any]] = json.loads(raw_json.read_text())["rounds"]
    names = {row["config"] for row in rounds if row.get("results")}
    if DEPLOYED not in names or FLASH not in names:
        return ""
    lines = [
        f"### {DEPLOYED} (`podroute serve`, default server) vs the Flash worker",
        "",
        "| request | req/s | p50 / p99 ms | p99 ÷ p50 | ÷ Flash req/s (per round) | target "
        "| bare-ASGI floor: p50 / p99 ms, p99 ÷ p50 |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    missed = []
    for request in REQUESTS:
        rps, p50, p99 = _latency(rounds, DEPLOYED, request)
        ratios = _ratios(rounds, DEPLOYED, FLASH, request)
        target = DEPLOYED_TARGETS[request]
        tail = p99 / p50 if p50 else float("inf")
        if not ratios or statistics.median(ratios) < target or tail > TAIL_TARGET:
            missed.append(request)
        floor = "n/a"
        if FLOOR in names:
            _, f50, f99 = _latency(rounds, FLOOR, request)
            floor = f"{f50:.2f} / {f99:.2f}, {f99 / f50:.2f}" if f50 else "n/a"
        lines.append(
            f"| {request} | {rps:,.0f} | {p50:.2f} / {p99:.2f} | {tail:.2f} | {_format_ratios(ratios)} "
            f"| >= {target:.1f}x, p99/p50 <= {TAIL_TARGET:.0f} | {floor} |"
        )
    verdict = "met everywhere" if not missed else "missed for " + ", ".join(missed)
    return "\n".join([*lines, "", f"Targets: {verdict}.", *_access_log_cost(rounds, names)])


def _access_log_cost(rounds: list[dict[str, Any]], names: set[str]) -> list[str]:
    """The deployed worker's throughput lost to its access log, per request (median of rounds)."""
    if DEPLOYED_NO_LOG not in names:
        return []
    costs = {r: 1 - statistics.median(_ratios(rounds, DEPLOYED, DEPLOYED_NO_LOG, r)) for r in REQUESTS}
    worst = max(costs.values())
    figures = ", ".join(f"{request} {cost:+.1%}" for request, cost in costs.items())
    verdict = "met" if worst <= ACCESS_LOG_TARGET else "missed"
    return [
        "",
        f"Access log cost (1 - with ÷ without, median of rounds): {figures}; "
        f"target <= {ACCESS_LOG_TARGET:.0%}: {verdict}.",
    ]


def _format_ratios(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"**{statistics.median(values):.2f}** ({' '.join(f'{v:.2f}' for v in values)})"


def compile_sources() -> None:
    """Compile podroute and the services to bytecode, as the worker image does at build time.

    The servers run with PYTHONDONTWRITEBYTECODE=1 (as deployed workers do), so without this the
    cold-start figures would include compiling every podroute module from source.
    """
    import compileall

    import podroute

    for folder in (Path(podroute.__file__).parent, PROJECT / "services", PROJECT / "bench"):
        compileall.compile_dir(folder, quiet=1)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the markdown report."""
    args = _parse_args(argv)
    compile_sources()
    sys.path.insert(0, str(PROJECT))
    from bench import gpu_latency, stalls

    sections = []
    if not args.skip_cpu:
        sections += [stalls.report(stalls.measure([0, 1])), ""]
        with tempfile.TemporaryDirectory(prefix="podroute-bench-") as folder:
            raw_json = Path(folder) / "rounds.json"
            sections += ["## CPU routes, side by side", "", _run_peer_bench(args, raw_json)]
            if raw_json.is_file():
                sections += [_deployed_table(raw_json), "", _ratio_table(raw_json), ""]
    if not args.skip_gpu:
        access_log = not args.no_access_log
        sections.append(gpu_latency.run(PROJECT, args.gpu_server, access_log, args.gpu_repeat))
    report = "\n".join(sections)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
