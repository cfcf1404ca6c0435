"""`/gpu/compute` latency for 1e3, 1e5 and 1e6 numbers, split into request parsing and compute.

Each size is sent as integers (int64) and as full-precision floats (float64: 17 significant
digits, about 19 bytes a number in JSON), each as JSON, .npy and raw bytes.

Two measurements, both with the server's work on CPU 0 and the client on CPU 1:

- end to end: `podroute serve services.gpu.endpoint` pinned to CPU 0, sequential requests on one
  keep-alive connection from this process (pinned to CPU 1); the response carries the server's
  `compute_time_ms` (device transfer + the torch work);
- parsing: the route's own body decoder and argument validation, timed in this process pinned to
  CPU 0 on the same bodies; for reference also pydantic's JSON validation alone (the path without
  the numpy decoder) and `json.loads` + `numpy.array`.

"rest" is end to end minus parsing minus compute: HTTP, framework, response and client.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

SIZES = (1_000, 100_000, 1_000_000)
TARGET_MS = 60.0
"""Issue target: one million numbers end to end on the 2-core CPU machine."""


@dataclass(frozen=True)
class Body:
    """One request body: its label, content type and bytes."""

    kind: str
    content_type: str
    data: bytes


def bodies_for(values: np.ndarray) -> list[Body]:
    """The same numbers as JSON, .npy and raw bytes (int64 or float64, as `values` are)."""
    buffer = io.BytesIO()
    np.save(buffer, values)
    floats = values.dtype.kind == "f"
    suffix = " floats" if floats else ""
    dtype = "float64" if floats else "int64"
    raw = values.astype("<f8" if floats else "<i8").tobytes()
    return [
        Body("json" + suffix, "application/json", orjson.dumps({"numbers": values.tolist()})),
        Body("npy" + suffix, "application/x-npy", buffer.getvalue()),
        Body("raw" + suffix, f"application/octet-stream; dtype={dtype}", raw),
    ]


def _agrees(answer: Any, expected: int | float) -> bool:
    if isinstance(expected, int):
        return bool(answer == expected)
    return abs(answer - expected) <= 1e-9 * abs(expected)


def _median_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1000


def _time(call: Callable[[], Any], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return _median_ms(timings)


def parse_times(bodies: list[Body], repeat: int) -> dict[str, dict[str, float]]:
    """Median ms to decode and validate each body as the route does, plus two JSON references.

    Times the route's own body decoder and argument model (what `Binder.bind` runs after reading
    the body), with the garbage collector tuned as `podroute serve` tunes it.
    """
    from quart import request

    from podroute import AppSettings, create_app
    from podroute.app import podroute_state
    from podroute.discovery import load_target
    from podroute.server import tune_gc

    resource, registry = load_target("services.gpu.endpoint")
    app = create_app(resource, registry=registry, settings=AppSettings())
    binder = next(b.binder for b in podroute_state(app).routes if b.route.path == "/compute")
    model = binder.model
    assert model is not None
    validator = model.__pydantic_validator__
    tune_gc()

    async def measure(body: Body) -> dict[str, float]:
        headers = {"Content-Type": body.content_type}
        async with app.test_request_context("/compute", method="POST", data=body.data, headers=headers):
            decode = binder.decoders[request.mimetype]
            times = {"parse": _time(lambda: model.model_validate(decode(body.data, request)), repeat)}
            if getattr(decode, "start_stream", None) is not None and body.kind == "json floats":
                times["streamed"] = _time(lambda: model.model_validate(_fed(decode, body.data)), repeat)
        if body.kind.startswith("json"):
            times["pydantic_json"] = _time(lambda: validator.validate_json(body.data), 3)
            times["json_loads_array"] = _time(lambda: np.array(json.loads(body.data)["numbers"]), 3)
        return times

    loop = asyncio.new_event_loop()
    try:
        return {body.kind: loop.run_until_complete(measure(body)) for body in bodies}
    finally:
        loop.close()


def _fed(decode: Any, data: bytes, chunk: int = 65536) -> Any:
    """What the decoder's BodyStream gives for `data` fed in `chunk`-byte pieces, as the body arrives."""
    stream = decode.start_stream()
    for start in range(0, len(data), chunk):
        stream.feed(data[start : start + chunk])
    return stream.result()


@contextlib.contextmanager
def gpu_server(project: Path, port: int, server: str, access_log: bool) -> Iterator[subprocess.Popen[bytes]]:
    """`podroute serve services.gpu.endpoint` pinned to CPU 0, until /ping says 200."""
    command = [
        "taskset", "-c", "0", sys.executable, "-m", "podroute", "serve", "services.gpu.endpoint",
        "--host", "127.0.0.1", "--port", str(port), "--server", server,
    ]  # fmt: skip
    if not access_log:
        command.append("--no-access-log")
    process = subprocess.Popen(
        command, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gpu server exited with {process.returncode}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/ping")
                if connection.getresponse().status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the gpu server did not become ready within 120 s")
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def end_to_end(port: int, body: Body, repeat: int, expected: int | float) -> tuple[float, float, float]:
    """Median and worst end-to-end ms, and the median server compute_time_ms, over `repeat` requests."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": body.content_type}
    timings, compute = [], []
    for attempt in range(repeat + 1):
        started = time.perf_counter()
        connection.request("POST", "/compute", body=body.data, headers=headers)
        response = connection.getresponse()
        answer = orjson.loads(response.read())
        elapsed = time.perf_counter() - started
        if response.status != 200 or not _agrees(answer["sum_of_squares"], expected):
            raise RuntimeError(f"/compute answered {response.status}: {answer}")
        if attempt:  # the first request of each body is a discarded warm-up
            timings.append(elapsed)
            compute.append(answer["compute_time_ms"])
    connection.close()
    return _median_ms(timings), max(timings) * 1000, statistics.median(compute)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(project: Path, server: str, access_log: bool, repeat: int) -> str:
    """Measure every size and body kind; return the markdown section."""
    port = _free_port()
    rng = np.random.default_rng(2026)
    cases = []
    for size in SIZES:
        values = rng.integers(-(10**6), 10**6, size)
        floats = rng.standard_normal(size) * 1e3  # full-precision doubles: 17 significant digits
        cases.append((size, values, floats, bodies_for(values) + bodies_for(floats)))
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        parsing = {size: parse_times(bodies, repeat) for size, _, _, bodies in cases}
    finally:
        os.sched_setaffinity(0, affinity)
    os.sched_setaffinity(0, {1})
    rows = []
    try:
        with gpu_server(project, port, server, access_log):
            for size, values, floats, bodies in cases:
                exact = int((values.astype(object) ** 2).sum())
                approximate = float(np.dot(floats, floats))
                for body in bodies:
                    count = repeat if size < 1_000_000 else max(5, repeat // 2)
                    expected = approximate if body.kind.endswith("floats") else exact
                    e2e, worst, compute = end_to_end(port, body, count, expected)
                    rows.append((size, body, e2e, worst, compute, parsing[size][body.kind]))
    finally:
        os.sched_setaffinity(0, affinity)
    return _render(rows, server, access_log)


def _render(
    rows: list[tuple[int, Body, float, float, float, dict[str, float]]], server: str, log: bool
) -> str:
    lines = [
        f"### /gpu/compute latency (podroute serve services.gpu.endpoint on {server}, access log "
        f"{'on' if log else 'off'}; server on CPU 0, client on CPU 1; torch on the CPU unless a GPU "
        "is present)",
        "",
        "| numbers | body | MB | end to end p50 ms | worst ms | parse ms (decode + validate) | compute ms "
        "| rest ms (HTTP, framework, response) | pydantic JSON alone ms | json.loads + np.array ms "
        "| parsed while arriving ms (64 KiB pieces) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, body, e2e, worst, compute, parse in rows:
        rest = e2e - parse["parse"] - compute
        pydantic_ms = f"{parse['pydantic_json']:.1f}" if "pydantic_json" in parse else ""
        loads_ms = f"{parse['json_loads_array']:.1f}" if "json_loads_array" in parse else ""
        streamed_ms = f"{parse['streamed']:.1f}" if "streamed" in parse else ""
        lines.append(
            f"| {size:,} | {body.kind} | {len(body.data) / 1e6:.2f} | {e2e:.2f} | {worst:.2f} "
            f"| {parse['parse']:.2f} | {compute:.2f} | {rest:.2f} | {pydantic_ms} | {loads_ms} "
            f"| {streamed_ms} |"
        )
    lines += [
        "",
        "Float lists in JSON are parsed while the body arrives (the last column is that work, done "
        "piece by piece): it overlaps the transfer, so for them 'rest' is end to end minus the "
        "whole-body parse and can be small or below zero.",
        "",
    ]
    for kind, label in (("json", "integers"), ("json floats", "floats")):
        million = next(e2e for size, body, e2e, *_ in rows if size == 1_000_000 and body.kind == kind)
        verdict = "met" if million <= TARGET_MS else "MISSED"
        lines.append(
            f"Target: 1e6 {label} as JSON end to end <= {TARGET_MS:.0f} ms: {million:.1f} ms, {verdict}."
        )
    return "\n".join(lines)
