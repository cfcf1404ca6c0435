"""`/openapi.json` and `/docs`: Swagger UI served by the app itself, from a pinned package.

The page references no external URL: Swagger UI's files come from the `swagger-ui-bundle-v2`
package and PodRoute's own initializer script, all under `/docs/static/`. The OpenAPI document is
generated, and the Swagger package looked up, on the first request that needs them, so a worker
that is never asked for its docs never pays for them at start-up.
"""

from __future__ import annotations

import html
from pathlib import Path

import orjson
from quart import Quart, Response, send_from_directory
from werkzeug.exceptions import NotFound

from podroute.state import PodRouteState

_OWN_STATIC = Path(__file__).parent / "static"
_SWAGGER_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - docs</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="/openapi.json"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/docs-init.js"></script>
</body>
</html>
"""


def register_docs(app: Quart, state: PodRouteState) -> None:
    """Add `/openapi.json`, `/docs` and `/docs/static/<file>` to the app."""

    async def openapi_json() -> Response:
        if state.openapi is None:
            from podroute.openapi import build_openapi

            state.openapi = build_openapi(state)
        return Response(orjson.dumps(state.openapi), content_type="application/json")

    async def docs_page() -> Response:
        page = _PAGE.format(title=html.escape(state.settings.title))
        return Response(page, content_type="text/html; charset=utf-8")

    async def docs_static(filename: str) -> Response:
        if filename == "docs-init.js":
            return await send_from_directory(_OWN_STATIC, filename)
        if filename not in _SWAGGER_FILES:
            raise NotFound()
        from swagger_ui_bundle import swagger_ui_path

        return await send_from_directory(Path(str(swagger_ui_path)), filename)

    app.add_url_rule("/openapi.json", "podroute_openapi", openapi_json, methods=["GET"])
    app.add_url_rule("/docs", "podroute_docs", docs_page, methods=["GET"])
    app.add_url_rule("/docs/static/<filename>", "podroute_docs_static", docs_static, methods=["GET"])
