"""Typed dashboard settings, read from the environment once; tests build them explicitly."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import make_url

from dashboard import REPO_ROOT
from podroute.settings import (
    LOG_LEVELS,
    SettingsError,
    log_level_from,
    read_flag,
    read_int,
    read_list,
    read_number,
    read_text,
)

__all__ = ["DashboardSettings", "SettingsError", "async_database_url"]

Environment = Literal["development", "production"]

DEV_SECRET_KEY = "podroute-dashboard-development-secret-do-not-use-in-production"  # noqa: S105
"""The signing key used in development when `DASHBOARD_SECRET_KEY` is not set."""

KNOWN_DEFAULT_SECRETS = frozenset({DEV_SECRET_KEY, "changeme", "change-me", "secret", "dev", "development"})
"""Secrets that are public knowledge and therefore refused in production."""

MIN_SECRET_LENGTH = 32
DEFAULT_FLASH_PORT = 8888
"""The dev server's port (`FLASH_PORT`, as in Flash)."""
DEFAULT_RUNTIME_PORT = 8800
"""The local runtime gateway's port (`PODROUTE_RUNTIME_PORT`)."""
DEFAULT_TRY_IT_BASE_URL = f"http://localhost:{DEFAULT_FLASH_PORT}/{{service}}"
DEFAULT_ENVIRONMENTS = ("production", "staging")
"""The environments every endpoint can be deployed to (`DASHBOARD_ENVIRONMENTS` changes them)."""
DEFAULT_RUNTIME_URL = f"http://localhost:{DEFAULT_RUNTIME_PORT}"
"""The local runtime `podroute runtime` started with its defaults."""
PROVIDERS = ("local", "runpod")
_ENVIRONMENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_ANY_ADDRESS = frozenset({"0.0.0.0", "::", "[::]", ""})


def async_database_url(url: str) -> str:
    """The URL with an async driver: `sqlite` -> `sqlite+aiosqlite`, `postgresql` -> `+asyncpg`."""
    parsed = make_url(url)
    drivers = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
    }
    name = drivers.get(parsed.drivername)
    if name is None:
        return url
    return parsed.set(drivername=name).render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """Everything the dashboard reads from its environment (see `from_env` for the variables)."""

    environment: Environment = "production"
    host: str = "localhost"
    port: int = 8080
    data_dir: Path = REPO_ROOT / ".podroute"
    database_url: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    old_secret_keys: tuple[str, ...] = field(default=(), repr=False)
    admin_user: str = "admin"
    admin_password: str = field(default="", repr=False)
    project_dir: Path = REPO_ROOT
    try_it_base_url: str = DEFAULT_TRY_IT_BASE_URL
    try_it_hosts: tuple[str, ...] = ()
    log_level: str = "INFO"
    secure_cookies: bool | None = None
    login_max_failures: int = 5
    login_window_s: int = 300
    login_delay_s: float = 2.0
    session_lifetime_s: int = 8 * 3600
    discovery_timeout_s: float = 30.0
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS
    runtime_url: str = DEFAULT_RUNTIME_URL
    runtime_token: str = field(default="", repr=False)
    runtime_token_file: Path | None = None
    runpod_api_key: str = field(default="", repr=False)
    runpod_api: Literal["rest", "graphql"] = "rest"
    """Which RunPod management API the provider speaks (`PODROUTE_RUNPOD_API`, as for the CLI)."""
    providers: tuple[tuple[str, str], ...] = ()
    broker_url: str = field(default="", repr=False)
    redis_url: str = field(default="", repr=False)
    celery_queue: str = "dashboard"
    sync_interval_s: float = 10.0
    lease_s: float = 30.0
    usage_interval_s: float = 60.0
    """How often the sync samples worker counts where the provider keeps no history (RunPod)."""
    deploy_timeout_s: float = 300.0
    docker_registry: str = ""

    def __post_init__(self) -> None:
        if self.environment not in ("development", "production"):
            raise SettingsError(f"DASHBOARD_ENV={self.environment!r} must be 'development' or 'production'")
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"DASHBOARD_PORT={self.port} is not a TCP port (0-65535)")
        for name in self.environments:
            if not _ENVIRONMENT_NAME.match(name):
                raise SettingsError(
                    f"DASHBOARD_ENVIRONMENTS: {name!r} is not a valid environment name "
                    "(lowercase letters, digits and '-', starting with a letter, at most 32)"
                )
        if self.runpod_api not in ("rest", "graphql"):
            raise SettingsError(f"PODROUTE_RUNPOD_API={self.runpod_api!r} must be 'rest' or 'graphql'")
        if not self.environments:
            raise SettingsError("DASHBOARD_ENVIRONMENTS is empty; name at least one, e.g. 'production'")
        for environment, provider in self.providers:
            if provider not in PROVIDERS:
                raise SettingsError(
                    f"DASHBOARD_PROVIDER_{environment.upper().replace('-', '_')}={provider!r} "
                    f"must be one of {', '.join(PROVIDERS)}"
                )

    def provider_of(self, environment: str) -> str:
        """'local' or 'runpod': an explicit DASHBOARD_PROVIDER_<ENV>, else RunPod when an API key is
        set, else the local runtime."""
        chosen = dict(self.providers).get(environment)
        if chosen:
            return chosen
        return "runpod" if self.runpod_api_key else "local"

    @property
    def builds_dir(self) -> Path:
        """Where the build task writes artifacts (`<data dir>/builds`)."""
        return self.data_dir / "builds"

    @property
    def token_file(self) -> Path:
        """The local runtime's token file (`<project>/.podroute/runtime/token` unless configured)."""
        return self.runtime_token_file or self.project_dir / ".podroute" / "runtime" / "token"

    @property
    def celery_broker_url(self) -> str:
        """`CELERY_BROKER_URL`, else `REDIS_URL`, else a SQLite file in the data dir (no server)."""
        return (
            self.broker_url or self.redis_url or f"sqla+sqlite:///{self.data_dir / 'celery-broker.sqlite3'}"
        )

    @property
    def uses_embedded_broker(self) -> bool:
        """True when Celery's broker is the SQLite file in the data dir."""
        return self.celery_broker_url.startswith("sqla+sqlite:")

    def check_secret_key(self) -> None:
        """Raise `SettingsError` in production unless the secret key is set, long and not a default.

        Called when the web app is built; migrations and the user CLI sign nothing and skip it.
        """
        if self.is_development:
            return
        fix = (
            "set DASHBOARD_SECRET_KEY to a long random value, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'` "
            "(or set DASHBOARD_ENV=development on a development machine)"
        )
        if not self.secret_key:
            raise SettingsError(f"DASHBOARD_SECRET_KEY is not set and DASHBOARD_ENV is production: {fix}")
        if self.secret_key in KNOWN_DEFAULT_SECRETS:
            raise SettingsError(f"DASHBOARD_SECRET_KEY is a well-known default, refused in production: {fix}")
        if len(self.secret_key) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"DASHBOARD_SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters, "
                f"refused in production: {fix}"
            )

    @property
    def is_development(self) -> bool:
        """True on a development machine (`DASHBOARD_ENV=development`)."""
        return self.environment == "development"

    @property
    def signing_key(self) -> str:
        """The key that signs session cookies (the development default when none is set)."""
        return self.secret_key or DEV_SECRET_KEY

    @property
    def encryption_secrets(self) -> tuple[str, tuple[str, ...]]:
        """(current, older): the secrets that key stored API keys and environment values."""
        return self.signing_key, self.old_secret_keys

    @property
    def cookies_secure(self) -> bool:
        """Whether session cookies carry `Secure` (default: yes in production, no in development)."""
        return (not self.is_development) if self.secure_cookies is None else self.secure_cookies

    @property
    def url(self) -> str:
        """The SQLAlchemy URL as configured: `database_url`, or a SQLite file in `data_dir`."""
        return self.database_url or f"sqlite:///{self.data_dir / 'dashboard.sqlite3'}"

    @property
    def async_url(self) -> str:
        """`url` with an async driver, for the web app's engine."""
        return async_database_url(self.url)

    @property
    def uses_default_sqlite(self) -> bool:
        """True when the database is the SQLite file under `data_dir` (which must then exist)."""
        return not self.database_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DashboardSettings:
        """Read the `DASHBOARD_*` variables, `DATABASE_URL` and `LOG_LEVEL`.

        DASHBOARD_ENV (production | development), DASHBOARD_HOST (localhost), DASHBOARD_PORT (8080),
        DASHBOARD_DATA_DIR (<repo>/.podroute), DATABASE_URL (SQLite in the data dir),
        DASHBOARD_SECRET_KEY (required in production; it also keys the encryption of stored secrets),
        DASHBOARD_OLD_SECRET_KEYS (comma-separated earlier secrets that still decrypt stored secrets
        after a rotation), DASHBOARD_ADMIN_USER (admin),
        DASHBOARD_ADMIN_PASSWORD (creates that user on first start), DASHBOARD_PROJECT_DIR (<repo>),
        DASHBOARD_TRY_IT_URL (http://localhost:$FLASH_PORT/{service}, FLASH_PORT defaulting to 8888),
        DASHBOARD_TRY_IT_HOSTS (extra hosts the try-it panel may call, any port; '*' for any),
        DASHBOARD_SECURE_COOKIES,
        DASHBOARD_LOGIN_MAX_FAILURES (5 free failures per address and user), DASHBOARD_LOGIN_DELAY_S
        (2: the first delay after them, doubling with each further failure), DASHBOARD_LOGIN_WINDOW_S
        (300: how long failures count, and the longest delay), LOG_LEVEL (INFO).

        Deploying: DASHBOARD_ENVIRONMENTS (production,staging), DASHBOARD_PROVIDER_<ENV> (local |
        runpod), PODROUTE_RUNPOD_API (rest | graphql: RunPod's management API),
        PODROUTE_RUNTIME_URL (http://localhost:$PODROUTE_RUNTIME_PORT, the port defaulting
        to 8800), PODROUTE_RUNTIME_TOKEN or
        PODROUTE_RUNTIME_TOKEN_FILE (<project>/.podroute/runtime/token), RUNPOD_API_KEY,
        CELERY_BROKER_URL or REDIS_URL (default: a SQLite file in the data dir), DASHBOARD_CELERY_QUEUE
        (dashboard),
        DASHBOARD_SYNC_INTERVAL_S (10), DASHBOARD_LEASE_S (30), DASHBOARD_DEPLOY_TIMEOUT_S (300),
        DASHBOARD_USAGE_INTERVAL_S (60: how often RunPod endpoints' worker counts are sampled),
        DASHBOARD_DOCKER_REGISTRY (unset: paste image references; set, e.g. ghcr.io/acme: the worker
        builds and pushes each build's image when a Docker engine answers). RunPod's API base URLs
        come from the RUNPOD_* variables `podroute.providers.runpod.http.RunPodSettings.from_env` reads.
        """
        env = os.environ if environ is None else environ
        return cls(
            environment=read_text(env, "DASHBOARD_ENV", "production").lower(),  # type: ignore[arg-type]
            host=read_text(env, "DASHBOARD_HOST", "localhost"),
            port=read_int(env, "DASHBOARD_PORT", 8080, minimum=0, maximum=65535),
            data_dir=Path(read_text(env, "DASHBOARD_DATA_DIR", str(REPO_ROOT / ".podroute"))).expanduser(),
            database_url=read_text(env, "DATABASE_URL"),
            secret_key=env.get("DASHBOARD_SECRET_KEY", "").strip(),
            old_secret_keys=read_list(env, "DASHBOARD_OLD_SECRET_KEYS"),
            admin_user=read_text(env, "DASHBOARD_ADMIN_USER", "admin"),
            admin_password=env.get("DASHBOARD_ADMIN_PASSWORD", ""),
            project_dir=Path(read_text(env, "DASHBOARD_PROJECT_DIR", str(REPO_ROOT))).expanduser(),
            try_it_base_url=read_text(env, "DASHBOARD_TRY_IT_URL") or _dev_server_url(env),
            try_it_hosts=read_list(env, "DASHBOARD_TRY_IT_HOSTS", lower=True),
            log_level=log_level_from(env),
            secure_cookies=read_flag(env, "DASHBOARD_SECURE_COOKIES"),
            login_max_failures=read_int(env, "DASHBOARD_LOGIN_MAX_FAILURES", 5, minimum=1, maximum=1000),
            login_window_s=read_int(env, "DASHBOARD_LOGIN_WINDOW_S", 300, minimum=1, maximum=86400),
            login_delay_s=read_number(env, "DASHBOARD_LOGIN_DELAY_S", 2.0, minimum=0.1, maximum=3600),
            **_deploy_settings(env),
        )


def _local_host(environ: Mapping[str, str], key: str) -> str:
    host = read_text(environ, key, "localhost")
    return "localhost" if host in _ANY_ADDRESS else host


def _dev_server_url(environ: Mapping[str, str]) -> str:
    """The try-it base: the dev server at FLASH_HOST:FLASH_PORT, with the service's prefix."""
    port = read_int(environ, "FLASH_PORT", DEFAULT_FLASH_PORT, minimum=1, maximum=65535)
    return f"http://{_local_host(environ, 'FLASH_HOST')}:{port}/{{service}}"


def _runtime_url(environ: Mapping[str, str]) -> str:
    """The local runtime gateway at PODROUTE_RUNTIME_HOST:PODROUTE_RUNTIME_PORT."""
    port = read_int(environ, "PODROUTE_RUNTIME_PORT", DEFAULT_RUNTIME_PORT, minimum=1, maximum=65535)
    return f"http://{_local_host(environ, 'PODROUTE_RUNTIME_HOST')}:{port}"


def _deploy_settings(env: Mapping[str, str]) -> dict[str, Any]:
    environments = read_list(env, "DASHBOARD_ENVIRONMENTS", lower=True) or DEFAULT_ENVIRONMENTS
    providers = tuple(
        (name, read_text(env, f"DASHBOARD_PROVIDER_{name.upper().replace('-', '_')}").lower())
        for name in environments
        if read_text(env, f"DASHBOARD_PROVIDER_{name.upper().replace('-', '_')}")
    )
    token_file = read_text(env, "PODROUTE_RUNTIME_TOKEN_FILE")
    return {
        "environments": environments,
        "providers": providers,
        "runtime_url": (read_text(env, "PODROUTE_RUNTIME_URL") or _runtime_url(env)).rstrip("/"),
        "runtime_token": env.get("PODROUTE_RUNTIME_TOKEN", "").strip(),
        "runtime_token_file": Path(token_file).expanduser() if token_file else None,
        "runpod_api_key": env.get("RUNPOD_API_KEY", "").strip(),
        "runpod_api": read_text(env, "PODROUTE_RUNPOD_API", "rest").lower(),
        "broker_url": read_text(env, "CELERY_BROKER_URL"),
        "redis_url": read_text(env, "REDIS_URL"),
        "celery_queue": read_text(env, "DASHBOARD_CELERY_QUEUE", "dashboard"),
        "sync_interval_s": read_number(env, "DASHBOARD_SYNC_INTERVAL_S", 10.0, minimum=0.2, maximum=3600),
        "lease_s": read_number(env, "DASHBOARD_LEASE_S", 30.0, minimum=1, maximum=3600),
        "usage_interval_s": read_number(env, "DASHBOARD_USAGE_INTERVAL_S", 60.0, minimum=0.2, maximum=3600),
        "deploy_timeout_s": read_number(env, "DASHBOARD_DEPLOY_TIMEOUT_S", 300.0, minimum=5, maximum=7200),
        "docker_registry": read_text(env, "DASHBOARD_DOCKER_REGISTRY").rstrip("/"),
    }
