"""RunPod's platform secrets, through GraphQL (the only API that has them), as a `SecretStore`.

    query    { myself { secrets { id name description createdAt } } }
    mutation secretCreate($input: SecretCreateInput!) { secretCreate(input: $input) { id name } }
    mutation secretDelete($id: ID!) { secretDelete(id: $id) }

RunPod never returns a value once stored; an endpoint's env refers to a secret as
`{{ RUNPOD_SECRET_<name> }}` and the platform decrypts it when a worker boots. The calls go through
`GraphQLApi.execute`, so they share the provider's auth, retries and error mapping (whichever API,
REST v2 or GraphQL, the provider deploys with).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from podroute.deploy import DeployError
from podroute.runpod_api import GraphQLApi, RunPodSettings
from podroute.secrets import SecretInfo, check_secret_name

_LIST_SECRETS = "query Secrets { myself { secrets { id name description createdAt } } }"
_CREATE_SECRET = (
    "mutation secretCreate($input: SecretCreateInput!) { secretCreate(input: $input) { id name } }"  # noqa: S105
)
_DELETE_SECRET = "mutation secretDelete($id: ID!) { secretDelete(id: $id) }"  # noqa: S105


class RunPodSecrets:
    """The account's RunPod secrets (names and metadata; values are write-only)."""

    def __init__(self, settings: RunPodSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self._api = GraphQLApi(settings, sleep)

    def __repr__(self) -> str:
        return "RunPodSecrets()"

    def close(self) -> None:
        """Release connections."""
        self._api.close()

    def list_secrets(self) -> list[SecretInfo]:
        """myself { secrets }."""
        data = self._api.execute(_LIST_SECRETS, {}, what="list secrets", idempotent=True)
        return [
            SecretInfo(
                name=str(raw["name"]),
                id=str(raw.get("id") or ""),
                description=str(raw.get("description") or ""),
                created_at=str(raw.get("createdAt") or ""),
            )
            for raw in (data.get("myself") or {}).get("secrets") or []
        ]

    def add_secret(self, name: str, value: str, description: str = "") -> SecretInfo:
        """secretCreate; refused (before any call) when the name is taken or invalid."""
        check_secret_name(name)
        if not value:
            raise DeployError("a secret needs a non-empty value")
        if any(info.name == name for info in self.list_secrets()):
            raise DeployError(
                f"RunPod already has a secret {name!r}; delete it first ('podroute secret delete ENV "
                f"{name}') to replace it"
            )
        variables = {"input": {"name": name, "value": value, "description": description}}
        data = self._api.execute(_CREATE_SECRET, variables, what=f"create secret {name}", idempotent=False)
        created = data.get("secretCreate") or {}
        return SecretInfo(
            name=str(created.get("name") or name), id=str(created.get("id") or ""), description=description
        )

    def delete_secret(self, name: str) -> None:
        """secretDelete by the id of the secret named `name`."""
        found = [info for info in self.list_secrets() if info.name == name]
        if not found:
            raise DeployError(f"RunPod has no secret {name!r}; 'podroute secret list ENV' shows the names")
        self._api.execute(_DELETE_SECRET, {"id": found[0].id}, what=f"delete secret {name}", idempotent=True)
