"""A service with WebSocket routes, event streams and a startup value, written as a user would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tests.helpers import free_port, wait_for_http

CHAT_SERVICE = """\
import asyncio
import os
from collections.abc import AsyncIterator

from pydantic import BaseModel

from podroute import (
    CpuLiveLoadBalancer, LastEventId, ServerSentEvent, Startup, WebSocket, on_startup, remote,
)

api = CpuLiveLoadBalancer(name="chat", workersMin=0, workersMax=2, idleTimeout=2, scalerValue=1)
VERSION = 1


class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting


class Question(BaseModel):
    text: str
    times: int = 1


class Answer(BaseModel):
    answer: str
    worker: str | None = None


@on_startup(api)
def load_greeter() -> Greeter:
    return Greeter(os.environ.get("GREETING", "hello"))


@remote(api, method="GET", path="/health")
async def health() -> dict:
    return {"status": "healthy", "version": VERSION, "worker": os.environ.get("RUNPOD_POD_ID")}


@remote(api, method="POST", path="/greet")
async def greet(name: str, greeter: Startup[Greeter]) -> dict:
    return {"text": f"{greeter.greeting} {name}"}


@remote(api, method="WEBSOCKET", path="/echo")
async def echo(socket: WebSocket[str | bytes]) -> None:
    \"\"\"Send every message back as it came.\"\"\"
    async for message in socket:
        await socket.send(message)


@remote(api, method="WEBSOCKET", path="/ask/{room}")
async def ask(
    socket: WebSocket[Question, Answer], room: str, greeter: Startup[Greeter], shout: bool = False
) -> None:
    \"\"\"Answer each question in a room.\"\"\"
    async for question in socket:
        if question.text == "crash":
            raise RuntimeError("database password is hunter2")
        if not question.text.strip():
            raise ValueError("text must not be empty")
        text = f"{greeter.greeting} {room}: " + question.text * question.times
        worker = os.environ.get("RUNPOD_POD_ID")
        await socket.send(Answer(answer=text.upper() if shout else text, worker=worker))


@remote(api, method="GET", path="/story")
async def story() -> AsyncIterator[dict]:
    yield {"part": 1}
    yield {"part": 2}
    raise ValueError("the story ran out of pages")


@remote(api, method="GET", path="/crash-story")
async def crash_story() -> AsyncIterator[dict]:
    yield {"part": 1}
    yield {"part": 2}
    raise RuntimeError("database password is hunter2")


@remote(api, method="GET", path="/ticks")
async def ticks(last_event_id: LastEventId = None, count: int = 6) -> AsyncIterator[ServerSentEvent]:
    start = int(last_event_id) + 1 if last_event_id else 0
    for index in range(start, count):
        yield ServerSentEvent({"tick": index, "resumed_from": last_event_id}, id=str(index))
        await asyncio.sleep(0.01)
"""


def make_chat_project(root: Path) -> Path:
    """A project with one service, `chat`, in `services/chat/endpoint.py`."""
    (root / "services" / "chat").mkdir(parents=True)
    (root / "services" / "__init__.py").write_text("")
    (root / "services" / "chat" / "__init__.py").write_text("")
    (root / "services" / "chat" / "endpoint.py").write_text(CHAT_SERVICE)
    (root / "pyproject.toml").write_text('[tool.podroute]\nservices = "services"\n')
    return root


class Served:
    """A `podroute serve` process: its base URL and, once stopped, everything it printed."""

    def __init__(
        self,
        server: str,
        base: str,
        process: subprocess.Popen[str],
        output: IO[str],
    ) -> None:
        self.server = server
        self.base = base
        self.process = process
        self._output = output
        self.printed = ""

    @property
    def ws(self) -> str:
        return "ws" + self.base.removeprefix("http")

    def stop(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._output.seek(0)
        self.printed = self._output.read()
        return self.printed


@contextlib.contextmanager
def podroute_serve(project: Path, server: str, **env: str) -> Iterator[Served]:
    """`podroute serve services.chat.endpoint --server SERVER` on a free loopback port."""
    port = free_port()
    output = tempfile.NamedTemporaryFile("w+", suffix=".log")  # noqa: SIM115 (closed below)
    args = ["serve", "services.chat.endpoint", "--host", "127.0.0.1", "--port", str(port), "--server", server]
    process = subprocess.Popen(
        [sys.executable, "-m", "podroute", *args],
        cwd=project,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    served = Served(server, f"http://127.0.0.1:{port}", process, output)
    try:
        try:
            wait_for_http(f"{served.base}/ping", timeout=30, ok=(200,))
        except TimeoutError:
            raise AssertionError(f"podroute serve never became ready:\n{served.stop()}") from None
        yield served
    finally:
        served.stop()
        output.close()
