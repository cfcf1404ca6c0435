"""Passwords, the try-it target rules, structured logs and the htmx configuration."""

from __future__ import annotations

import io
import json
import logging

import pytest

from dashboard.htmx import HTMX_CONFIG
from dashboard.security import (
    PasswordPolicyError,
    check_password_policy,
    hash_password,
    needs_rehash,
    verify_password,
)
from dashboard.tryit import AllowedTargets, TryItError, build_url, check_base_url
from podroute.logs import configure_logging


def test_argon2_hashes_verify_and_are_salted():
    first, second = hash_password("a good password"), hash_password("a good password")
    assert first.startswith("$argon2id$") and first != second
    assert verify_password(first, "a good password")
    assert not verify_password(first, "a bad password")
    assert not verify_password(None, "anything") and not verify_password("not-a-hash", "x")
    assert not needs_rehash(first)


def test_password_policy():
    check_password_policy("eight ch")
    with pytest.raises(PasswordPolicyError, match="at least 8"):
        check_password_policy("seven c")


DEV = AllowedTargets.of(
    ["http://localhost:8888/{service}", "https://[::1]:8443/gw", "http://gw.example:8800/v1"],
    refused=["http://localhost:8080"],
)


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8888/cpu", "http://127.0.0.1:8888", "https://[::1]:8443", "http://gw.example:8800/x"],
)
def test_configured_origins_are_allowed_under_any_loopback_name(url):
    assert check_base_url(url + "/", DEV) == url


@pytest.mark.parametrize(
    ("url", "allowed", "message"),
    [
        ("http://localhost:8889", DEV, "not allowed"),  # another loopback port
        ("http://127.0.0.1:8080", DEV, "never the dashboard itself"),
        ("http://x.localhost", DEV, "not allowed"),
        ("http://169.254.169.254/latest", DEV, "not allowed"),
        ("http://10.0.0.1", DEV, "not allowed"),
        ("http://localhost:99999", DEV, "valid port"),
        ("file:///etc/passwd", DEV, "must start with http"),
        ("javascript:alert(1)", DEV, "must start with http"),
        ("http://a:b@localhost:8888", DEV, "bearer token"),
        ("http://localhost:8080", AllowedTargets.of([], ["*"], ["http://127.0.0.1:8080"]), "not allowed"),
    ],
)
def test_other_targets_are_refused(url, allowed, message):
    with pytest.raises(TryItError, match=message):
        check_base_url(url, allowed)


def test_listed_hosts_and_wildcard():
    listed = AllowedTargets.of([], ["api.runpod.ai"])
    assert check_base_url("https://api.runpod.ai/v2/x", listed) == "https://api.runpod.ai/v2/x"
    assert (
        check_base_url("https://anything.example", AllowedTargets.of([], ["*"])) == "https://anything.example"
    )


def test_build_url_keeps_the_query_apart():
    assert build_url("http://h", "/items/3", "?verbose=true") == "http://h/items/3?verbose=true"
    for bad in ("items", "//evil.example/x", "/a?b=1", "/a b"):
        with pytest.raises(TryItError):
            build_url("http://h", bad, "")


def test_logs_are_json_and_mask_secret_looking_fields():
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        logger = logging.getLogger("dashboard.test")
        logger.info("hello", extra={"endpoint": "api", "password": "pw", "api_token": "tk"})
        logger.debug("hidden at INFO")
    finally:
        configure_logging("WARNING")
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["msg"] == "hello" and record["level"] == "INFO" and record["endpoint"] == "api"
    assert record["password"] == "***" and record["api_token"] == "***"


def test_htmx_runs_without_eval_or_inline_styles():
    assert HTMX_CONFIG["allowEval"] is False and HTMX_CONFIG["includeIndicatorStyles"] is False
    assert HTMX_CONFIG["historyCacheSize"] == 0 and HTMX_CONFIG["selfRequestsOnly"] is True
