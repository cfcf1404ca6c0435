"""RunPod's platform secrets, through GraphQL (the only API that has them).

    query    { myself { secrets { id name description createdAt } } }
    mutation secretCreate($input: SecretCreateInput!) { secretCreate(input: $input) { id name } }
    mutation secretDelete($id: ID!) { secretDelete(id: $id) }

RunPod never returns a value once stored; an endpoint's env refers to a secret as
`{{ RUNPOD_SECRET_<name> }}` and the platform decrypts it when a worker boots. The calls go through
`GraphQLApi.execute`, so they share the provider's auth, retries and error mapping whichever API
(REST v2 or GraphQL) the provider deploys with. RunPod has no update: replacing a value deletes the
secret and creates it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from podroute.providers.base import DeployError
from podroute.providers.runpod.graphql import GraphQLApi
from podroute.providers.runpod.http import AmbiguousResultError, RunPodSettings
from podroute.secrets import SecretInfo, check_secret_name, secret_info

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
        return [secret_info(raw) for raw in (data.get("myself") or {}).get("secrets") or []]

    def add_secret(
        self, name: str, value: str, description: str = "", *, replace: bool = False
    ) -> SecretInfo:
        """secretCreate; a taken name is refused, or with `replace` deleted first."""
        check_secret_name(name)
        if not value:
            raise DeployError("a secret needs a non-empty value")
        existing = self._named(name)
        if existing is not None and not replace:
            raise DeployError(
                f"RunPod already has a secret {name!r}; delete it first ('podroute secret delete ENV "
                f"{name}') to replace it"
            )
        if existing is not None:
            self._delete(existing)
        variables = {"input": {"name": name, "value": value, "description": description}}
        try:
            data = self._api.execute(
                _CREATE_SECRET, variables, what=f"create secret {name}", idempotent=False
            )
        except AmbiguousResultError:
            created = self._named(name)  # the answer was lost: look, never send the value twice
            if created is None:
                raise
            return created
        answer = data.get("secretCreate") or {}
        return SecretInfo(
            name=str(answer.get("name") or name), id=str(answer.get("id") or ""), description=description
        )

    def delete_secret(self, name: str) -> None:
        """secretDelete by the id of the secret named `name`."""
        found = self._named(name)
        if found is None:
            raise DeployError(f"RunPod has no secret {name!r}; 'podroute secret list ENV' shows the names")
        self._delete(found)

    def _named(self, name: str) -> SecretInfo | None:
        return next((info for info in self.list_secrets() if info.name == name), None)

    def _delete(self, info: SecretInfo) -> None:
        self._api.execute(_DELETE_SECRET, {"id": info.id}, what=f"delete secret {info.name}", idempotent=True)
