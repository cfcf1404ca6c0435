"""Structured logging: one JSON object per line on stderr, level from `LOG_LEVEL`; a cheap access log.

The one log format of PodRoute: the library, its CLI and runtime, and the dashboard (web app and
Celery worker) all call `configure_logging`. A line is `{"ts", "level", "logger", "msg", ...extra,
"exc"}`. Log calls pass facts as `extra={...}` and never secrets; as a second line of defence,
extra fields whose names look secret (password, token, key, ...) are written as '***'.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_SECRET_WORDS = ("password", "secret", "token", "authorization", "cookie", "key")


def is_secret_name(name: str) -> bool:
    """True for a field name that looks like it holds a secret (its value is never logged)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


class JsonFormatter(logging.Formatter):
    """Formats records as JSON: ts, level, logger, msg, any `extra` fields (secret-looking names
    masked), and exc."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line for the record."""
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = "***" if is_secret_name(key) else value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record to `stream` (stderr) as JSON lines, at `level` and above."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    for name in ("hypercorn.error", "hypercorn.access", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


_ACCESS_LINE = '%s%sZ","level":"INFO","logger":"podroute.access","msg":"%s %s %s %s %.6fs"}\n'
_MILLIS = [f"{millis:03d}" for millis in range(1000)]
_MEMO_LIMIT = 4096
"""How many peers and request lines `AccessLog` keeps formatted; past it the memo starts over."""


def _json_text(text: str) -> str:
    """`text` as it stands between the quotes of a JSON string (escaped by orjson)."""
    return orjson.dumps(text).decode()[1:-1]


AccessEntry = tuple[float, Any, str, str, bytes, str, int, int, float]
"""What `AccessLog.record` keeps of a request until the next flush: wall time, client, method,
path, query string, HTTP version, status, response bytes, seconds taken."""


class AccessLog:
    """The per-request access log: JSON lines written to a descriptor in batches.

    The same line shape as `JsonFormatter` (logger `podroute.access`), without the logging
    module's per-record work. A request costs one tuple (`record`); its line is formatted with the
    rest of its batch when the batch is written: when `flush_after` seconds passed since the first
    waiting request, when `max_entries` are waiting, and by `flush()` (at shutdown and exit).
    """

    def __init__(self, fd: int = 2, flush_after: float = 0.2, max_entries: int = 512) -> None:
        self.fd = fd
        self.flush_after = flush_after
        self.max_entries = max_entries
        self._entries: list[AccessEntry] = []
        self._timer: asyncio.TimerHandle | None = None
        self._peers: dict[Any, str] = {}
        self._request_lines: dict[tuple[str, str, bytes, str], str] = {}
        atexit.register(self.flush)

    def record(self, scope: Mapping[str, Any], status: int, size: int, seconds: float) -> None:
        """Log one answered request of ASGI `scope`:
        `<client> "<method> <target> HTTP/<version>" <status> <bytes> <seconds>s`. A WebSocket
        scope (no method; the version is optional) is its upgrade request, `GET`."""
        entries = self._entries
        entries.append(
            (
                time.time(), scope.get("client"), scope.get("method", "GET"), scope["path"],
                scope["query_string"], scope.get("http_version", "1.1"), status, size, seconds,
            )
        )  # fmt: skip
        if len(entries) >= self.max_entries:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.flush_after, self.flush)
            except RuntimeError:  # no loop (called from a thread): write at once
                self.flush()

    def flush(self) -> None:
        """Format and write every waiting line now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._entries:
            return
        entries, self._entries = self._entries, []
        self._write(self._lines(entries))

    def _lines(self, entries: list[AccessEntry]) -> bytes:
        """The JSON lines of `entries`. A peer's and a request line's escaped text is made once
        and remembered (an API's requests repeat a few paths), so a line is one str format."""
        peers, request_lines = self._peers, self._request_lines
        for memo in (peers, request_lines):
            if len(memo) > _MEMO_LIMIT:
                memo.clear()
        lines: list[str] = []
        second, prefix = -1, ""
        for now, client, method, path, query, version, status, size, seconds in entries:
            if int(now) != second:
                second = int(now)
                prefix = '{"ts":"' + time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            peer = peers.get(client) if type(client) is tuple else None  # ASGI allows a list
            if peer is None:
                peer = _json_text(f"{client[0]}:{client[1]}") if client else "-"
                if type(client) is tuple:
                    peers[client] = peer
            key = (method, path, query, version)
            request_line = request_lines.get(key)
            if request_line is None:
                target = f"{path}?{query.decode('latin-1')}" if query else path
                request_line = request_lines[key] = _json_text(f'"{method} {target} HTTP/{version}"')
            millis = _MILLIS[min(int((now - second) * 1000), 999)]
            lines.append(_ACCESS_LINE % (prefix, millis, peer, request_line, status, size, seconds))
        return "".join(lines).encode()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                continue
            except OSError:
                return  # stderr is gone (the process is exiting): nothing to write to
            view = view[written:]


def access_log_enabled() -> bool:
    """Whether the configured level lets `podroute.access` INFO lines through."""
    return logging.getLogger("podroute.access").isEnabledFor(logging.INFO)
