"""`python -m dashboard` as a user runs it: migrate, check, create-user, serve (real Hypercorn)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dashboard.db import head_revisions

ROOT = Path(__file__).resolve().parents[3]
ADMIN_PASSWORD = "first-admin-password"


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_") and k != "DATABASE_URL"}
    env.update(DASHBOARD_DATA_DIR=str(data_dir), LOG_LEVEL="INFO", **extra)
    return env


def dashboard(data_dir: Path, *args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dashboard", *args],
        cwd=ROOT,
        env=environment(data_dir, **extra),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_then_migrate_then_check(tmp_path):
    behind = dashboard(tmp_path, "check")
    assert behind.returncode == 1
    assert "run `python -m dashboard migrate`" in behind.stderr
    assert dashboard(tmp_path, "migrate").returncode == 0
    assert (tmp_path / "dashboard.sqlite3").is_file()
    ok = dashboard(tmp_path, "check")
    assert ok.returncode == 0 and f"newest migration {head_revisions()[0]}" in ok.stdout


def test_create_user_and_its_refusals(tmp_path):
    assert dashboard(tmp_path, "migrate").returncode == 0
    created = dashboard(tmp_path, "create-user", "bob", "--password-stdin", stdin="a long enough password\n")
    assert created.returncode == 0, created.stderr
    duplicate = dashboard(tmp_path, "create-user", "bob", "--password-stdin", stdin="another password\n")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    short = dashboard(tmp_path, "create-user", "carol", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr


def test_create_user_needs_a_migrated_database(tmp_path):
    result = dashboard(tmp_path, "create-user", "bob", "--password-stdin", stdin="a long enough password\n")
    assert result.returncode != 0
    assert "python -m dashboard migrate" in result.stderr


def test_serve_refuses_production_without_a_secret(tmp_path):
    assert dashboard(tmp_path, "migrate").returncode == 0
    result = dashboard(tmp_path, "serve", DASHBOARD_ENV="production")
    assert result.returncode == 1
    assert "DASHBOARD_SECRET_KEY is not set" in result.stderr


def test_serve_refuses_a_known_default_secret(tmp_path):
    assert dashboard(tmp_path, "migrate").returncode == 0
    result = dashboard(tmp_path, "serve", DASHBOARD_ENV="production", DASHBOARD_SECRET_KEY="changeme")
    assert result.returncode == 1 and "well-known default" in result.stderr


def test_serve_refuses_a_database_behind_head(tmp_path):
    result = dashboard(tmp_path, "serve", DASHBOARD_ENV="development", DASHBOARD_PORT="0")
    assert result.returncode == 1
    assert "run `python -m dashboard migrate`" in result.stderr


def test_bad_settings_exit_2_with_the_reason(tmp_path):
    result = dashboard(tmp_path, "check", DASHBOARD_PORT="eighty")
    assert result.returncode == 2 and "DASHBOARD_PORT='eighty' is not a whole number" in result.stderr


def test_serve_creates_the_first_user_and_logs_json_without_secrets(tmp_path):
    assert dashboard(tmp_path, "migrate").returncode == 0
    env = environment(
        tmp_path,
        DASHBOARD_ENV="development",
        DASHBOARD_PORT="0",
        DASHBOARD_HOST="127.0.0.1",
        DASHBOARD_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    try:
        url = _wait_for_url(process, lines)
        with urllib.request.urlopen(f"{url}/login", timeout=10) as response:
            assert response.status == 200
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    finally:
        process.terminate()
        _, rest = process.communicate(timeout=20)
        lines.extend(rest.splitlines())
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(r["msg"] == "created the first user" and r["username"] == "admin" for r in records)
    assert ADMIN_PASSWORD not in "\n".join(lines)
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)


def _wait_for_url(process: subprocess.Popen[str], lines: list[str]) -> str:
    deadline = time.monotonic() + 30
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            pytest.fail(f"the dashboard exited: {''.join(lines)}")
        lines.append(line)
        found = re.search(r"Running on (http://[\d.]+:\d+)", line)
        if found:
            return found.group(1)
    pytest.fail("the dashboard did not start within 30 s")
