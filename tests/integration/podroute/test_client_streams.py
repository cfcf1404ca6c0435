"""The client reading event streams: events, the typed error, and resuming a broken stream with
`Last-Event-ID` - through a real server and a TCP proxy that cuts the first connection mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from podroute import (
    AppSettings,
    CpuLoadBalancerSlsResource,
    LastEventId,
    Registry,
    ServerSentEvent,
    create_app,
    remote,
)
from podroute.client import (
    AsyncEndpointClient,
    EndpointClient,
    EndpointUnavailableError,
    RetryPolicy,
    StreamError,
)
from tests.helpers import hypercorn_server

FAST = RetryPolicy(attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)


class CuttingProxy:
    """Forwards loopback TCP to `port`, but cuts the first connection once `marker` went through."""

    def __init__(self, port: int, marker: bytes) -> None:
        self.port = port
        self.marker = marker
        self.connections = 0
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.port))
            cut = self.marker if self.connections == 1 else None
            threading.Thread(target=self._pump, args=(client, upstream, None, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, cut, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, cut: bytes | None, request: bool) -> None:
        seen = b""
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if request:
                    self.requests.append(data)
                target.sendall(data)
                seen += data
                if cut is not None and cut in seen:
                    break
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def server(registry: Registry) -> Iterator[str]:
    api = CpuLoadBalancerSlsResource(name="streams")

    @remote(api, method="GET", path="/ticks")
    async def ticks(last_event_id: LastEventId = None, count: int = 5) -> AsyncIterator[ServerSentEvent]:
        start = int(last_event_id) + 1 if last_event_id else 0
        for index in range(start, count):
            yield ServerSentEvent({"tick": index, "resumed_from": last_event_id}, id=str(index), retry_ms=20)
            await asyncio.sleep(0.05)

    @remote(api, method="GET", path="/anonymous")
    async def anonymous() -> AsyncIterator[dict[str, int]]:
        for index in range(5):
            yield {"tick": index}
            await asyncio.sleep(0.05)

    @remote(api, method="POST", path="/ticks")
    async def post_ticks(count: int = 5) -> AsyncIterator[ServerSentEvent]:
        for index in range(count):
            yield ServerSentEvent({"tick": index}, id=str(index))
            await asyncio.sleep(0.05)

    @remote(api, method="GET", path="/story")
    async def story() -> AsyncIterator[str]:
        yield "once\nupon a time"
        yield "the end"
        raise ValueError("the story ran out of pages")

    with hypercorn_server(create_app(api, registry=registry, settings=AppSettings())) as base:
        yield base


@pytest.fixture
def proxy(server: str) -> Iterator[CuttingProxy]:
    cutting = CuttingProxy(int(server.rsplit(":", 1)[1]), b'"tick":1,')
    yield cutting
    cutting.close()


def test_a_broken_stream_resumes_from_the_last_event_id(proxy: CuttingProxy) -> None:
    with EndpointClient(proxy.url, retry=FAST) as client:
        events = list(client.stream("/ticks"))
    assert [e.json()["tick"] for e in events] == [0, 1, 2, 3, 4]
    assert [e.id for e in events] == ["0", "1", "2", "3", "4"]
    assert {e.json()["resumed_from"] for e in events[2:]} == {"1"}
    assert proxy.connections == 2
    assert b"last-event-id: 1\r\n" in b"".join(proxy.requests).lower()


async def test_the_async_client_resumes_too(proxy: CuttingProxy) -> None:
    async with AsyncEndpointClient(proxy.url, retry=FAST) as client:
        ticks = [event.json()["tick"] async for event in client.stream("/ticks")]
    assert ticks == [0, 1, 2, 3, 4] and proxy.connections == 2


def test_streams_without_ids_or_not_idempotent_are_not_resumed(server: str) -> None:
    for method, path in (("GET", "/anonymous"), ("POST", "/ticks")):
        cutting = CuttingProxy(int(server.rsplit(":", 1)[1]), b'"tick":1')
        seen = []
        with EndpointClient(cutting.url, retry=FAST) as client, pytest.raises(EndpointUnavailableError):
            for event in client.stream(path, method=method):
                seen.append(event.json()["tick"])
        cutting.close()
        assert seen == [0, 1] and cutting.connections == 1, (method, path)


def test_events_then_the_typed_error(server: str) -> None:
    with EndpointClient(server, retry=FAST) as client:
        seen = []
        with pytest.raises(StreamError) as failed:
            for event in client.stream("/story"):
                seen.append(event.data)
    assert seen == ["once\nupon a time", "the end"]  # a text item spanning lines arrives whole
    assert failed.value.status == 400 and failed.value.problem["detail"] == "the story ran out of pages"
    assert isinstance(failed.value.problem["request_id"], str)


async def test_the_async_client_raises_the_typed_error(server: str) -> None:
    async with AsyncEndpointClient(server, retry=FAST) as client:
        seen = []
        with pytest.raises(StreamError, match="400: the story ran out of pages"):
            async for event in client.stream("/story"):
                seen.append(event.data)
    assert seen == ["once\nupon a time", "the end"]
