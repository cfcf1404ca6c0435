"""`python -m dashboard [serve|migrate|check|create-user|logout-all|clear-throttles|reencrypt]`:
run and administer the dashboard."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from alembic import command
from sqlalchemy import Table, Text, select, type_coerce, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.db import (
    DatabaseBehindError,
    alembic_config,
    create_engine,
    create_sessions,
    prepare_data_dir,
    require_current_schema,
    schema_status,
)
from dashboard.models import Deployment, EnvVar
from dashboard.queries import add_audit_event, add_user, get_user_by_name
from dashboard.secrets_at_rest import KeyRing, SecretsKeyError, install_key_ring
from dashboard.security import PasswordPolicyError, check_password_policy, hash_password
from dashboard.settings import DashboardSettings, SettingsError
from dashboard.throttle import clear_throttles
from dashboard.user_sessions import close_sessions
from podroute.logs import configure_logging

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
    logout = commands.add_parser("logout-all", help="end every session (of one user with --user)")
    logout.add_argument("--user", default="", help="only this user's sessions")
    clear = commands.add_parser("clear-throttles", help="forget failed logins, so nobody has to wait")
    clear.add_argument("--user", default="", help="only failures for this username")
    clear.add_argument("--address", default="", help="only failures from this client address")
    commands.add_parser(
        "reencrypt",
        help="re-encrypt stored API keys and env values under DASHBOARD_SECRET_KEY "
        "(after a rotation; DASHBOARD_OLD_SECRET_KEYS must still list the old secret)",
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
    """Run `alembic upgrade REVISION` against the configured database (the data dir 0700, its
    SQLite file 0600; stored secrets encrypted under the dashboard secret)."""
    prepare_data_dir(settings)
    command.upgrade(alembic_config(settings.url, KeyRing(*settings.encryption_secrets)), revision)
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


async def _in_transaction(settings: DashboardSettings, work: Any) -> Any:
    engine = create_engine(settings.url)
    try:
        await require_current_schema(engine)
        async with create_sessions(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


def _run_and_report(
    settings: DashboardSettings,
    work: Any,
    report: Callable[[Any], str],
    errors: tuple[type[Exception], ...] = (),
) -> int:
    """Run `work(session)` in one transaction; print `report(result)`, or the error (exit 1)."""
    expected: tuple[type[Exception], ...] = (DatabaseBehindError, *errors)
    try:
        result = asyncio.run(_in_transaction(settings, work))
    except expected as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report(result))
    return 0


def logout_all(settings: DashboardSettings, username: str) -> int:
    """End every session (of `username` only when given)."""

    async def work(session: AsyncSession) -> int:
        user_id = None
        if username:
            user = await get_user_by_name(session, username)
            if user is None:
                raise LookupError(f"there is no user named {username!r}")
            user_id = user.id
        ended = await close_sessions(session, user_id)
        await add_audit_event(session, None, "logout-all", None, {"sessions_ended": [None, ended]})
        return ended

    whose = f" of {username!r}" if username else ""
    return _run_and_report(settings, work, lambda ended: f"ended {ended} session(s){whose}", (LookupError,))


def clear_login_throttles(settings: DashboardSettings, username: str, address: str) -> int:
    """Forget failed logins (of one username and/or address when given)."""

    async def work(session: AsyncSession) -> int:
        return await clear_throttles(session, username, address)

    return _run_and_report(
        settings, work, lambda cleared: f"cleared {cleared} failed login(s): nobody has to wait any more"
    )


def reencrypt(settings: DashboardSettings) -> int:
    """Rewrite every stored API key and env value under the current secret."""
    ring = install_key_ring(*settings.encryption_secrets)

    async def work(session: AsyncSession) -> int:
        rewritten = 0
        tables = ((cast(Table, Deployment.__table__), "api_key"), (cast(Table, EnvVar.__table__), "value"))
        for table, name in tables:
            stored_form = type_coerce(table.c[name], Text)  # the stored text, not decrypted
            rows = (await session.execute(select(table.c.id, stored_form).where(stored_form != ""))).all()
            for row_id, stored in rows:
                if ring.is_current(stored):
                    continue
                fresh = type_coerce(ring.encrypt(ring.decrypt(stored)), Text)
                await session.execute(update(table).where(table.c.id == row_id).values({name: fresh}))
                rewritten += 1
        return rewritten

    return _run_and_report(
        settings,
        work,
        lambda count: f"re-encrypted {count} stored value(s) under the current DASHBOARD_SECRET_KEY",
        (SecretsKeyError,),
    )


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
    install_key_ring(*settings.encryption_secrets)
    if name == "create-user":
        return create_user(settings, args.username, args.password_stdin)
    if name == "logout-all":
        return logout_all(settings, args.user.strip())
    if name == "clear-throttles":
        return clear_login_throttles(settings, args.user.strip(), args.address.strip())
    if name == "reencrypt":
        return reencrypt(settings)
    return serve(settings)
