"""Deployment task state: environment, action, step, progress, log, lease, config snapshot, key.

The Celery tasks keep all their state on these rows, so a redelivered task resumes where the last
one stopped and the UI survives worker restarts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch_op:
        batch_op.add_column(sa.Column("directory", sa.String(length=1000), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("log", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.add_column(
            sa.Column("environment", sa.String(length=32), nullable=False, server_default="production")
        )
        batch_op.add_column(
            sa.Column("action", sa.String(length=16), nullable=False, server_default="deploy")
        )
        batch_op.add_column(sa.Column("step", sa.String(length=32), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("progress", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("log", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("config", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("api_key", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("rollback_of_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("observed", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_deployments_rollback_of_id_deployments"),
            "deployments",
            ["rollback_of_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index(batch_op.f("ix_deployments_environment"), ["environment"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch_op:
        batch_op.drop_index(batch_op.f("ix_deployments_environment"))
        batch_op.drop_constraint(batch_op.f("fk_deployments_rollback_of_id_deployments"), type_="foreignkey")
        for column in (
            "finished_at",
            "synced_at",
            "observed",
            "lease_until",
            "lease_owner",
            "attempts",
            "rollback_of_id",
            "api_key",
            "config",
            "log",
            "progress",
            "step",
            "action",
            "environment",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("builds") as batch_op:
        batch_op.drop_column("log")
        batch_op.drop_column("directory")
