"""How a local runtime is configured: where it keeps its state, how its gateway and listener behave
(`RuntimeSettings`, read from `PODROUTE_RUNTIME_*`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from podroute.runtime.listener import ListenSettings
from podroute.runtime.metrics import MetricsSettings
from podroute.runtime.volumes import parse_volumes
from podroute.settings import read_int, read_number, read_seconds


@dataclass(frozen=True)
class RuntimeSettings:
    """Where the runtime keeps its state and how its gateway behaves."""

    data_dir: Path = Path(".podroute/runtime")
    host: str = "localhost"
    port: int = 8800
    token: str | None = None
    environment_mode: str = "isolated"
    wait_limit_s: float = 120.0
    execution_limit_s: float = 330.0
    startup_timeout_s: float = 600.0
    public_url: str = ""
    keep_alive_s: float = 30.0
    read_timeout_s: float = 360.0
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    daily_budget_usd: float = 0.0
    volumes: dict[str, Path] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The gateway's URL as clients reach it."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def listen(self) -> ListenSettings:
        """Address and connection limits for the listener."""
        return ListenSettings(
            host=self.host,
            port=self.port,
            keep_alive_s=self.keep_alive_s,
            read_timeout_s=self.read_timeout_s,
        )

    @classmethod
    def from_env(cls) -> RuntimeSettings:
        """Read `PODROUTE_RUNTIME_` + DIR, HOST, PORT, TOKEN, ENV_MODE, WAIT_S, EXECUTION_LIMIT_S,
        KEEP_ALIVE_S (idle connections), READ_TIMEOUT_S (a client silent mid-request),
        METRICS_RETENTION_S (rollups, 7 days), METRICS_RAW_LIMIT (request records kept, 10000) and
        DAILY_BUDGET_USD (per endpoint; 0 = no budget) and VOLUMES (`VOLUME_ID=FOLDER,...`)."""
        env = os.environ
        metrics = MetricsSettings(
            retention_s=read_seconds(env, "PODROUTE_RUNTIME_METRICS_RETENTION_S", 7 * 86400.0),
            raw_limit=read_int(env, "PODROUTE_RUNTIME_METRICS_RAW_LIMIT", 10_000, minimum=1),
        )
        return cls(
            metrics=metrics,
            daily_budget_usd=read_number(
                env, "PODROUTE_RUNTIME_DAILY_BUDGET_USD", 0.0, minimum=0.0, maximum=1e9
            ),
            data_dir=Path(env.get("PODROUTE_RUNTIME_DIR", ".podroute/runtime")),
            host=env.get("PODROUTE_RUNTIME_HOST", "localhost"),
            port=int(env.get("PODROUTE_RUNTIME_PORT", "8800")),
            token=env.get("PODROUTE_RUNTIME_TOKEN") or None,
            environment_mode=env.get("PODROUTE_RUNTIME_ENV_MODE", "isolated"),
            wait_limit_s=read_seconds(env, "PODROUTE_RUNTIME_WAIT_S", 120.0),
            execution_limit_s=read_seconds(env, "PODROUTE_RUNTIME_EXECUTION_LIMIT_S", 330.0),
            keep_alive_s=read_seconds(env, "PODROUTE_RUNTIME_KEEP_ALIVE_S", 30.0),
            read_timeout_s=read_seconds(env, "PODROUTE_RUNTIME_READ_TIMEOUT_S", 360.0),
            volumes=parse_volumes(env.get("PODROUTE_RUNTIME_VOLUMES", "")),
        )
