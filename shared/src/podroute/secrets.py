"""Platform secrets: `Secret("name")` env references, the pre-deploy checks, and the store protocol.

A resource's env names a secret instead of holding its value:

    api = LoadBalancerSlsResource(name="llm", env={"HF_TOKEN": Secret("hf-token")})

`Secret("hf-token")` *is* the string `{{ RUNPOD_SECRET_hf-token }}`, RunPod's own reference syntax,
so manifests, artifacts, templates and records only ever hold the reference. The provider puts the
value in the worker's process env when the worker boots: RunPod decrypts its platform secrets, the
local runtime decrypts its own encrypted store. Values live only in the provider's `SecretStore`.

Before anything is created, a deploy checks that every referenced secret exists
(`check_secrets`), since a worker whose reference cannot be resolved would boot with the literal
template string; and `credential_warnings` points plain env values that look like credentials
to `Secret`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

SECRET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
"""Secret names: letters, digits, '_', '.' and '-' (RunPod's rule), at most 128 characters."""

_REFERENCE = re.compile(r"^\{\{\s*RUNPOD_SECRET_([A-Za-z0-9_.-]{1,128})\s*\}\}$")
_CREDENTIAL_NAME = re.compile(r"(_TOKEN|_KEY|PASSWORD|PASSWD|_SECRET)$|^(TOKEN|SECRET|API_KEY)$", re.I)
_CREDENTIAL_VALUE = re.compile(
    r"^(sk-[A-Za-z0-9_-]{16,}|sk_(live|test)_[A-Za-z0-9]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{30,}|glpat-[A-Za-z0-9_-]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}"
    r"|rpa_[A-Za-z0-9]{20,}|rp_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\..*)$"
)
"""API-key shapes: OpenAI/Anthropic, Stripe, Hugging Face, GitHub, GitLab, Slack, AWS, RunPod, Google, JWT."""


class SecretNameError(ValueError):
    """A secret name breaks the naming rule; the message says what is allowed."""


class SecretNotFoundError(LookupError):
    """No secret with that name exists in the store."""


class SecretExistsError(ValueError):
    """A secret with that name already exists (delete it first to replace it)."""


def check_secret_name(name: object) -> str:
    """`name` when it is a valid secret name; SecretNameError otherwise."""
    if not isinstance(name, str) or not SECRET_NAME_PATTERN.match(name):
        raise SecretNameError(
            f"{name!r} is not a valid secret name: use 1-128 letters, digits, '_', '.' or '-' "
            "(e.g. 'hf-token')"
        )
    return name


def secret_reference(name: str) -> str:
    """The env value that refers to secret `name`: `{{ RUNPOD_SECRET_<name> }}`."""
    return f"{{{{ RUNPOD_SECRET_{check_secret_name(name)} }}}}"


class Secret(str):
    """A reference to a platform secret, usable as a resource env value.

    It is the string `{{ RUNPOD_SECRET_<name> }}` (RunPod's syntax), so wherever env values travel
    (manifests, templates, runtime records) only the reference travels. Never a value.
    """

    name: str

    def __new__(cls, name: str) -> Secret:
        """A reference to the secret `name` (SecretNameError for an invalid name)."""
        secret = super().__new__(cls, secret_reference(name))
        secret.name = name
        return secret

    def __repr__(self) -> str:
        return f"Secret({self.name!r})"

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self.name,))


def secret_name_of(value: str) -> str | None:
    """The secret a value refers to (`Secret` or its string form), or None for a plain value."""
    match = _REFERENCE.match(value)
    return match.group(1) if match else None


def with_secret_references(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with every reference string turned into a `Secret` (plain values unchanged)."""
    result: dict[str, str] = {}
    for key, value in env.items():
        name = secret_name_of(value)
        result[key] = Secret(name) if name is not None else value
    return result


def secret_references(env: Mapping[str, str]) -> dict[str, str]:
    """Env variable -> the secret name it refers to, for every reference in `env`."""
    return {key: name for key, value in env.items() if (name := secret_name_of(value)) is not None}


@dataclass(frozen=True)
class SecretInfo:
    """What a store tells about a secret: never its value."""

    name: str
    id: str = ""
    description: str = ""
    created_at: str = ""

    def to_json(self) -> dict[str, str]:
        """Plain JSON (RunPod's field names)."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "createdAt": self.created_at,
        }


def secret_info(raw: Mapping[str, Any]) -> SecretInfo:
    """A `SecretInfo` from its JSON form (`SecretInfo.to_json`, RunPod's field names)."""
    return SecretInfo(
        name=str(raw["name"]),
        id=str(raw.get("id") or ""),
        description=str(raw.get("description") or ""),
        created_at=str(raw.get("createdAt") or ""),
    )


class SecretStore(Protocol):
    """Where a provider keeps secret values (the local runtime's encrypted file, RunPod's platform)."""

    def list_secrets(self) -> list[SecretInfo]:
        """Every secret, without values."""

    def add_secret(
        self, name: str, value: str, description: str = "", *, replace: bool = False
    ) -> SecretInfo:
        """Store a secret; an existing name is refused (delete it first), or with `replace` replaced."""

    def delete_secret(self, name: str) -> None:
        """Remove a secret; refused when there is none of that name."""


def check_secrets(resource_config: Mapping[str, Any], store: SecretStore) -> list[str]:
    """Names of the secrets `resource_config["env"]` refers to that `store` does not hold.

    The store is only asked when the env refers to a secret. Call it before creating anything.
    """
    wanted = set(secret_references(resource_config.get("env") or {}).values())
    if not wanted:
        return []
    held = {info.name for info in store.list_secrets()}
    return sorted(wanted - held)


def missing_secrets_message(missing: list[str], where: str, environment: str = "ENV") -> str:
    """The error text for a deploy that refers to secrets `where` (a provider) does not hold."""
    names = ", ".join(repr(name) for name in missing)
    return (
        f"secret(s) {names} referenced by the resource's env do not exist on {where}; nothing was "
        f"created. Add each with 'podroute secret add {environment} NAME' and deploy again"
    )


def credential_warnings(env: Mapping[str, str]) -> list[str]:
    """One warning per plain env value that looks like a credential (the value is never quoted)."""
    warnings = []
    for key, value in env.items():
        if not value or secret_name_of(value) is not None:
            continue
        if _CREDENTIAL_VALUE.match(value.strip()):
            reason = "its value looks like an API key"
        elif _CREDENTIAL_NAME.search(key):
            reason = "its name says it holds a credential"
        else:
            continue
        suggested = re.sub(r"[^a-z0-9.-]+", "-", key.lower()).strip("-") or "my-secret"
        warnings.append(
            f"env {key} is a plain value but {reason}: plain values are stored in the build manifest "
            f"and the provider's env in clear. Store it with 'podroute secret add ENV {suggested}' "
            f"and write env={{{key!r}: Secret({suggested!r})}} (in the dashboard: mark it secret)"
        )
    return warnings
