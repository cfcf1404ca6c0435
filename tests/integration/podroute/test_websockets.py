"""WebSocket routes and error-reporting event streams through a real `podroute serve` on each server,
and through the dev server under its service prefix; the client used as a user would. Sockets get
the same head limits as requests and a line each in the access log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync.client import ClientConnection, connect

from podroute.client import EndpointClient, EndpointError, RetryPolicy, StreamError
from podroute.dev import create_dev_app
from podroute.discovery import isolated_imports
from tests.helpers import cli_server, free_port, hypercorn_server
from tests.socket_support import Served, make_chat_project, podroute_serve

SERVERS = ["uvicorn", "hypercorn", "granian"]
LIMIT = 64 * 1024
NO_RETRY = RetryPolicy(attempts=1)
MANY_HEADERS = {f"X-Field-{index}": "1" for index in range(110)}  # over 100; `websockets` takes 128


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_chat_project(tmp_path_factory.mktemp("chat"))


@pytest.fixture(scope="module", params=SERVERS)
def served(request: pytest.FixtureRequest, project: Path) -> Iterator[Served]:
    with podroute_serve(project, request.param, PODROUTE_WS_MAX_MESSAGE_BYTES=str(LIMIT)) as running:
        yield running


def _closed(socket: ClientConnection) -> tuple[int | None, str | None]:
    """Read until the server closes the socket; its close code and reason."""
    with pytest.raises(ConnectionClosed):
        while True:
            socket.recv(timeout=10)
    return socket.close_code, socket.close_reason


def test_echo_sends_text_and_bytes_back(served: Served) -> None:
    with connect(f"{served.ws}/echo") as socket:
        socket.send("hi there")
        assert socket.recv(timeout=10) == "hi there"
        socket.send(b"\x00\xffbinary")
        assert socket.recv(timeout=10) == b"\x00\xffbinary"
        if served.server != "granian":  # granian sends no headers of the app's with the 101
            assert socket.response.headers["x-request-id"]


def test_json_route_binds_messages_path_query_and_the_startup_value(served: Served) -> None:
    with (
        EndpointClient(served.base, retry=NO_RETRY) as client,
        client.websocket("/ask/lobby", params={"shout": "true"}) as socket,
    ):
        socket.send(json.dumps({"text": "hi", "times": 2}))
        assert json.loads(socket.recv(timeout=10)) == {"answer": "HELLO LOBBY: HIHI", "worker": None}
        socket.send(json.dumps({"text": "again"}).encode())  # a binary frame holding JSON is JSON too
        assert json.loads(socket.recv(timeout=10))["answer"] == "HELLO LOBBY: AGAIN"
        socket.send(json.dumps({"txt": "typo"}))
        code, reason = _closed(socket)
    assert code == 1008
    assert reason == (
        "the message is not a valid Question (text: Field required; txt: Extra inputs are not permitted)"
    )


def test_errors_close_with_their_codes_and_no_traceback(served: Served) -> None:
    with connect(f"{served.ws}/ask/a") as socket:
        socket.send(json.dumps({"text": "  "}))
        assert _closed(socket) == (1008, "text must not be empty")
    with connect(f"{served.ws}/ask/a") as socket:
        socket.send("{not json")
        assert _closed(socket) == (1008, "the message is not valid JSON; send a JSON Question")
    with connect(f"{served.ws}/ask/a", additional_headers={"X-Request-ID": "trace-77"}) as socket:
        socket.send(json.dumps({"text": "crash"}))
        assert _closed(socket) == (1011, "internal error; quote request id trace-77")
    with connect(f"{served.ws}/echo", max_size=None) as socket:
        socket.send("x" * LIMIT)
        assert socket.recv(timeout=10) == "x" * LIMIT
        socket.send(b"x" * (LIMIT + 1))
        code, _ = _closed(socket)
    assert code == 1009


def test_http_requests_to_a_websocket_path(served: Served) -> None:
    plain = httpx.get(f"{served.base}/echo")
    assert plain.status_code == 426
    assert plain.headers["content-type"] == "application/problem+json"
    assert plain.headers["upgrade"] == "websocket"
    assert plain.json()["detail"].startswith("/echo is a WebSocket route; open a WebSocket")
    posted = httpx.post(f"{served.base}/ask/lobby", json={})
    assert (posted.status_code, posted.headers["allow"]) == (405, "GET, HEAD")
    assert "GET with Upgrade: websocket opens the WebSocket" in posted.json()["detail"]
    literal = httpx.request("WEBSOCKET", f"{served.base}/echo")  # the route's method is not an HTTP one
    if served.server == "uvicorn":  # httptools refuses a method it does not know before the app runs
        assert literal.status_code == 400
    else:
        assert (literal.status_code, literal.headers["allow"]) == (405, "GET, HEAD")


def test_a_refused_handshake_is_a_problem(served: Served) -> None:
    with EndpointClient(served.base, retry=NO_RETRY) as client:
        with pytest.raises(EndpointError) as refused, client.websocket("/ask/x", params={"shout": "maybe"}):
            pass
        assert refused.value.status == 422
        assert refused.value.problem["errors"][0]["loc"] == ["query", "shout"]
        with pytest.raises(EndpointError) as missing, client.websocket("/nowhere"):
            pass
        assert missing.value.status == 404
        assert (
            missing.value.problem["detail"] == "no WebSocket route matches /nowhere; see /docs for the routes"
        )


def test_http_routes_and_execute_get_the_startup_value(served: Served) -> None:
    with EndpointClient(served.base, retry=NO_RETRY) as client:
        assert client.post("/greet", json={"name": "ann"}) == {"text": "hello ann"}
        executed = client.post("/execute", json={"function": "greet", "kwargs": {"name": "bo"}})
        assert executed == {"result": {"text": "hello bo"}}
        with pytest.raises(EndpointError) as extra:
            client.post("/greet", json={"name": "ann", "greeter": "mine"})  # not settable by a request
        assert extra.value.status == 422


def test_stream_reports_its_error_as_the_last_event(served: Served) -> None:
    with EndpointClient(served.base, retry=NO_RETRY) as client:
        seen = []
        with pytest.raises(StreamError) as failed:
            for event in client.stream("/story"):
                seen.append(event.json())
        assert seen == [{"part": 1}, {"part": 2}]
        assert (failed.value.status, str(failed.value)) == (400, "400: the story ran out of pages")
        assert failed.value.problem["request_id"]

        seen.clear()
        with pytest.raises(StreamError) as crashed:
            for event in client.stream("/crash-story", headers={"X-Request-ID": "trace-88"}):
                seen.append(event.json())
        assert seen == [{"part": 1}, {"part": 2}]
        assert crashed.value.status == 500
        assert crashed.value.problem["detail"] == (
            "the stream failed on the server; quote request id trace-88 when reporting it"
        )
    raw = httpx.get(f"{served.base}/crash-story").text
    assert raw.endswith('"status":500,"detail":"the stream failed on the server; quote request id '
                        + raw.rsplit("request id ", 1)[1])  # fmt: skip
    assert "hunter2" not in raw and "Traceback" not in raw


def test_the_log_has_the_tracebacks_the_clients_did_not_get(project: Path) -> None:
    with podroute_serve(project, "uvicorn") as running:
        with connect(f"{running.ws}/ask/a") as socket:
            socket.send(json.dumps({"text": "crash"}))
            assert _closed(socket)[0] == 1011
        httpx.get(f"{running.base}/crash-story")
    printed = running.printed
    assert "unhandled error in WEBSOCKET /ask/a" in printed and "hunter2" in printed
    assert "stream failed" in printed


def test_the_default_message_limit_is_one_mebibyte(project: Path) -> None:
    with (
        podroute_serve(project, "hypercorn") as running,
        connect(f"{running.ws}/echo", max_size=None) as socket,
    ):
        socket.send(b"y" * (1024 * 1024))
        assert len(socket.recv(timeout=10)) == 1024 * 1024
        socket.send(b"y" * (1024 * 1024 + 1))
        code, _ = _closed(socket)
    assert code == 1009


def test_dev_server_serves_websockets_under_the_service_prefix(project: Path) -> None:
    with isolated_imports(project):  # this project's `services` package must not outlive the test
        app = create_dev_app(project)
    with hypercorn_server(app) as base:
        ws = "ws" + base.removeprefix("http")
        with connect(f"{ws}/chat/echo") as socket:
            socket.send("dev")
            assert socket.recv(timeout=10) == "dev"
        with EndpointClient(base, retry=NO_RETRY) as client, client.websocket("/chat/ask/dev") as socket:
            socket.send(json.dumps({"text": "q"}))
            assert json.loads(socket.recv(timeout=10))["answer"] == "hello dev: q"
            socket.send(json.dumps({"text": 3}))
            assert _closed(socket)[0] == 1008
        assert httpx.get(f"{base}/chat/echo").status_code == 426
        home = httpx.get(f"{base}/").text
        assert (
            "<code>WEBSOCKET</code></td><td><code>/chat/ask/{room}</code></td><td>Answer each question"
            in home
        )


def test_podroute_dev_command_serves_websockets(project: Path) -> None:
    port = free_port()
    args = ["dev", "--no-reload", "--host", "127.0.0.1", "--port", str(port), "--project", str(project)]
    with cli_server(args, project, ready_url=f"http://127.0.0.1:{port}/ping"):
        with connect(f"ws://127.0.0.1:{port}/chat/echo") as socket:
            socket.send("via the CLI")
            assert socket.recv(timeout=10) == "via the CLI"
        with connect(f"ws://127.0.0.1:{port}/chat/ask/r") as socket:
            socket.send(json.dumps({"text": "x", "extra": 1}))
            with pytest.raises(ConnectionClosedError):
                socket.recv(timeout=10)
            assert socket.close_code == 1008


def _refusal(client: EndpointClient, path: str, **options: Any) -> EndpointError:
    with pytest.raises(EndpointError) as refused, client.websocket(path, **options):
        pass
    return refused.value


@pytest.mark.parametrize("server", SERVERS)
def test_sockets_are_in_the_access_log_and_upgrades_get_the_head_limits(project: Path, server: str) -> None:
    with podroute_serve(project, server) as running:
        with connect(f"{running.ws}/echo") as socket:
            socket.send("héllo")  # 6 bytes as UTF-8
            assert socket.recv(timeout=10) == "héllo"
            socket.send(b"\x00\x01")
            assert socket.recv(timeout=10) == b"\x00\x01"
        with EndpointClient(running.base, retry=NO_RETRY) as client:
            refused = _refusal(client, "/ask/x", params={"shout": "maybe"})
            too_many = _refusal(client, "/echo", headers=MANY_HEADERS)
            too_long = _refusal(client, "/echo", params={"q": "x" * 10_000})
        printed = running.stop()  # at once: the last access lines are written at shutdown
    assert running.process.returncode == 0 and "Traceback" not in printed
    assert refused.status == 422
    assert too_many.status == 431
    if server != "granian":  # Granian's parser refuses past 100 fields itself, with an empty body
        assert "more than 100 header" in too_many.problem["detail"]
    assert too_long.status == 414
    if server != "uvicorn":  # uvicorn's `websockets` refuses a request line over 8 KiB itself, in text
        assert "longer than 8192 bytes" in too_long.problem["detail"]
    lines = [json.loads(line)["msg"] for line in printed.splitlines() if '"podroute.access"' in line]
    [echo] = [line for line in lines if '"GET /echo HTTP/1.1"' in line]
    assert re.fullmatch(r'127\.0\.0\.1:\d+ "GET /echo HTTP/1\.1" 101 8 \d+\.\d+s', echo), echo
    assert any('"GET /ask/x?shout=maybe HTTP/1.1" 422 ' in line for line in lines), lines
