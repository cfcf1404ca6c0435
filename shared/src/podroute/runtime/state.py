"""The local runtime's durable state: endpoints, their builds and keys, in one JSON file.

Writes are atomic (temp file + rename), so a crash never leaves half a state behind. API keys are
stored only as SHA-256 hashes; the key itself is shown once, when an endpoint is created.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCALING_FIELDS = ("workersMin", "workersMax", "idleTimeout", "scalerValue", "executionTimeoutMs")


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_endpoint_id() -> str:
    """A RunPod-like endpoint id: 14 lowercase letters and digits."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(14))


def new_api_key() -> str:
    """A fresh endpoint API key."""
    return "prk_" + secrets.token_urlsafe(32)


@dataclass
class Release:
    """What the workers of an endpoint run: a build plus the environment it runs with."""

    build: str
    env: dict[str, str]
    created_at: float = field(default_factory=time.time)

    @property
    def key(self) -> str:
        """Identity of the release: workers with another key are outdated."""
        payload = json.dumps({"build": self.build, "env": self.env}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class EndpointRecord:
    """One deployed endpoint as the runtime remembers it."""

    id: str
    name: str
    key_sha256: str
    scaling: dict[str, int]
    releases: list[Release]
    created_at: float = field(default_factory=time.time)

    @property
    def release(self) -> Release:
        """The release new workers start with."""
        return self.releases[-1]

    def accepts_key(self, key: str) -> bool:
        """Whether `key` is this endpoint's API key (constant-time comparison)."""
        return hmac.compare_digest(hash_key(key), self.key_sha256)

    def to_json(self) -> dict[str, Any]:
        """Serialisable form."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EndpointRecord:
        """Inverse of `to_json`."""
        releases = [Release(**r) for r in data["releases"]]
        return cls(**{**data, "releases": releases})


class StateFile:
    """Endpoints and known builds, persisted in `<data_dir>/state.json`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "state.json"
        self.endpoints: dict[str, EndpointRecord] = {}
        self.builds: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            data = json.loads(self.path.read_text())
            self.endpoints = {k: EndpointRecord.from_json(v) for k, v in data.get("endpoints", {}).items()}
            self.builds = data.get("builds", {})

    def save(self) -> None:
        """Write the state atomically."""
        payload = {
            "endpoints": {k: v.to_json() for k, v in self.endpoints.items()},
            "builds": self.builds,
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(payload, indent=1, sort_keys=True))
        os.replace(temporary, self.path)


def load_or_create_token(data_dir: Path) -> str:
    """The control API token: `<data_dir>/token`, created (mode 0600) on first use."""
    path = data_dir / "token"
    if path.is_file():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token
