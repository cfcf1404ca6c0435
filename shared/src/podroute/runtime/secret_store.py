"""The local runtime's secrets: values encrypted with Fernet, decrypted only for a booting worker.

    <data_dir>/secret.key     the Fernet key (mode 0600, made on first use)
    <data_dir>/secrets.json   name -> id, description, createdAt and the encrypted value (mode 0600)

Names and descriptions are not secret; values are only ever written as Fernet tokens and only
decrypted by `resolve_env`, when the runtime builds a worker's process environment.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from podroute.secrets import (
    SecretExistsError,
    SecretInfo,
    SecretNotFoundError,
    check_secret_name,
    secret_references,
)

MAX_SECRET_BYTES = 32 * 1024
"""The largest value a secret may hold (RunPod's env values are short strings too)."""


class SecretValueError(ValueError):
    """A secret value cannot be stored (empty, too long) or no longer decrypts."""


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` atomically to `path`, readable by the owner only."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


class EncryptedSecretStore:
    """A `SecretStore` in two owner-only files under the runtime's data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.key_path = data_dir / "secret.key"
        self.path = data_dir / "secrets.json"
        self._cipher: Fernet | None = None

    def _fernet(self) -> Fernet:
        if self._cipher is None:
            if not self.key_path.is_file():
                try:
                    fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    pass
                else:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(Fernet.generate_key())
            self._cipher = Fernet(self.key_path.read_bytes().strip())
        return self._cipher

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        data: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        return data

    def _save(self, data: Mapping[str, Any]) -> None:
        _write_private(self.path, json.dumps(data, indent=1, sort_keys=True).encode())

    @staticmethod
    def _info(name: str, entry: Mapping[str, Any]) -> SecretInfo:
        return SecretInfo(
            name=name,
            id=str(entry["id"]),
            description=str(entry.get("description", "")),
            created_at=str(entry.get("createdAt", "")),
        )

    def list_secrets(self) -> list[SecretInfo]:
        """Every secret, by name, without values."""
        return [self._info(name, entry) for name, entry in sorted(self._load().items())]

    def add_secret(
        self, name: str, value: str, description: str = "", *, replace: bool = False
    ) -> SecretInfo:
        """Encrypt and store a secret; SecretExistsError when the name is taken, unless `replace`."""
        check_secret_name(name)
        if not value:
            raise SecretValueError("a secret needs a non-empty value")
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise SecretValueError(f"a secret value may hold at most {MAX_SECRET_BYTES} bytes")
        data = self._load()
        if name in data and not replace:
            raise SecretExistsError(f"secret {name!r} already exists; delete it first to replace it")
        entry = {
            "id": "sec_" + secrets.token_hex(8),
            "description": description,
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "value": self._fernet().encrypt(value.encode()).decode(),
        }
        data[name] = entry
        self._save(data)
        return self._info(name, entry)

    def delete_secret(self, name: str) -> None:
        """Remove a secret; SecretNotFoundError when there is none of that name."""
        data = self._load()
        if data.pop(name, None) is None:
            raise SecretNotFoundError(f"there is no secret {name!r}")
        self._save(data)

    def resolve_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` with each secret reference replaced by its decrypted value (for a worker's process).

        SecretNotFoundError names every referenced secret that does not exist.
        """
        references = secret_references(env)
        if not references:
            return dict(env)
        data = self._load()
        missing = sorted({name for name in references.values() if name not in data})
        if missing:
            raise SecretNotFoundError(
                f"secret(s) {', '.join(map(repr, missing))} do not exist in the runtime; add them with "
                "'podroute secret add ENV NAME'"
            )
        resolved = dict(env)
        for key, name in references.items():
            try:
                resolved[key] = self._fernet().decrypt(data[name]["value"].encode()).decode()
            except InvalidToken:
                raise SecretValueError(
                    f"secret {name!r} does not decrypt with {self.key_path}: the key file changed; "
                    "delete the secret and add it again"
                ) from None
        return resolved
