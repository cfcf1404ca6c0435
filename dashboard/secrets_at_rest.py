"""Secrets at rest: endpoint API keys and environment values are stored encrypted (Fernet).

The key is derived (HKDF-SHA256) from the dashboard secret (`DASHBOARD_SECRET_KEY`). Earlier
secrets listed in `DASHBOARD_OLD_SECRET_KEYS` still decrypt, so rotating the secret loses nothing;
`python -m dashboard reencrypt` then rewrites every value under the current secret. Columns use
`EncryptedText`, so the rest of the code reads and writes plain strings.

Values the dashboard must tell apart without keeping them (a deployment snapshot's secret env
values) are fingerprinted instead: an HMAC under a key derived from the same secret
(`KeyRing.fingerprint_keys`), which also names the value's provider secret.

The key ring is process-wide because a column type cannot see the app that runs the query: the
web app, the Celery worker and the CLI install it from their settings (`install_key_ring`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

PREFIX = "fernet:"
"""Marks a stored value as encrypted (values without it are legacy plain text, read as they are)."""

_HKDF_INFO = b"podroute-dashboard secrets at rest v1"
_HKDF_SALT = b"podroute-dashboard"
_FINGERPRINT_CONTEXT = b"podroute-dashboard secret env fingerprints v1"


class SecretsKeyError(RuntimeError):
    """No key ring is installed, or a stored value cannot be decrypted with any known secret."""


def derive_key(secret: str) -> bytes:
    """The Fernet key (urlsafe base64 of 32 bytes) derived from a dashboard secret."""
    if not secret:
        raise SecretsKeyError("an empty secret cannot key the encryption of stored secrets")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(secret.encode())
    return base64.urlsafe_b64encode(raw)


def derive_fingerprint_key(secret: str) -> bytes:
    """The key that fingerprints secret env values (HMAC-SHA256 of a fixed context under `secret`)."""
    if not secret:
        raise SecretsKeyError("an empty secret cannot key the fingerprints of secret values")
    return hmac.new(secret.encode(), _FINGERPRINT_CONTEXT, hashlib.sha256).digest()


class KeyRing:
    """Encrypts with the current secret's key; decrypts with the current or any older one."""

    def __init__(self, current: str, older: Sequence[str] = ()) -> None:
        secrets = [current, *(s for s in older if s and s != current)]
        self._current = Fernet(derive_key(current))
        self._fernet = MultiFernet([self._current, *(Fernet(derive_key(s)) for s in secrets[1:])])
        self.fingerprint_keys: tuple[bytes, ...] = tuple(derive_fingerprint_key(s) for s in secrets)
        """Fingerprint keys, the current secret's first (older ones recognise older fingerprints)."""

    @property
    def fingerprint_key(self) -> bytes:
        """The current secret's fingerprint key (new fingerprints use it)."""
        return self.fingerprint_keys[0]

    def encrypt(self, plain: str) -> str:
        """The stored form of `plain`: 'fernet:' + a Fernet token."""
        return PREFIX + self._fernet.encrypt(plain.encode()).decode("ascii")

    def decrypt(self, stored: str) -> str:
        """The plain text of a stored value (legacy plain values come back unchanged)."""
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :].encode("ascii")).decode()
        except (InvalidToken, ValueError):
            raise SecretsKeyError(
                "a stored secret cannot be decrypted with DASHBOARD_SECRET_KEY or any of "
                "DASHBOARD_OLD_SECRET_KEYS: if the secret was changed, put the previous one in "
                "DASHBOARD_OLD_SECRET_KEYS (comma-separated) and run `python -m dashboard reencrypt`"
            ) from None

    def is_current(self, stored: str) -> bool:
        """True when `stored` is encrypted under the current secret (nothing to re-encrypt)."""
        if not stored.startswith(PREFIX):
            return False
        try:
            self._current.decrypt(stored[len(PREFIX) :].encode("ascii"))
        except (InvalidToken, ValueError):
            return False
        return True


_installed: list[KeyRing] = []


def install_key_ring(current: str, older: Sequence[str] = ()) -> KeyRing:
    """Make the key ring for these secrets the one `EncryptedText` columns use; return it."""
    ring = KeyRing(current, older)
    _installed[:] = [ring]
    return ring


def installed_key_ring() -> KeyRing | None:
    """The installed key ring, or None when none is."""
    return _installed[0] if _installed else None


def key_ring() -> KeyRing:
    """The installed key ring (raises `SecretsKeyError` when none is)."""
    if not _installed:
        raise SecretsKeyError(
            "stored secrets were read or written before the dashboard installed its key ring "
            "(call install_key_ring with the dashboard secret first)"
        )
    return _installed[0]


class EncryptedText(TypeDecorator[str]):
    """A Text column whose values are stored Fernet-encrypted and read back as plain strings."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        """Encrypt on the way in (an empty string stays empty: there is nothing to hide)."""
        if value is None or value == "":
            return value  # type: ignore[no-any-return]
        return key_ring().encrypt(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        """Decrypt on the way out."""
        if value is None or value == "":
            return value  # type: ignore[no-any-return]
        return key_ring().decrypt(str(value))
