"""The local runtime's durable state: endpoints, their releases and builds, in one JSON file.

Writes are atomic (temp file + rename), so a crash never leaves half a state behind. The gateway
checks API keys against SHA-256 hashes in `state.json`; the keys themselves live apart, in
`endpoint-keys.json` (mode 0600), so the control API can hand an endpoint's key to an authenticated
caller and no tool has to store keys of its own.

Each endpoint keeps its marker labels, its numbered releases (build, env, the config it was
released with, who released it, when), the number it serves, and its recorded desired overrides.
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
    number: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    """The desired config it was released with, without env values (`env_keys` instead)."""
    deployed_by: str = ""

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
    labels: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    current: int = 0
    """The number of the release served (0: the newest)."""

    @property
    def release(self) -> Release:
        """The release new workers start with."""
        for release in self.releases:
            if release.number == self.current:
                return release
        return self.releases[-1]

    def find_release(self, number: int) -> Release | None:
        """The release with that number, if the endpoint still has it."""
        return next((r for r in self.releases if r.number == number), None)

    def add_release(self, release: Release) -> Release:
        """Append `release` as the newest, numbered after every earlier one, and serve it."""
        release.number = max((r.number for r in self.releases), default=0) + 1
        self.releases.append(release)
        self.current = release.number
        return release

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
        for index, release in enumerate(releases):
            release.number = release.number or index + 1  # state written before releases had numbers
        return cls(**{**data, "releases": releases})


class StateFile:
    """Endpoints and known builds, persisted in `<data_dir>/state.json` (keys in `endpoint-keys.json`)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "state.json"
        self.keys_path = data_dir / "endpoint-keys.json"
        self.endpoints: dict[str, EndpointRecord] = {}
        self.builds: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, str] = {}
        if self.path.is_file():
            data = json.loads(self.path.read_text())
            self.endpoints = {k: EndpointRecord.from_json(v) for k, v in data.get("endpoints", {}).items()}
            self.builds = data.get("builds", {})
        if self.keys_path.is_file():
            self.keys = json.loads(self.keys_path.read_text())

    def save(self) -> None:
        """Write the state (and the key file, owner-only) atomically."""
        self.keys = {k: v for k, v in self.keys.items() if k in self.endpoints}
        payload = {
            "endpoints": {k: v.to_json() for k, v in self.endpoints.items()},
            "builds": self.builds,
        }
        _write_atomically(self.keys_path, json.dumps(self.keys, indent=1, sort_keys=True), 0o600)
        _write_atomically(self.path, json.dumps(payload, indent=1, sort_keys=True), 0o644)


def _write_atomically(path: Path, text: str, mode: int) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


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
