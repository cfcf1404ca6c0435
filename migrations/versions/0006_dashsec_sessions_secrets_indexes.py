"""Revocable sessions, throttling and list indexes; stored API keys and env values encrypted.

- `user_sessions`: one row per logged-in browser (logout and "log out everywhere" delete rows).
- Indexes for the pages at scale: the audit log by target, deployments by endpoint (latest status,
  history per environment), login attempts by (address, user).
- `deployments.api_key` and `endpoint_env_vars.value` are rewritten Fernet-encrypted under the
  dashboard secret (`dashboard.secrets_at_rest`); the downgrade writes them back in plain text.

Revision ID: 0006_dashsec
Revises: 0005_controldash
Create Date: 2026-12-12
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import context, op

from dashboard.secrets_at_rest import PREFIX, KeyRing, installed_key_ring
from dashboard.settings import DashboardSettings

revision: str = "0006_dashsec"
down_revision: str | None = "0005_controldash"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ENCRYPTED = (("deployments", "api_key"), ("endpoint_env_vars", "value"))


def _key_ring() -> KeyRing:
    """The ring `python -m dashboard migrate` passes, else the one this process installed, else
    one from DASHBOARD_SECRET_KEY / DASHBOARD_OLD_SECRET_KEYS."""
    ring = context.config.attributes.get("key_ring") or installed_key_ring()
    if isinstance(ring, KeyRing):
        return ring
    return KeyRing(*DashboardSettings.from_env().encryption_secrets)


def _rewrite(table: str, column: str, change: Callable[[str], str | None]) -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.text(f"SELECT id, {column} FROM {table} WHERE {column} <> ''")).all()  # noqa: S608
    for row_id, value in rows:
        new = change(value)
        if new is None:
            continue
        connection.execute(
            sa.text(f"UPDATE {table} SET {column} = :value WHERE id = :id"),  # noqa: S608
            {"value": new, "id": row_id},
        )


def upgrade() -> None:
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_user_sessions_token_hash")),
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"])
    op.create_index(op.f("ix_user_sessions_expires_at"), "user_sessions", ["expires_at"])
    op.create_index("ix_audit_events_target", "audit_events", ["target_type", "target_id", "id"])
    op.create_index("ix_deployments_endpoint_latest", "deployments", ["endpoint_id", "created_at", "id"])
    op.create_index(
        "ix_deployments_endpoint_environment", "deployments", ["endpoint_id", "environment", "id"]
    )
    op.create_index("ix_login_attempts_pair", "login_attempts", ["remote_addr", "username", "at"])
    if context.is_offline_mode():
        return  # encrypting needs the rows; run the migration online to encrypt existing values
    ring: list[KeyRing] = []

    def encrypt(value: str) -> str | None:
        if value.startswith(PREFIX):
            return None
        if not ring:
            ring.append(_key_ring())
        return ring[0].encrypt(value)

    for table, column in _ENCRYPTED:
        _rewrite(table, column, encrypt)


def downgrade() -> None:
    if not context.is_offline_mode():
        ring: list[KeyRing] = []

        def decrypt(value: str) -> str | None:
            if not value.startswith(PREFIX):
                return None
            if not ring:
                ring.append(_key_ring())
            return ring[0].decrypt(value)

        for table, column in _ENCRYPTED:
            _rewrite(table, column, decrypt)
    op.drop_index("ix_login_attempts_pair", table_name="login_attempts")
    op.drop_index("ix_deployments_endpoint_environment", table_name="deployments")
    op.drop_index("ix_deployments_endpoint_latest", table_name="deployments")
    op.drop_index("ix_audit_events_target", table_name="audit_events")
    op.drop_index(op.f("ix_user_sessions_expires_at"), table_name="user_sessions")
    op.drop_index(op.f("ix_user_sessions_user_id"), table_name="user_sessions")
    op.drop_table("user_sessions")
