"""WebSockets and event streams through the local runtime's gateway: Bearer auth on the upgrade, the
worker's id, the socket counted in flight while open, a drained worker closing it with 1001, the
worker's refusals and close codes passed on, and sockets closed with 1001 when the runtime stops.
A real runtime and real worker processes."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from podroute.client import EndpointClient, EndpointError, StreamError
from tests.runtime_support import (
    RETRY,
    Runtime,
    deploy,
    endpoint_inflight,
    live_workers,
    runtime_process,
    wait_for,
)
from tests.socket_support import make_chat_project


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, dict[str, Any]]]:
    """One runtime with the chat service deployed (workersMin 0, idleTimeout 2 s, scalerValue 1)."""
    root = tmp_path_factory.mktemp("sockets")
    project = make_chat_project(root / "project")
    with runtime_process(root / "rt") as runtime:
        yield runtime, deploy(project, runtime, key="chat/chat")


def test_the_upgrade_needs_the_endpoint_key(chat: tuple[Runtime, dict[str, Any]]) -> None:
    _, entry = chat
    for key in (None, "wrong-key"):
        with EndpointClient(entry["url"], key, retry=RETRY) as client:
            with pytest.raises(EndpointError) as refused, client.websocket("/echo"):
                pass
            assert refused.value.status == 401
            assert refused.value.problem == {
                "error": "unauthorized: send Authorization: Bearer <endpoint api key>"
            }


def test_a_socket_holds_its_worker_in_flight_while_open(chat: tuple[Runtime, dict[str, Any]]) -> None:
    runtime, entry = chat
    with (
        EndpointClient(entry["url"], entry["api_key"], retry=RETRY) as client,
        client.websocket("/ask/gw", params={"shout": "true"}) as socket,
    ):
        worker = socket.response.headers["x-runpod-worker-id"]
        assert worker.startswith("w-")
        socket.send(json.dumps({"text": "hi"}))
        assert json.loads(socket.recv(timeout=30)) == {"answer": "HELLO GW: HI", "worker": worker}
        assert endpoint_inflight(runtime, entry["id"]) == 1
        time.sleep(3)  # longer than idleTimeout (2 s): an open socket is not idle
        assert [w["id"] for w in live_workers(runtime, entry["id"]) if w["state"] == "ready"] == [worker]
        assert endpoint_inflight(runtime, entry["id"]) == 1
        socket.send(json.dumps({"text": "still here"}))
        assert json.loads(socket.recv(timeout=30))["answer"] == "HELLO GW: STILL HERE"
    wait_for(lambda: endpoint_inflight(runtime, entry["id"]) == 0, 5, "the socket's worker released")


def test_close_codes_and_refusals_pass_through(chat: tuple[Runtime, dict[str, Any]]) -> None:
    runtime, entry = chat
    with EndpointClient(entry["url"], entry["api_key"], retry=RETRY) as client:
        with client.websocket("/ask/gw") as socket:
            socket.send(json.dumps({"text": 5}))
            with pytest.raises(ConnectionClosed):
                socket.recv(timeout=30)
            assert socket.close_code == 1008
            assert (
                socket.close_reason
                == "the message is not a valid Question (text: Input should be a valid string)"
            )
        with client.websocket("/echo", headers={"X-Request-ID": "gw-trace-1"}) as socket:
            socket.send(b"\x01\x02")
            assert socket.recv(timeout=30) == b"\x01\x02"
            assert socket.response.headers["x-request-id"] == "gw-trace-1"
        with pytest.raises(EndpointError) as refused, client.websocket("/ask/x", params={"shout": "maybe"}):
            pass
        assert refused.value.status == 422 and refused.value.problem["errors"][0]["loc"] == ["query", "shout"]
        plain = client._http.get("/echo")
        assert plain.status_code == 426 and plain.headers["upgrade"] == "websocket"
    wait_for(lambda: endpoint_inflight(runtime, entry["id"]) == 0, 5, "every worker released")


def test_a_stream_error_reaches_the_client_through_the_gateway(chat: tuple[Runtime, dict[str, Any]]) -> None:
    _, entry = chat
    with EndpointClient(entry["url"], entry["api_key"], retry=RETRY) as client:
        seen = []
        with pytest.raises(StreamError) as failed:
            for event in client.stream("/story"):
                seen.append(event.json())
        assert seen == [{"part": 1}, {"part": 2}]
        assert failed.value.status == 400 and failed.value.problem["detail"] == "the story ran out of pages"
    raw = httpx.get(f"{entry['url']}/crash-story", headers={"Authorization": f"Bearer {entry['api_key']}"})
    assert raw.text.count("data: ") == 3 and "event: error" in raw.text
    assert "hunter2" not in raw.text and "Traceback" not in raw.text


def test_a_drained_worker_closes_its_sockets_with_1001(chat: tuple[Runtime, dict[str, Any]]) -> None:
    runtime, entry = chat
    with (
        EndpointClient(entry["url"], entry["api_key"], retry=RETRY) as client,
        client.websocket("/ask/old") as socket,
    ):
        old = socket.response.headers["x-runpod-worker-id"]
        socket.send(json.dumps({"text": "before"}))
        assert json.loads(socket.recv(timeout=30))["answer"] == "hello old: before"
        with runtime.provider() as provider:  # a new release rolls out
            provider.update_env(entry["id"], {"GREETING": "bonjour"})
        with pytest.raises(ConnectionClosed):
            socket.recv(timeout=60)
        assert (socket.close_code, socket.close_reason) == (
            1001,
            "the worker is going away (drained); reconnect",
        )
    wait_for(
        lambda: old not in {w["id"] for w in live_workers(runtime, entry["id"])}, 20, "the old worker gone"
    )
    with (
        EndpointClient(entry["url"], entry["api_key"], retry=RETRY) as client,
        client.websocket("/ask/new") as socket,
    ):
        assert socket.response.headers["x-runpod-worker-id"] != old
        socket.send(json.dumps({"text": "after"}))
        assert json.loads(socket.recv(timeout=30))["answer"] == "bonjour new: after"


def test_stopping_the_runtime_closes_its_sockets_with_1001_at_once(tmp_path: Path) -> None:
    """SIGTERM: open sockets are closed with 1001 at once (not held for the 30 s graceful wait and
    then cut without a code), and the runtime exits cleanly."""
    project = make_chat_project(tmp_path / "project")
    with runtime_process(tmp_path / "rt") as runtime:
        assert runtime.server is not None
        entry = deploy(project, runtime, key="chat/chat")
        with (
            EndpointClient(entry["url"], entry["api_key"], retry=RETRY) as client,
            client.websocket("/ask/bye") as socket,
        ):
            socket.send(json.dumps({"text": "hi"}))
            assert json.loads(socket.recv(timeout=30))["answer"] == "hello bye: hi"
            runtime.server.process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                socket.recv(timeout=20)  # the graceful wait is 30 s: only a prompt close gets here
            assert (socket.close_code, socket.close_reason) == (
                1001,
                "the runtime is shutting down; reconnect",
            )
        assert runtime.server.process.wait(timeout=20) == 0
