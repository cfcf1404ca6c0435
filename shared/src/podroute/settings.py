"""Typed settings, read from the environment once. Tests pass them explicitly instead.

The `read_*` functions are PodRoute's one environment parser: the library's settings and the
dashboard's (`dashboard.settings`) read every variable through them, with the same messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_MAX_BODY_BYTES = 30 * 1024 * 1024
"""RunPod's load balancer limit: 30 MB."""
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
"""The largest WebSocket message a route accepts by default: 1 MiB (closed with 1009 beyond)."""

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class SettingsError(ValueError):
    """An environment variable has a value PodRoute cannot use; the message says which and why."""


def read_text(environ: Mapping[str, str], key: str, default: str = "") -> str:
    """`key`'s value with surrounding blanks removed, or `default` when unset or blank."""
    return environ.get(key, "").strip() or default


def read_list(environ: Mapping[str, str], key: str, *, lower: bool = False) -> tuple[str, ...]:
    """`key` as a comma-separated list (blank items dropped; lower-cased with `lower`)."""
    items = (item.strip() for item in environ.get(key, "").split(","))
    return tuple(item.lower() if lower else item for item in items if item)


def read_int(
    environ: Mapping[str, str], key: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    """`key` as a whole number in [minimum, maximum] (`default` when unset); SettingsError otherwise."""
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a whole number") from None
    if maximum is None and value < minimum:
        raise SettingsError(f"{key}={value} must be at least {minimum}")
    if maximum is not None and not minimum <= value <= maximum:
        raise SettingsError(f"{key}={value} must be between {minimum} and {maximum}")
    return value


def read_port(environ: Mapping[str, str], key: str, default: int) -> int:
    """`key` as a TCP port, 0-65535 (`default` when unset)."""
    port = read_int(environ, key, default, minimum=0)
    if port > 65535:
        raise SettingsError(f"{key}={port} is not a TCP port (0-65535)")
    return port


def read_number(
    environ: Mapping[str, str], key: str, default: float, *, minimum: float, maximum: float
) -> float:
    """`key` as a number in [minimum, maximum] (`default` when unset); SettingsError otherwise."""
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a number") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{key}={value:g} must be between {minimum:g} and {maximum:g}")
    return value


def read_seconds(environ: Mapping[str, str], key: str, default: float) -> float:
    """`key` as a finite number of seconds above 0 (`default` when unset)."""
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise SettingsError(f"{key}={raw} must be a finite number of seconds above 0")
    return value


def read_flag(environ: Mapping[str, str], key: str) -> bool | None:
    """`key` as a yes/no switch (1/true/yes/on, 0/false/no/off), or None when unset."""
    raw = environ.get(key, "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key}={raw!r} must be 1/true/yes/on or 0/false/no/off")


def log_level_from(environ: Mapping[str, str]) -> str:
    """`LOG_LEVEL` upper-cased and checked (default INFO)."""
    level = read_text(environ, "LOG_LEVEL", "INFO").upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL={level!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


@dataclass(frozen=True)
class AppSettings:
    """How an app built by `create_app` behaves."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    health_path: str = "/ping"
    title: str = "PodRoute API"
    body_timeout: float = 60.0
    """Seconds a request body may take to arrive in full (408 after)."""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """The largest WebSocket message a route accepts (the socket is closed with 1009 beyond)."""

    def __post_init__(self) -> None:
        if not self.health_path.startswith("/"):
            raise SettingsError(f"HEALTH_CHECK_PATH={self.health_path!r} must start with '/'")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AppSettings:
        """Read `PODROUTE_MAX_BODY_BYTES`, `HEALTH_CHECK_PATH`, `PODROUTE_BODY_TIMEOUT` and
        `PODROUTE_WS_MAX_MESSAGE_BYTES`."""
        env = os.environ if environ is None else environ
        return cls(
            max_body_bytes=read_int(env, "PODROUTE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1),
            max_message_bytes=read_int(
                env, "PODROUTE_WS_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, minimum=1
            ),
            health_path=read_text(env, "HEALTH_CHECK_PATH", "/ping"),
            body_timeout=read_seconds(env, "PODROUTE_BODY_TIMEOUT", 60.0),
        )


@dataclass(frozen=True)
class ServerSettings:
    """Where and how a worker listens (RunPod's contract: `PORT`, `PORT_HEALTH`, 0.0.0.0)."""

    host: str = "0.0.0.0"
    port: int = 80
    port_health: int | None = None
    log_level: str = "INFO"
    access_log: bool = True
    graceful_timeout: float = 30.0
    keep_alive_timeout: float = 65.0
    """Seconds an idle keep-alive connection stays open."""
    header_timeout: float = 10.0
    """Seconds a client has to send a request's headers once the connection (or request) began."""
    max_header_bytes: int = 64 * 1024
    """Most bytes of request line plus headers (431 beyond)."""
    max_url_bytes: int = 8 * 1024
    """Longest request target, path plus query (414 beyond)."""
    max_header_count: int = 100
    """Most header fields in one request (431 beyond)."""

    @property
    def ports(self) -> list[int]:
        """The ports to bind: `port`, plus `port_health` when it differs."""
        if self.port_health is None or self.port_health == self.port:
            return [self.port]
        return [self.port, self.port_health]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Read `HOST`, `PORT`, `PORT_HEALTH`, `LOG_LEVEL`, `PODROUTE_ACCESS_LOG` (1/0) and the limits.

        Limits: `PODROUTE_KEEP_ALIVE_TIMEOUT`, `PODROUTE_HEADER_TIMEOUT` (seconds),
        `PODROUTE_MAX_HEADER_BYTES`, `PODROUTE_MAX_URL_BYTES`, `PODROUTE_MAX_HEADERS`.
        """
        env = os.environ if environ is None else environ
        port = read_port(env, "PORT", 80)
        return cls(
            host=read_text(env, "HOST", "0.0.0.0"),
            port=port,
            port_health=read_port(env, "PORT_HEALTH", port),
            log_level=log_level_from(env),
            access_log=env.get("PODROUTE_ACCESS_LOG", "1").strip() not in ("0", "false", "no"),
            keep_alive_timeout=read_seconds(env, "PODROUTE_KEEP_ALIVE_TIMEOUT", 65.0),
            header_timeout=read_seconds(env, "PODROUTE_HEADER_TIMEOUT", 10.0),
            max_header_bytes=read_int(env, "PODROUTE_MAX_HEADER_BYTES", 64 * 1024, minimum=8192),
            max_url_bytes=read_int(env, "PODROUTE_MAX_URL_BYTES", 8 * 1024, minimum=256),
            max_header_count=read_int(env, "PODROUTE_MAX_HEADERS", 100, minimum=10),
        )
