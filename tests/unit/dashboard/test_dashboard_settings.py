"""DashboardSettings: defaults, environment parsing, the production secret rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard import REPO_ROOT
from dashboard.settings import DEV_SECRET_KEY, DashboardSettings, SettingsError, async_database_url

GOOD_SECRET = "a" * 40


def test_defaults_follow_the_design():
    settings = DashboardSettings.from_env({})
    assert (settings.host, settings.port, settings.environment) == ("localhost", 8080, "production")
    assert settings.data_dir == REPO_ROOT / ".podroute"
    assert settings.url == f"sqlite:///{REPO_ROOT / '.podroute' / 'dashboard.sqlite3'}"
    assert settings.try_it_base_url == "http://localhost:8888/{service}"
    assert settings.cookies_secure is True


def test_environment_overrides(tmp_path: Path):
    settings = DashboardSettings.from_env(
        {
            "DASHBOARD_HOST": "0.0.0.0",
            "DASHBOARD_PORT": "9000",
            "DASHBOARD_DATA_DIR": str(tmp_path),
            "DASHBOARD_ENV": "Development",
            "DASHBOARD_TRY_IT_HOSTS": "api.runpod.ai, Example.com",
            "LOG_LEVEL": "debug",
            "DASHBOARD_SECURE_COOKIES": "yes",
        }
    )
    assert (settings.host, settings.port, settings.log_level) == ("0.0.0.0", 9000, "DEBUG")
    assert settings.url == f"sqlite:///{tmp_path / 'dashboard.sqlite3'}"
    assert settings.try_it_hosts == ("api.runpod.ai", "example.com")
    assert settings.is_development and settings.cookies_secure


def test_database_url_wins_and_gets_an_async_driver():
    settings = DashboardSettings.from_env({"DATABASE_URL": "postgresql://u:p@db:5432/dash"})
    assert settings.url == "postgresql://u:p@db:5432/dash"
    assert settings.async_url == "postgresql+asyncpg://u:p@db:5432/dash"
    assert not settings.uses_default_sqlite
    assert "u:p" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgres://h/db", "postgresql+asyncpg://h/db"),
        ("postgresql+asyncpg://h/db", "postgresql+asyncpg://h/db"),
        ("mysql+aiomysql://h/db", "mysql+aiomysql://h/db"),
    ],
)
def test_async_database_url(url, expected):
    assert async_database_url(url) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DASHBOARD_PORT": "http"}, "is not a whole number"),
        ({"DASHBOARD_PORT": "70000"}, "between 0 and 65535"),
        ({"DASHBOARD_ENV": "staging"}, "must be 'development' or 'production'"),
        ({"LOG_LEVEL": "LOUD"}, "is not one of"),
        ({"DASHBOARD_SECURE_COOKIES": "maybe"}, "must be 1/true/yes/on"),
    ],
)
def test_bad_values_name_the_variable(environ, message):
    with pytest.raises(SettingsError, match=message):
        DashboardSettings.from_env(environ)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "is not set"),
        ("changeme", "well-known default"),
        (DEV_SECRET_KEY, "well-known default"),
        ("short", "shorter"),
    ],
)
def test_production_refuses_missing_default_or_short_secrets(secret, message):
    settings = DashboardSettings(secret_key=secret)
    with pytest.raises(SettingsError, match=message):
        settings.check_secret_key()


def test_production_accepts_a_long_secret_and_development_needs_none():
    DashboardSettings(secret_key=GOOD_SECRET).check_secret_key()
    development = DashboardSettings(environment="development")
    development.check_secret_key()
    assert development.signing_key == DEV_SECRET_KEY
    assert GOOD_SECRET not in repr(DashboardSettings(secret_key=GOOD_SECRET, admin_password="pw-pw-pw-pw"))
