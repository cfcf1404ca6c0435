"""The access log's lines: valid JSON of the project's shape for any request, written in batches."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from podroute.logs import AccessLog


def _scope(
    path: str, query: bytes = b"", client: Any = ("127.0.0.1", 5555), method: str = "GET"
) -> dict[str, Any]:
    return {"client": client, "method": method, "path": path, "query_string": query, "http_version": "1.1"}


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "access.log"


def _open(path: Path, **options: Any) -> AccessLog:
    return AccessLog(fd=os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), **options)


def _entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_request_becomes_one_json_line_whatever_its_path_holds(log_file: Path) -> None:
    log = _open(log_file)
    odd = '/a"b\\c\x01\x7fé/💥'
    log.record(_scope(odd, b"q=%22x&y=1"), 200, 12, 0.000123)
    log.record(_scope("/plain", client=None, method="POST"), 404, 0, 1.5)
    log.record(_scope("/v6", client=("::1", 80)), 204, 0, 2.0000125)
    log.record(_scope("/listed", client=["10.0.0.1", 7]), 200, 1, 0.0)  # ASGI allows a list
    log.flush()

    entries = _entries(log_file)
    assert [e["msg"] for e in entries] == [
        f'127.0.0.1:5555 "GET {odd}?q=%22x&y=1 HTTP/1.1" 200 12 0.000123s',
        '- "POST /plain HTTP/1.1" 404 0 1.500000s',
        '::1:80 "GET /v6 HTTP/1.1" 204 0 2.000012s',
        '10.0.0.1:7 "GET /listed HTTP/1.1" 200 1 0.000000s',
    ]
    for entry in entries:
        assert set(entry) == {"ts", "level", "logger", "msg"}
        assert (entry["level"], entry["logger"]) == ("INFO", "podroute.access")
        assert entry["ts"].endswith("Z") and len(entry["ts"]) == len("2026-11-30T12:00:00.000Z")


def test_a_full_batch_is_written_at_once_and_the_rest_on_flush(log_file: Path) -> None:
    async def serve() -> None:
        log = _open(log_file, max_entries=3, flush_after=60)
        for index in range(4):
            log.record(_scope(f"/r{index}"), 200, index, 0.001)
        assert len(_entries(log_file)) == 3  # the fourth waits for the timer, or flush()
        log.flush()

    asyncio.run(serve())
    assert [e["msg"].split()[2] for e in _entries(log_file)] == ["/r0", "/r1", "/r2", "/r3"]


def test_waiting_lines_are_written_when_the_timer_fires(log_file: Path) -> None:
    async def serve() -> None:
        log = _open(log_file, flush_after=0.05)
        log.record(_scope("/later"), 200, 1, 0.001)
        assert os.fstat(log.fd).st_size == 0
        await asyncio.sleep(0.2)

    asyncio.run(serve())
    assert [e["msg"].split()[2] for e in _entries(log_file)] == ["/later"]


def test_many_distinct_paths_neither_grow_memory_without_bound_nor_change_lines(log_file: Path) -> None:
    log = _open(log_file, max_entries=1000)
    for index in range(10_000):
        log.record(_scope(f"/items/{index}"), 200, 2, 0.0)
        if index % 1000 == 999:
            log.flush()
    assert len(log._request_lines) <= 4096 + 1000  # the memo starts over past its limit
    messages = [e["msg"] for e in _entries(log_file)]
    assert len(messages) == 10_000
    assert messages[-1] == '127.0.0.1:5555 "GET /items/9999 HTTP/1.1" 200 2 0.000000s'
