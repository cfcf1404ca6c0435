"""Passwords (argon2), sessions, CSRF tokens, the login guard and security headers."""

from __future__ import annotations

import hmac
import secrets
import unicodedata
from typing import Any
from urllib.parse import unquote, urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from quart import Quart, Response, current_app, g, request, session

SESSION_TOKEN_KEY = "sid"  # noqa: S105 - a field name, not a secret
"""The cookie field holding the session token (its record is in `user_sessions`)."""
DEFAULT_NEXT = "/endpoints"
"""Where a login goes when `next` is missing or not a path on this site."""
CSRF_SESSION_KEY = "csrf"
CSRF_FORM_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_ENDPOINTS = frozenset(
    {"auth.login", "auth.login_submit", "static", "assets.vendor", "assets.favicon", "health"}
)
"""Views that answer without a session (the login page itself, static files and health)."""

MIN_PASSWORD_LENGTH = 8

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
"""Headers on every response."""

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class PasswordPolicyError(ValueError):
    """A password is too weak to accept; the message says what is required."""


def check_password_policy(password: str) -> None:
    """Raise `PasswordPolicyError` unless the password is long enough."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    """An argon2id hash of the password (with its own salt and parameters)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; with no hash, spends the same time and returns False."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash used older argon2 parameters than the current ones."""
    return _hasher.check_needs_rehash(password_hash)


def csrf_token() -> str:
    """This session's CSRF token (made on first use); forms and htmx send it back."""
    token = session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session[CSRF_SESSION_KEY] = token
    return token


def start_session(token: str) -> None:
    """Replace the cookie session after login: the new session's token, a new CSRF token, nothing
    from before."""
    session.clear()
    session.permanent = True
    session[SESSION_TOKEN_KEY] = token
    csrf_token()


def session_token() -> str:
    """The session token the cookie carries, or ''."""
    token = session.get(SESSION_TOKEN_KEY)
    return token if isinstance(token, str) and 0 < len(token) <= 128 else ""


def _is_plain_path(text: str) -> bool:
    if not text.startswith("/") or text.startswith("//") or "\\" in text:
        return False
    if any(unicodedata.category(ch).startswith(("C", "Z")) for ch in text):
        return False  # control, format and separator characters (TAB, CR, LF, NBSP, ...)
    parts = urlsplit(text)
    return not parts.scheme and not parts.netloc


def safe_next_path(target: str) -> str:
    """`target` when it is a printable ASCII path on this site, else the endpoint list.

    Checked as given and after percent-decoding (repeatedly), so `/%2F%2Fevil`, `/%09/evil`,
    `/%5Cevil` and CR/LF tricks are all refused: no `//`, backslash, scheme, host or control
    character, encoded or not.
    """
    if not target or len(target) > 2000 or not target.isascii():
        return DEFAULT_NEXT
    decoded = target
    for _ in range(4):
        if not _is_plain_path(decoded):
            return DEFAULT_NEXT
        once = unquote(decoded)
        if once == decoded:
            return target
        decoded = once
    return DEFAULT_NEXT


async def _posted_csrf_token() -> str:
    header = request.headers.get(CSRF_HEADER, "")
    if header:
        return header
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form
        return str(form.get(CSRF_FORM_FIELD, ""))
    return ""


async def csrf_is_valid() -> bool:
    """True when the request carries this session's CSRF token (header or form field)."""
    expected = session.get(CSRF_SESSION_KEY)
    sent = await _posted_csrf_token()
    return isinstance(expected, str) and bool(sent) and hmac.compare_digest(expected, sent)


def add_security_headers(response: Response) -> Response:
    """Set CSP, nosniff, referrer, frame and cache headers on a response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint not in ("static", "assets.vendor", "assets.favicon"):
        response.headers["Cache-Control"] = "no-store"
    return response


def configure_sessions(app: Quart, *, secret_key: str, secure: bool, lifetime_s: int) -> None:
    """Signed cookie sessions: HttpOnly, SameSite=Lax, Secure outside development."""
    app.secret_key = secret_key
    app.config.update(
        SESSION_COOKIE_NAME="podroute_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=lifetime_s,
    )


def current_username() -> str | None:
    """The logged-in user's name for templates, or None."""
    user: Any = g.get("user")
    return str(user.username) if user is not None else None


def remote_addr() -> str:
    """The client address as the server saw it (no proxy headers are trusted)."""
    return (request.remote_addr or "unknown")[:64]


def is_public_request() -> bool:
    """True for views that need no session."""
    return request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None


def app_settings() -> Any:
    """The running app's settings (typed in `dashboard.context`)."""
    return current_app.extensions["dashboard"].settings
