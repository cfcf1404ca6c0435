"""The dashboard's blueprints: auth, endpoints, deployments, metrics, import from code, audit log,
orphans, assets."""

from __future__ import annotations

from quart import Quart, Response, redirect, send_file, send_from_directory
from werkzeug.exceptions import NotFound

from dashboard.views import (
    audit,
    auth,
    builds,
    deployments,
    endpoints,
    imports,
    logstream,
    metrics,
    orphans,
    scaling,
)
from dashboard.views.badges import status_badge, status_label


def register_blueprints(app: Quart) -> None:
    """Attach every blueprint, the vendored-asset route, `/favicon.ico`, `/` and `/healthz`, and the
    templates' status badge helpers."""
    app.jinja_env.globals.update(status_badge=status_badge, status_label=status_label)
    for module in (
        auth,
        endpoints,
        builds,
        deployments,
        scaling,
        metrics,
        logstream,
        imports,
        audit,
        orphans,
    ):
        app.register_blueprint(module.blueprint)

    async def vendor(filename: str) -> Response:
        for asset in app.extensions["dashboard"].assets.values():
            if asset.url_name == filename:
                return await send_file(asset.path, mimetype="text/javascript", cache_timeout=31536000)
        raise NotFound()

    async def favicon() -> Response:
        return await send_from_directory(app.static_folder or "static", "favicon.ico")

    async def index() -> Response:
        return redirect("/endpoints", 303)  # type: ignore[return-value]

    async def health() -> Response:
        return Response("ok", mimetype="text/plain")

    app.add_url_rule("/static/vendor/<filename>", "assets.vendor", vendor, methods=["GET"])
    app.add_url_rule("/favicon.ico", "assets.favicon", favicon, methods=["GET"])
    app.add_url_rule("/", "index", index, methods=["GET"])
    app.add_url_rule("/healthz", "health", health, methods=["GET"])
