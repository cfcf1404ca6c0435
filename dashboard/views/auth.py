"""Login, logout and the account page (change password, log out everywhere).

Sessions are server-side records (`dashboard.user_sessions`): logging out, changing the password
and "log out everywhere" delete them, so a copied cookie stops working at once. Failed logins are
throttled per (address, user) with growing delays (`dashboard.throttle`).
"""

from __future__ import annotations

import logging

from quart import Blueprint, Response, flash, redirect, render_template, request, session

from dashboard.context import current_user, state, transaction
from dashboard.models import USERNAME_MAX, utc_now
from dashboard.queries import add_audit_event, get_user_by_name
from dashboard.security import (
    PasswordPolicyError,
    check_password_policy,
    csrf_token,
    hash_password,
    needs_rehash,
    remote_addr,
    safe_next_path,
    session_token,
    start_session,
    verify_password,
)
from dashboard.throttle import ThrottlePolicy, login_wait_s, prune_login_attempts, record_login_attempt
from dashboard.user_sessions import (
    close_session,
    close_sessions,
    count_sessions,
    open_session,
    prune_sessions,
)

logger = logging.getLogger("dashboard.auth")
blueprint = Blueprint("auth", __name__)

MAX_PASSWORD_LENGTH = 1024


def _next_target() -> str:
    return safe_next_path(request.args.get("next", ""))


def _policy() -> ThrottlePolicy:
    settings = state().settings
    return ThrottlePolicy(settings.login_max_failures, settings.login_delay_s, settings.login_window_s)


@blueprint.get("/login")
async def login() -> str:
    """The login form (it also starts the session that carries the CSRF token)."""
    csrf_token()
    return await render_template("auth/login.html", error=None, username="", next=_next_target())


async def _login_failed(username: str, status: int, message: str, wait_s: int = 0) -> Response:
    body = await render_template("auth/login.html", error=message, username=username, next=_next_target())
    response = Response(body, status=status)
    if wait_s:
        response.headers["Retry-After"] = str(wait_s)
    return response


@blueprint.post("/login")
async def login_submit() -> Response:
    """Check the credentials; on success start a fresh session and go where the user was headed."""
    form = await request.form
    username = str(form.get("username", "")).strip()[:USERNAME_MAX]
    password = str(form.get("password", ""))[:MAX_PASSWORD_LENGTH]
    settings = state().settings
    address = remote_addr()
    async with transaction() as db:
        await prune_login_attempts(db, settings.login_window_s)
        wait_s = await login_wait_s(db, username, address, _policy())
        if wait_s:
            logger.warning("login throttled", extra={"username": username, "remote_addr": address})
            return await _login_failed(
                username, 429, f"too many failed attempts: wait {wait_s} s and try again", wait_s
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
        await prune_sessions(db)
        token = await open_session(db, user, address, settings.session_lifetime_s)
        await add_audit_event(db, user, "login", user)
    start_session(token)
    logger.info("login", extra={"username": user.username, "remote_addr": address})
    return redirect(_next_target(), 303)  # type: ignore[return-value]


@blueprint.post("/logout")
async def logout() -> Response:
    """End the session, on the server too (a copy of the cookie no longer works)."""
    token = session_token()
    if token:
        async with transaction() as db:
            await close_session(db, token)
    session.clear()
    return redirect("/login", 303)  # type: ignore[return-value]


async def _account_page(error: str = "", status: int = 200) -> Response:
    user = current_user()
    async with transaction() as db:
        mine = await count_sessions(db, user.id)
        everyone = await count_sessions(db)
    body = await render_template("auth/account.html", error=error, my_sessions=mine, all_sessions=everyone)
    return Response(body, status=status)


@blueprint.get("/account")
async def account() -> Response:
    """The signed-in user's page: change the password, log every session out."""
    return await _account_page()


@blueprint.post("/account/password")
async def change_password() -> Response:
    """Change the password; every other session of this user ends (this one stays)."""
    form = await request.form
    current = str(form.get("current_password", ""))[:MAX_PASSWORD_LENGTH]
    new = str(form.get("new_password", ""))[:MAX_PASSWORD_LENGTH]
    if new != str(form.get("repeat_password", ""))[:MAX_PASSWORD_LENGTH]:
        return await _account_page("the two new passwords differ: type the same one twice", 422)
    try:
        check_password_policy(new)
    except PasswordPolicyError as error:
        return await _account_page(f"the new password is refused: {error}", 422)
    user = current_user()
    async with transaction() as db:
        stored = await get_user_by_name(db, user.username)
        if stored is None or not verify_password(stored.password_hash, current):
            return await _account_page("the current password is wrong", 422)
        stored.password_hash = hash_password(new)
        ended = await close_sessions(db, stored.id, keep_token=session_token())
        await add_audit_event(db, stored, "change-password", stored, {"sessions_ended": [None, ended]})
    logger.info("password changed", extra={"username": user.username, "sessions_ended": ended})
    await flash(f"Password changed; {ended} other session(s) logged out.", "success")
    return redirect("/account", 303)  # type: ignore[return-value]


@blueprint.post("/account/logout-everywhere")
async def logout_everywhere() -> Response:
    """End every session of every user, this one included (they all log in again)."""
    user = current_user()
    async with transaction() as db:
        ended = await close_sessions(db)
        await add_audit_event(db, user, "logout-all", None, {"sessions_ended": [None, ended]})
    logger.warning("every session logged out", extra={"by": user.username, "sessions_ended": ended})
    session.clear()
    return redirect("/login", 303)  # type: ignore[return-value]
