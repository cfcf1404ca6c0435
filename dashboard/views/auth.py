"""Login and logout. Failed logins are counted per user and address and rate limited."""

from __future__ import annotations

import logging
from datetime import timedelta

from quart import Blueprint, Response, redirect, render_template, request, session

from dashboard.app import state, transaction
from dashboard.models import USERNAME_MAX, utc_now
from dashboard.queries import (
    add_audit_event,
    count_login_failures,
    get_user_by_name,
    prune_login_attempts,
    record_login_attempt,
)
from dashboard.security import (
    csrf_token,
    hash_password,
    needs_rehash,
    remote_addr,
    start_session,
    verify_password,
)

logger = logging.getLogger("dashboard.auth")
blueprint = Blueprint("auth", __name__)

MAX_PASSWORD_LENGTH = 1024


def _next_target() -> str:
    target = request.args.get("next", "")
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/endpoints"


@blueprint.get("/login")
async def login() -> str:
    """The login form (it also starts the session that carries the CSRF token)."""
    csrf_token()
    return await render_template("auth/login.html", error=None, username="", next=_next_target())


async def _login_failed(username: str, status: int, message: str) -> Response:
    body = await render_template("auth/login.html", error=message, username=username, next=_next_target())
    response = Response(body, status=status)
    if status == 429:
        response.headers["Retry-After"] = str(state().settings.login_window_s)
    return response


@blueprint.post("/login")
async def login_submit() -> Response:
    """Check the credentials; on success start a fresh session and go where the user was headed."""
    form = await request.form
    username = str(form.get("username", "")).strip()[:USERNAME_MAX]
    password = str(form.get("password", ""))[:MAX_PASSWORD_LENGTH]
    settings = state().settings
    window = timedelta(seconds=settings.login_window_s)
    address = remote_addr()
    async with transaction() as db:
        await prune_login_attempts(db, window)
        failures = await count_login_failures(db, username, address, utc_now() - window)
        if failures >= settings.login_max_failures:
            logger.warning("login rate limited", extra={"username": username, "remote_addr": address})
            return await _login_failed(
                username, 429, "too many failed attempts: wait a few minutes and try again"
            )
        user = await get_user_by_name(db, username) if username else None
        ok = (
            verify_password(user.password_hash if user else None, password)
            and user is not None
            and user.is_active
        )
        await record_login_attempt(db, username, address, ok)
        if not ok or user is None:
            logger.info("login failed", extra={"username": username, "remote_addr": address})
            return await _login_failed(username, 401, "wrong username or password")
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        user.last_login_at = utc_now()
        await add_audit_event(db, user, "login", user)
    start_session(user.id, user.username)
    logger.info("login", extra={"username": user.username, "remote_addr": address})
    return redirect(_next_target(), 303)  # type: ignore[return-value]


@blueprint.post("/logout")
async def logout() -> Response:
    """End the session."""
    session.clear()
    return redirect("/login", 303)  # type: ignore[return-value]
