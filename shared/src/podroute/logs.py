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


class AccessLog:
    """The per-request access log: JSON lines formatted once and written to a descriptor in batches.

    The same line shape as `JsonFormatter` (logger `podroute.access`), without the logging
    module's per-record work. Lines are flushed when `flush_after` seconds passed since the first
    unflushed one, when `max_buffer` bytes are waiting, and by `flush()` (at shutdown and exit).
    """

    def __init__(self, fd: int = 2, flush_after: float = 0.2, max_buffer: int = 64 * 1024) -> None:
        self.fd = fd
        self.flush_after = flush_after
        self.max_buffer = max_buffer
        self._lines: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = b""
        atexit.register(self.flush)

    def record(self, client: str, request_line: str, status: int, size: int, seconds: float) -> None:
        """Log one answered request: `<client> "<method> <target> <version>" <status> <bytes> <s>s`."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        message = orjson.dumps(f'{client} "{request_line}" {status} {size} {seconds:.6f}s')
        line = b'{"ts":"%s.%03dZ","level":"INFO","logger":"podroute.access","msg":%s}\n' % (
            self._stamp,
            int((now - second) * 1000),
            message,
        )
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.max_buffer:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.flush_after, self.flush)
            except RuntimeError:  # no loop (called from a thread): write at once
                self.flush()

    def flush(self) -> None:
        """Write every waiting line now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
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
