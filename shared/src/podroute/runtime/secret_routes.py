"""The runtime's control routes for secrets (behind the control token, like every /control route).

GET    /control/secrets          {"secrets": [{id, name, description, createdAt}]}   (no values)
POST   /control/secrets          {name, value, description?} -> 201 {id, name, ...}  409 if taken
PUT    /control/secrets/<name>   {value, description?} -> 200 (creates or replaces the value)
DELETE /control/secrets/<name>   200 {"deleted": name}                                404 if absent
"""

from __future__ import annotations

from typing import Any

import orjson
from quart import Quart, Response, request

from podroute.runtime.secret_store import EncryptedSecretStore, SecretValueError
from podroute.secrets import SecretExistsError, SecretNameError, SecretNotFoundError


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")


def register_secret_routes(app: Quart, store: EncryptedSecretStore) -> None:
    """Add the secret routes to the runtime's app."""

    @app.get("/control/secrets")
    async def list_secrets() -> Response:
        return _json({"secrets": [info.to_json() for info in store.list_secrets()]})

    async def store_secret(name: str | None, replace: bool) -> Response:
        try:
            payload = orjson.loads(await request.get_data(as_text=False) or b"{}")
        except orjson.JSONDecodeError:
            return _json({"error": "the body must be a JSON object {name, value, description}"}, 400)
        if not isinstance(payload, dict) or not all(
            isinstance(payload.get(k, ""), str) for k in ("name", "value", "description")
        ):
            return _json(
                {"error": "the body must be a JSON object of strings {name, value, description}"}, 400
            )
        try:
            info = store.add_secret(
                name if name is not None else payload.get("name", ""),
                payload.get("value", ""),
                payload.get("description", ""),
                replace=replace,
            )
        except SecretExistsError as error:
            return _json({"error": str(error)}, 409)
        except (SecretNameError, SecretValueError) as error:
            return _json({"error": str(error)}, 422)
        return _json(info.to_json(), 200 if replace else 201)

    @app.post("/control/secrets")
    async def add_secret() -> Response:
        return await store_secret(None, replace=False)

    @app.put("/control/secrets/<name>")
    async def put_secret(name: str) -> Response:
        return await store_secret(name, replace=True)

    @app.delete("/control/secrets/<name>")
    async def delete_secret(name: str) -> Response:
        try:
            store.delete_secret(name)
        except SecretNotFoundError as error:
            return _json({"error": str(error)}, 404)
        return _json({"deleted": name})
