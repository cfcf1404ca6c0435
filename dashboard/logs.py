"""Structured logs: one JSON object per line on stderr, level from `LOG_LEVEL`.

Log calls pass facts as `extra={...}`; they never pass passwords, tokens or secret env values.
As a second line of defence, fields whose names look secret are replaced by '***'.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_SECRET_WORDS = ("password", "secret", "token", "authorization", "cookie", "key")


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


class JsonFormatter(logging.Formatter):
    """Formats records as JSON: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line for the record."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                entry[name] = "***" if _is_secret_name(name) else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every logger's records, as JSON, to `stream` (stderr) at `level` and above."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("hypercorn.error", "hypercorn.access"):
        hypercorn_logger = logging.getLogger(name)
        hypercorn_logger.handlers.clear()
        hypercorn_logger.propagate = True
