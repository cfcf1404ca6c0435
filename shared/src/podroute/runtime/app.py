"""The runtime's ASGI app: the gateway in front of RunPod-style health, the control API, the
observability API and the secret store, around one `LocalRuntime`.

    gateway   http://HOST:PORT/<endpoint_id>/<path>    Bearer <endpoint api key>
    health    http://HOST:PORT/v2/<endpoint_id>/health  worker counts, like RunPod's
    control   http://HOST:PORT/control/...              Bearer <runtime token>
    metrics   http://HOST:PORT/metrics                  Bearer <runtime token> (Prometheus text)

`podroute.runtime.listener` serves it.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import orjson
from quart import Quart, Response, request

from podroute.binding import read_body
from podroute.cost import load_price_file
from podroute.deploy.model import MARKER_LABEL
from podroute.runtime.gateway import Gateway
from podroute.runtime.observability import EndpointFacts, Observability, register_observability
from podroute.runtime.secret_routes import register_secret_routes
from podroute.runtime.service import ControlError, LocalRuntime
from podroute.runtime.settings import RuntimeSettings


def create_runtime_app(settings: RuntimeSettings | None = None) -> Quart:
    """The runtime's Quart app: RunPod-style health and the control API, behind the gateway.

    The gateway is `app.extensions["podroute_gateway"]` (add request observers there).
    """
    settings = settings or RuntimeSettings.from_env()
    runtime = LocalRuntime(settings)
    app = Quart("podroute.runtime")
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024 * 1024
    gateway = Gateway(
        app.asgi_app,
        runtime.state,
        runtime.pools,
        wait_limit_s=settings.wait_limit_s,
        execution_limit_s=settings.execution_limit_s,
    )
    app.asgi_app = gateway  # type: ignore[assignment]  # Quart's documented middleware hook
    app.extensions["podroute_runtime"] = runtime
    app.extensions["podroute_gateway"] = gateway
    gateway.observers.append(runtime.observe_request)
    app.before_serving(runtime.start)
    app.before_serving(gateway.start)
    app.after_serving(gateway.close)
    app.after_serving(runtime.stop)
    _register_control(app, runtime)
    _register_health(app, runtime)
    _register_observability(app, runtime)
    register_secret_routes(app, runtime.secrets)
    return app


def _register_observability(app: Quart, runtime: LocalRuntime) -> None:
    prices = load_price_file()

    def facts(endpoint_id: str) -> EndpointFacts:
        record = runtime.state.endpoints[endpoint_id]
        resource = runtime.state.builds[record.release.build]["resource"]
        return EndpointFacts(id=record.id, scaling=dict(record.scaling), resource=resource)

    async def authorized() -> Response | None:
        return _check_token(runtime)

    view = Observability(
        metrics=runtime.metrics,
        endpoint=facts,
        prices=lambda: prices,
        load=runtime.load,
        authorized=authorized,
        daily_budget_usd=runtime.settings.daily_budget_usd,
    )
    register_observability(app, view)


def _check_token(runtime: LocalRuntime) -> Response | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), runtime.token):
        return None
    return _json({"error": "unauthorized: send Authorization: Bearer <runtime token>"}, 401)


async def _payload() -> dict[str, Any]:
    raw = await request.get_data(as_text=False)
    try:
        payload = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise ControlError(400, "the body must be a JSON object") from None
    if not isinstance(payload, dict):
        raise ControlError(400, "the body must be a JSON object")
    return payload


def _register_control(app: Quart, runtime: LocalRuntime) -> None:
    @app.before_request
    async def authenticate() -> Response | None:
        if request.path.startswith("/control/"):
            return _check_token(runtime)
        return None

    @app.errorhandler(ControlError)
    async def control_error(error: ControlError) -> Response:
        return _json({"error": str(error)}, error.status)

    @app.get("/control/health")
    async def health() -> Response:
        return _json({"status": "ok", "endpoints": len(runtime.state.endpoints)})

    @app.put("/control/builds/<sha>")
    async def upload_build(sha: str) -> Response:
        data = await read_body(request)
        manifest = await asyncio.to_thread(runtime.store_build, sha, data)
        return _json({"build": sha, "manifest": manifest})

    @app.get("/control/endpoints")
    async def list_endpoints() -> Response:
        project = request.args.get("project")
        records = [
            r
            for r in runtime.state.endpoints.values()
            if project is None or r.labels.get(MARKER_LABEL) == project
        ]
        return _json({"endpoints": [runtime.describe(r) for r in records]})

    @app.post("/control/endpoints")
    async def create_endpoint() -> Response:
        record, key = runtime.create_endpoint(await _payload())
        return _json({**runtime.describe(record), "api_key": key}, 201)

    @app.get("/control/endpoints/<endpoint_id>")
    async def get_endpoint(endpoint_id: str) -> Response:
        return _json(runtime.describe(runtime.record(endpoint_id)))

    @app.patch("/control/endpoints/<endpoint_id>")
    async def update_endpoint(endpoint_id: str) -> Response:
        return _json(runtime.describe(runtime.update_endpoint(endpoint_id, await _payload())))

    @app.post("/control/endpoints/<endpoint_id>/rollback")
    async def rollback(endpoint_id: str) -> Response:
        number = (await _payload()).get("release")
        if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
            raise ControlError(422, "release must be a release number")
        return _json(runtime.describe(runtime.rollback(endpoint_id, number)))

    @app.get("/control/endpoints/<endpoint_id>/key")
    async def endpoint_key(endpoint_id: str) -> Response:
        return _json({"id": endpoint_id, "api_key": runtime.api_key(endpoint_id)})

    @app.delete("/control/endpoints/<endpoint_id>")
    async def delete_endpoint(endpoint_id: str) -> Response:
        await runtime.delete_endpoint(endpoint_id)
        return _json({"deleted": endpoint_id})


def _register_health(app: Quart, runtime: LocalRuntime) -> None:
    @app.get("/v2/<endpoint_id>/health")
    async def runpod_health(endpoint_id: str) -> Response:
        record = runtime.state.endpoints.get(endpoint_id)
        auth = request.headers.get("Authorization", "")
        if record is None or not record.accepts_key(auth.removeprefix("Bearer ").strip()):
            return _json({"error": "unauthorized"}, 401)
        return _json(runtime.worker_counts(endpoint_id))


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")
