"""`python -m dashboard [serve|migrate|check|create-user]`: run and administer the dashboard."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Sequence

from alembic import command
from sqlalchemy.exc import IntegrityError

from dashboard.db import (
    DatabaseBehindError,
    alembic_config,
    create_engine,
    create_sessions,
    prepare_data_dir,
    require_current_schema,
    schema_status,
)
from dashboard.logs import configure_logging
from dashboard.queries import add_audit_event, add_user
from dashboard.security import PasswordPolicyError, check_password_policy, hash_password
from dashboard.settings import DashboardSettings, SettingsError

logger = logging.getLogger("dashboard.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dashboard", description="The PodRoute dashboard.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the dashboard with Hypercorn (the default command)")
    migrate = commands.add_parser("migrate", help="bring the database to the newest schema (alembic upgrade)")
    migrate.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    commands.add_parser("check", help="say whether the database is at the newest schema (exit 1 if not)")
    create = commands.add_parser("create-user", help="create a user who can log in")
    create.add_argument("username")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of a prompt",
    )
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat the password: ") != first:
        raise PasswordPolicyError("the two passwords differ")
    return first


async def _create_user(settings: DashboardSettings, username: str, password: str) -> None:
    engine = create_engine(settings.url)
    try:
        await require_current_schema(engine)
        async with create_sessions(engine).begin() as session:
            user = await add_user(session, username, hash_password(password))
            await add_audit_event(session, None, "create-user", user)
    finally:
        await engine.dispose()


def create_user(settings: DashboardSettings, username: str, from_stdin: bool) -> int:
    """Create a user; 0 on success, 1 with a message when the name or password is refused."""
    username = username.strip()
    if not username or len(username) > 64:
        print("error: a username has 1 to 64 characters", file=sys.stderr)
        return 1
    try:
        password = _read_password(from_stdin)
        check_password_policy(password)
        asyncio.run(_create_user(settings, username, password))
    except (PasswordPolicyError, DatabaseBehindError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except IntegrityError:
        print(f"error: a user named {username!r} already exists", file=sys.stderr)
        return 1
    print(f"created user {username!r}")
    return 0


def migrate(settings: DashboardSettings, revision: str) -> int:
    """Run `alembic upgrade REVISION` against the configured database."""
    prepare_data_dir(settings)
    command.upgrade(alembic_config(settings.url), revision)
    print(f"database migrated to {revision}")
    return 0


async def _status(settings: DashboardSettings) -> str:
    engine = create_engine(settings.url)
    try:
        status = await schema_status(engine)
    finally:
        await engine.dispose()
    if not status.up_to_date:
        raise DatabaseBehindError(f"{status.describe()}: run `python -m dashboard migrate`")
    return status.describe()


def check(settings: DashboardSettings) -> int:
    """Print the schema status; 1 when the database is behind."""
    prepare_data_dir(settings)
    try:
        print(asyncio.run(_status(settings)))
    except DatabaseBehindError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def serve(settings: DashboardSettings) -> int:
    """Check the schema, then serve the app with Hypercorn until SIGINT/SIGTERM."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from dashboard.app import create_app

    prepare_data_dir(settings)
    try:
        asyncio.run(_status(settings))
        app = create_app(settings)
    except (DatabaseBehindError, SettingsError, RuntimeError) as error:
        logger.error("the dashboard cannot start: %s", error)
        print(f"error: {error}", file=sys.stderr)
        return 1
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    logger.info("starting the dashboard", extra={"bind": config.bind, "settings": repr(settings)})
    asyncio.run(hypercorn_serve(app, config))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m dashboard`."""
    args = _parser().parse_args(argv)
    try:
        settings = DashboardSettings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    name = args.command or "serve"
    if name == "migrate":
        return migrate(settings, args.revision)
    if name == "check":
        return check(settings)
    if name == "create-user":
        return create_user(settings, args.username, args.password_stdin)
    return serve(settings)
