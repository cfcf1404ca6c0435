"""The runtime's gateway under hostile clients and faults: every failure path gives its capacity
back (in flight returns to 0 and the endpoint scales to zero), bodies stream with bounded memory,
descriptors are freed and their exhaustion survived, and each request is reported to observers.
Real runtime and worker processes throughout."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podroute.runtime.gateway import RequestRecord
from tests.runtime_support import (
    Runtime,
    deploy,
    endpoint_inflight,
    live_workers,
    make_lab_project,
    open_descriptors,
    process_memory,
    runtime_in_process,
    runtime_process,
    wait_for,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, dict[str, Any]]]:
    """One runtime with the lab service deployed (workersMin 0, idleTimeout 2 s)."""
    root = tmp_path_factory.mktemp("gateway")
    project = make_lab_project(root / "project")
    with runtime_process(root / "rt", PODROUTE_RUNTIME_WAIT_S="30") as runtime:
        yield runtime, deploy(project, runtime)


def _auth(entry: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {entry['api_key']}"}


def _ready_worker(runtime: Runtime, entry: dict[str, Any]) -> dict[str, Any]:
    assert httpx.get(f"{entry['url']}/health", headers=_auth(entry), timeout=30).status_code == 200
    return next(w for w in live_workers(runtime, entry["id"]) if w["state"] == "ready")


def _assert_capacity_returned(runtime: Runtime, entry: dict[str, Any]) -> None:
    wait_for(lambda: endpoint_inflight(runtime, entry["id"]) == 0, 5, "in flight back to 0")
    wait_for(lambda: not live_workers(runtime, entry["id"]), 20, "the endpoint to scale to zero")
    assert endpoint_inflight(runtime, entry["id"]) == 0


def test_bad_header_is_a_400_problem_and_leaks_nothing(lab: tuple[Runtime, dict[str, Any]]) -> None:
    runtime, entry = lab
    _ready_worker(runtime, entry)
    for _ in range(12):
        bad = httpx.get(f"{entry['url']}/health", headers={**_auth(entry), "X-Bad": b"\xff\xfe"})
        assert bad.status_code == 400
        assert bad.headers["content-type"] == "application/problem+json"
        problem = bad.json()
        assert problem["status"] == 400 and problem["header"] == "x-bad"
        assert "non-ASCII" in problem["detail"] and problem["request_id"] == bad.headers["x-request-id"]
    _assert_capacity_returned(runtime, entry)


def test_worker_connect_error_is_502_and_leaks_nothing(lab: tuple[Runtime, dict[str, Any]]) -> None:
    runtime, entry = lab
    statuses = []
    for _ in range(3):  # the health check may notice the dead worker before the request does
        victim = _ready_worker(runtime, entry)
        os.kill(victim["pid"], signal.SIGKILL)
        pinned = {**_auth(entry), "X-Runpod-Worker-Id": victim["id"]}
        answer = httpx.get(f"{entry['url']}/health", headers=pinned, timeout=30)
        statuses.append(answer.status_code)
        if answer.status_code == 502:
            assert answer.json() == {"error": "worker connection failed; retry the request"}
            break
    assert 502 in statuses, statuses
    failures = runtime.provider().status(entry["id"]).details["failures"]
    wait_for(
        lambda: any(
            f["worker"] == victim["id"] and "connection failed" in (f["reason"] or "")
            for f in runtime.provider().status(entry["id"]).details["failures"]
        ),
        10,
        f"the failed worker recorded ({failures})",
    )
    _assert_capacity_returned(runtime, entry)


def test_client_disconnects_free_the_worker(lab: tuple[Runtime, dict[str, Any]]) -> None:
    runtime, entry = lab
    _ready_worker(runtime, entry)
    # mid-response: an endless event stream, closed after the first event
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", f"{entry['url']}/ticks", headers=_auth(entry)) as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()  # held: dropping the iterator would close the stream
        assert next(lines) == 'data: {"tick":0}'
        assert endpoint_inflight(runtime, entry["id"]) == 1
    wait_for(lambda: endpoint_inflight(runtime, entry["id"]) == 0, 3, "the stream's worker released")

    # before the answer: a 30 s request whose client gives up after 0.5 s
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{entry['url']}/slow", params={"seconds": 30}, headers=_auth(entry), timeout=0.5)
    wait_for(lambda: endpoint_inflight(runtime, entry["id"]) == 0, 3, "the slow request's worker released")

    # in the middle of a streamed body
    port = int(runtime.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = (
            f"POST /{entry['id']}/size HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {entry['api_key']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {10 * MiB}\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"data": "' + b"x" * MiB)
        wait_for(lambda: endpoint_inflight(runtime, entry["id"]) == 1, 10, "the upload on a worker")
    wait_for(lambda: endpoint_inflight(runtime, entry["id"]) == 0, 3, "the upload's worker released")
    _assert_capacity_returned(runtime, entry)


def test_execution_timeout_is_524_and_leaks_nothing(lab: tuple[Runtime, dict[str, Any]]) -> None:
    runtime, entry = lab
    provider = runtime.provider()
    provider.scale(entry["id"], {"executionTimeoutMs": 500})
    try:
        started = time.monotonic()
        slow = httpx.get(f"{entry['url']}/slow", params={"seconds": 3}, headers=_auth(entry), timeout=30)
        assert slow.status_code == 524 and time.monotonic() - started < 2.5
        assert slow.json() == {"error": "request exceeded the 0.5s execution limit"}
        _assert_capacity_returned(runtime, entry)
    finally:
        provider.scale(entry["id"], {"executionTimeoutMs": 0})


def test_large_bodies_stream_with_bounded_memory(lab: tuple[Runtime, dict[str, Any]]) -> None:
    runtime, entry = lab
    assert runtime.server is not None
    pid = runtime.server.process.pid
    runtime.provider().scale(entry["id"], {"workersMax": 3})
    _ready_worker(runtime, entry)
    before = process_memory(pid)
    payload = b'{"data": "' + b"x" * (29 * MiB) + b'"}'
    results: list[Any] = []

    def send() -> None:
        try:
            answer = httpx.post(f"{entry['url']}/size", headers=_auth(entry), content=payload, timeout=120)
            results.append((answer.status_code, answer.json()))
        except httpx.HTTPError as error:
            results.append(error)

    threads = [threading.Thread(target=send) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert results == [(200, {"length": 29 * MiB})] * 32, results[:3]
    after = process_memory(pid)
    # before streaming, 32 bodies of 29 MB took the runtime to 2 092 MB and kept it there
    peak_growth_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
    assert peak_growth_mib < 150, (before, after)
    assert (after["VmRSS"] - before["VmRSS"]) / 1024 < 60, (before, after)

    # the 30 MB limit still holds, declared or discovered while streaming
    over = b"x" * (30 * MiB + 1)
    assert httpx.post(f"{entry['url']}/size", headers=_auth(entry), content=over).status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(31):
            yield b"x" * MiB

    streamed = httpx.post(f"{entry['url']}/size", headers=_auth(entry), content=chunks(), timeout=60)
    assert streamed.status_code == 413 and streamed.json() == {"error": "request body exceeds 30 MB"}
    _assert_capacity_returned(runtime, entry)


def test_descriptors_are_freed_and_exhaustion_survived(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    with runtime_process(tmp_path / "rt", PODROUTE_RUNTIME_KEEP_ALIVE_S="1") as runtime:
        assert runtime.server is not None
        pid = runtime.server.process.pid
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (1024, 1024))
        port = int(runtime.url.rsplit(":", 1)[1])
        baseline = open_descriptors(pid)

        # 2 000 connect+close cycles: every descriptor is freed at once
        for _ in range(2000):
            socket.create_connection(("127.0.0.1", port)).close()
        wait_for(lambda: open_descriptors(pid) <= baseline + 5, 1, "descriptors back to the baseline")

        # an idle keep-alive connection and one that never finishes its headers are closed
        idle = socket.create_connection(("127.0.0.1", port))
        partial = socket.create_connection(("127.0.0.1", port))
        partial.sendall(b"GET /control/health HTTP/1.1\r\nHost: x\r\n")
        for sock in (idle, partial):
            sock.settimeout(5)
            assert sock.recv(100) == b""
            sock.close()

        # 1 100 connections held open exhaust the 1 024 descriptors: logged, then survived
        held = []
        for _ in range(1100):
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        time.sleep(1.5)
        for sock in held:
            sock.close()
        started = time.monotonic()
        wait_for(lambda: _status(f"{runtime.url}/control/health") == 401, 1, "the runtime answering again")
        assert time.monotonic() - started < 1
        wait_for(lambda: open_descriptors(pid) <= baseline + 5, 3, "descriptors back after the flood")
        time.sleep(1.2)  # one more watch interval: the recovery is logged too
    logged = [json.loads(line) for line in runtime.server.output.splitlines() if line.startswith("{")]
    messages = [entry["msg"] for entry in logged if entry["logger"] == "podroute.descriptors"]
    assert any(m.startswith("descriptor limit nearly reached") for m in messages), messages
    assert any(m.startswith("descriptors back to") for m in messages), messages


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return 0


def test_every_finished_request_reaches_the_observers(tmp_path: Path) -> None:
    project = make_lab_project(tmp_path / "project")
    records: list[RequestRecord] = []
    with runtime_in_process(tmp_path / "rt") as runtime:
        assert runtime.gateway is not None
        runtime.gateway.observers.append(records.append)
        entry = deploy(project, runtime)
        wait_for(lambda: not live_workers(runtime, entry["id"]), 20, "scale to zero after the deploy")
        records.clear()
        body = json.dumps({"text": "hello"}).encode()
        echoed = httpx.post(f"{entry['url']}/echo?x=1", headers=_auth(entry), content=body, timeout=30)
        assert echoed.status_code == 200
        denied = httpx.get(f"{entry['url']}/health", timeout=30)
        assert denied.status_code == 401
    first, second = records
    assert first.endpoint_id == entry["id"] and (first.method, first.path) == ("POST", "/echo")
    assert (first.status, first.outcome) == (200, "completed")
    assert (first.bytes_in, first.bytes_out) == (len(body), len(echoed.content))
    assert first.worker_id == echoed.headers["x-runpod-worker-id"]
    assert first.request_id == echoed.headers["x-request-id"]
    assert first.cold_start and 0 < first.waited_s < first.duration_s
    assert (second.status, second.worker_id, second.cold_start) == (401, None, False)
