"""Sessions, login, rate limiting, CSRF and security headers, through the test app with lifespan."""

from __future__ import annotations

import math

import pytest

from dashboard.security import CONTENT_SECURITY_POLICY

PAGES = [
    "/endpoints",
    "/endpoints/new",
    "/endpoints/1",
    "/endpoints/1/edit",
    "/import",
    "/audit",
    "/endpoints/env-row",
]
PASSWORD = "correct horse battery"


@pytest.mark.parametrize("path", PAGES)
async def test_pages_redirect_to_login_without_a_session(anonymous, path):
    response = await anonymous.get(path)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/login?next={path}"


async def test_htmx_request_without_a_session_gets_401_and_hx_redirect(anonymous):
    response = await anonymous.get("/endpoints", **{"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login"


@pytest.mark.parametrize(
    "path", ["/endpoints", "/endpoints/1", "/endpoints/1/delete", "/import", "/endpoints/1/try"]
)
async def test_posts_without_a_session_are_refused_with_401(anonymous, endpoint_form, path):
    await anonymous.refresh_csrf("/login")  # a valid token does not replace a session
    response = await anonymous.post(path, endpoint_form(confirm="yes"))
    assert response.status_code == 401
    assert "not logged in" in await response.get_data(as_text=True)


async def test_login_page_is_public_and_carries_security_headers(anonymous):
    response = await anonymous.get("/login")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "HX-Request" in response.headers["Vary"]


async def test_login_sets_a_signed_httponly_samesite_cookie_and_goes_to_next(
    anonymous, settings, add_test_user
):
    await add_test_user(settings)
    await anonymous.refresh_csrf("/login")
    response = await anonymous.post("/login?next=/audit", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/audit"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and cookie.startswith("podroute_session=")
    assert PASSWORD not in cookie
    assert (await anonymous.get("/audit")).status_code == 200


async def test_login_never_redirects_off_site(anonymous, settings, add_test_user):
    await add_test_user(settings)
    await anonymous.refresh_csrf("/login")
    response = await anonymous.post(
        "/login?next=//evil.example/x", {"username": "alice", "password": PASSWORD}
    )
    assert response.headers["Location"] == "/endpoints"


async def test_login_rotates_the_csrf_token(anonymous, settings, add_test_user):
    await add_test_user(settings)
    before = await anonymous.refresh_csrf("/login")
    await anonymous.login()
    assert anonymous.csrf != before


async def test_login_without_csrf_token_is_refused(anonymous, settings, add_test_user):
    await add_test_user(settings)
    await anonymous.refresh_csrf("/login")
    response = await anonymous.post("/login", {"username": "alice", "password": PASSWORD}, csrf=False)
    assert response.status_code == 403
    assert "security token" in await response.get_data(as_text=True)
    assert (await anonymous.get("/endpoints")).status_code == 303


async def test_wrong_password_is_401_and_does_not_log_in(anonymous, settings, add_test_user):
    await add_test_user(settings)
    response = await anonymous.login(password="wrong password!")
    assert response.status_code == 401
    assert "wrong username or password" in await response.get_data(as_text=True)
    assert (await anonymous.get("/endpoints")).status_code == 303


async def test_unknown_user_gets_the_same_answer_as_a_wrong_password(anonymous):
    response = await anonymous.login(username="nobody")
    assert response.status_code == 401
    assert "wrong username or password" in await response.get_data(as_text=True)


async def test_login_attempts_are_rate_limited(anonymous, settings, add_test_user):
    await add_test_user(settings)
    for _ in range(settings.login_max_failures):
        assert (await anonymous.login(password="not the password")).status_code == 401
    limited = await anonymous.login()  # even the right password waits out the delay, from this address
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == str(math.ceil(settings.login_delay_s))
    assert (await anonymous.get("/endpoints")).status_code == 303


async def test_logout_ends_the_session(web):
    response = await web.post("/logout")
    assert response.status_code == 303
    assert (await web.get("/endpoints")).status_code == 303


async def test_logout_needs_csrf(web):
    response = await web.post("/logout", csrf=False)
    assert response.status_code == 403
    assert (await web.get("/endpoints")).status_code == 200


async def test_a_forged_cookie_is_not_a_session(anonymous):
    anonymous.client.set_cookie("localhost", "podroute_session", "eyJ1c2VyX2lkIjoxfQ.forged.signature")
    assert (await anonymous.get("/endpoints")).status_code == 303


async def test_static_files_and_htmx_are_public(anonymous, app):
    htmx_file = app.app.extensions["dashboard"].assets["htmx"].url_name
    script = await anonymous.get(f"/static/vendor/{htmx_file}")
    assert script.status_code == 200
    assert "htmx" in (await script.get_data(as_text=True))[:2000]
    assert (await anonymous.get("/static/style.css")).status_code == 200
    assert (await anonymous.get("/static/vendor/other.js")).status_code == 404
