"""The dashboard app factory: `create_app(settings)` returns a Quart app ready for Hypercorn."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import quote

from quart import Quart, Response, g, redirect, render_template, request, session
from werkzeug.exceptions import HTTPException

from dashboard import PACKAGE_DIR, htmx
from dashboard.assets import htmx_asset
from dashboard.context import DashboardState, state, transaction
from dashboard.db import Sessions, create_engine, create_sessions, prepare_data_dir, require_current_schema
from dashboard.discovery import DiscoveryCache
from dashboard.models import as_utc
from dashboard.queries import add_audit_event, add_user, count_users
from dashboard.secrets_at_rest import install_key_ring
from dashboard.security import (
    PasswordPolicyError,
    add_security_headers,
    check_password_policy,
    configure_sessions,
    csrf_is_valid,
    csrf_token,
    hash_password,
    is_public_request,
    safe_next_path,
    session_token,
)
from dashboard.settings import DashboardSettings
from dashboard.user_sessions import find_session_user
from dashboard.views import register_blueprints
from dashboard.worker.celery_app import create_celery

logger = logging.getLogger("dashboard")

MAX_REQUEST_BYTES = 1024 * 1024


async def ensure_first_user(sessions: Sessions, settings: DashboardSettings) -> None:
    """Create the admin user from `DASHBOARD_ADMIN_PASSWORD` when the database has no user yet."""
    async with sessions.begin() as session:
        if await count_users(session):
            return
        if not settings.admin_password:
            logger.warning(
                "no users yet: set DASHBOARD_ADMIN_PASSWORD or run `python -m dashboard create-user NAME`"
            )
            return
        try:
            check_password_policy(settings.admin_password)
        except PasswordPolicyError as error:
            logger.error("DASHBOARD_ADMIN_PASSWORD refused: %s; no user created", error)
            return
        user = await add_user(session, settings.admin_user, hash_password(settings.admin_password))
        await add_audit_event(session, None, "create-user", user)
        logger.info("created the first user", extra={"username": settings.admin_user})


def _register_lifecycle(app: Quart, dashboard: DashboardState) -> None:
    @app.before_serving
    async def open_database() -> None:
        prepare_data_dir(dashboard.settings)
        engine = create_engine(dashboard.settings.url)
        try:
            await require_current_schema(engine)
        except Exception:
            await engine.dispose()
            raise
        dashboard.engine, dashboard.sessions = engine, create_sessions(engine)
        await ensure_first_user(dashboard.sessions, dashboard.settings)

    @app.after_serving
    async def close_database() -> None:
        if dashboard.engine is not None:
            await dashboard.engine.dispose()
            dashboard.engine = dashboard.sessions = None


def _login_redirect() -> Response:
    if htmx.is_htmx():
        response = Response("", status=401)
        response.headers["HX-Redirect"] = "/login"
        return response
    path = request.full_path.rstrip("?")
    return redirect(f"/login?next={quote(safe_next_path(path), safe='/')}", 303)  # type: ignore[return-value]


def _register_guards(app: Quart) -> None:
    @app.before_request
    async def require_login() -> Response | None:
        g.user = None
        token = session_token()
        if token and state().sessions is not None:
            async with transaction() as db:
                g.user = await find_session_user(db, token)
            if g.user is None:
                session.clear()  # ended, expired or unknown: the cookie opens nothing any more
        if g.user is None and not is_public_request():
            if request.method in ("GET", "HEAD"):
                return _login_redirect()
            return await _error_response(
                401, "you are not logged in (or your session expired): log in and try again"
            )
        return None

    @app.before_request
    async def require_csrf() -> Response | None:
        if request.method in ("GET", "HEAD", "OPTIONS") or request.routing_exception is not None:
            return None  # safe methods change nothing; unroutable requests get their 404/405
        if not await csrf_is_valid():
            logger.warning("CSRF check failed", extra={"path": request.path, "method": request.method})
            return await _error_response(
                403, "the form's security token is missing or out of date: reload the page and submit again"
            )
        return None

    @app.after_request
    async def secure_headers(response: Response) -> Response:
        return add_security_headers(response)


async def _error_response(status: int, message: str) -> Response:
    if htmx.is_htmx():
        body = await render_template("_message.html", kind="error", message=message)
        response = Response(body, status=status)
        response.headers["HX-Retarget"] = htmx.error_target()
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    body = await render_template("error.html", status=status, message=message)
    return Response(body, status=status)


_MESSAGES = {
    400: "the request was not understood: check the fields and try again",
    404: "there is nothing at this address",
    405: "this address does not accept that method",
    413: "the request is too large (the limit is 1 MB)",
    429: "too many attempts: wait a few minutes and try again",
}


def _register_errors(app: Quart) -> None:
    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        if isinstance(error, htmx.GoneError) and htmx.is_partial() and request.method == "GET":
            gone = f"{error.description}: go back to the endpoint list"
            body = await render_template("_message.html", kind="error", message=gone)
            return Response(body, status=htmx.STOP_POLLING)
        status = error.code or 500
        message = _MESSAGES.get(status, error.description or "the request failed")
        if (
            error.description
            and status in (400, 404, 409, 429)
            and error.description != type(error).description
        ):
            message = error.description
        response = await _error_response(status, message)
        if status == 405 and isinstance(error, HTTPException):
            response.headers.update(error.get_headers())
        return response

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        logger.error(
            "unhandled error", exc_info=error, extra={"path": request.path, "method": request.method}
        )
        return await _error_response(500, "something went wrong on the server; the details are in its log")


def _format_time(moment: datetime | None) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def _register_templates(app: Quart, dashboard: DashboardState) -> None:
    app.jinja_env.filters["time"] = _format_time
    app.jinja_env.filters["pretty_json"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
    app.jinja_env.globals.update(
        csrf_token=csrf_token,
        htmx_config=htmx.HTMX_CONFIG_JSON,
        htmx_file=dashboard.assets["htmx"].url_name,
    )

    @app.context_processor
    async def user_context() -> dict[str, Any]:
        return {"user": g.get("user")}


def create_app(settings: DashboardSettings | None = None) -> Quart:
    """Build the dashboard app. The database opens when serving starts (and is checked to be at
    the newest migration); `settings` defaults to `DashboardSettings.from_env()`."""
    settings = settings or DashboardSettings.from_env()
    settings.check_secret_key()
    install_key_ring(*settings.encryption_secrets)
    app = Quart(
        "dashboard",
        root_path=str(PACKAGE_DIR),
        template_folder="templates",
        static_folder="static",
    )
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES,
        MAX_FORM_PARTS=2000,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    configure_sessions(
        app,
        secret_key=settings.signing_key,
        secure=settings.cookies_secure,
        lifetime_s=settings.session_lifetime_s,
    )
    dashboard = DashboardState(
        settings=settings,
        discovery=DiscoveryCache(
            settings.project_dir.resolve(), settings.discovery_timeout_s, settings.data_dir / "cache"
        ),
        assets={"htmx": htmx_asset()},
    )
    dashboard.celery = create_celery(settings)
    app.extensions["dashboard"] = dashboard
    htmx.init_app(app)
    _register_lifecycle(app, dashboard)
    _register_guards(app)
    _register_errors(app)
    _register_templates(app, dashboard)
    register_blueprints(app)
    return app
