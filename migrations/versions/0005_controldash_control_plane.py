"""One control plane: ids never reused, releases and scaling changes as history, orphans, deletes.

- SQLite tables get AUTOINCREMENT (PostgreSQL sequences never hand an id out twice already), and
  each table's counter starts past every id that was ever used, including ids audit entries still
  point at, so a new endpoint never inherits a deleted one's history or audit links;
- deployments: `release` (the provider's release number) and `build_hash`; status `missing`;
- endpoints: `delete_requested_at`/`_by` ("undeploy all, then delete");
- orphan_endpoints: provider endpoints with the project's marker that no record knows;
- sync_lock: one row, so two sync runs never reconcile at the same time.

Revision ID: 0005_controldash
Revises: 0004
Create Date: 2026-12-08
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005_controldash"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("users", "endpoints", "endpoint_env_vars", "audit_events", "login_attempts", "builds", "deployments")
OLD_STATUSES = "status IN ('queued', 'deploying', 'ready', 'failed', 'deleting', 'deleted')"
NEW_STATUSES = "status IN ('queued', 'deploying', 'ready', 'failed', 'deleting', 'deleted', 'missing')"
_HIGHEST_USED = {
    "endpoints": "SELECT MAX(target_id) FROM audit_events WHERE target_type = 'endpoint'",
    "users": "SELECT MAX(target_id) FROM audit_events WHERE target_type = 'user'",
}


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _batch(table: str, autoincrement: bool) -> Any:
    if not _sqlite():
        return op.batch_alter_table(table)
    return op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    )


def _seed_counter(table: str) -> None:
    """Start SQLite's counter past the highest id the table or an audit entry ever used."""
    bind = op.get_bind()
    highest = [bind.execute(sa.text(f"SELECT MAX(id) FROM {table}")).scalar() or 0]  # noqa: S608
    if table in _HIGHEST_USED:
        highest.append(bind.execute(sa.text(_HIGHEST_USED[table])).scalar() or 0)
    bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :name"), {"name": table})
    bind.execute(
        sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:name, :seq)"),
        {"name": table, "seq": max(highest)},
    )


def upgrade() -> None:
    for table in TABLES:
        with _batch(table, True) as batch_op:
            if table == "endpoints":
                batch_op.add_column(sa.Column("delete_requested_at", sa.DateTime(timezone=True), nullable=True))
                batch_op.add_column(
                    sa.Column("delete_requested_by", sa.String(length=64), nullable=False, server_default="")
                )
            if table == "deployments":
                batch_op.add_column(sa.Column("release", sa.Integer(), nullable=True))
                batch_op.add_column(sa.Column("build_hash", sa.String(length=128), nullable=False, server_default=""))
                batch_op.drop_constraint(batch_op.f("ck_deployments_deployment_status"), type_="check")
                batch_op.create_check_constraint(batch_op.f("ck_deployments_deployment_status"), NEW_STATUSES)
        if _sqlite():
            _seed_counter(table)
    op.execute(
        "UPDATE deployments SET build_hash = (SELECT artifact_hash FROM builds WHERE builds.id = deployments.build_id) "
        "WHERE build_id IS NOT NULL"
    )
    op.create_table(
        "orphan_endpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delete_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orphan_endpoints")),
        sa.UniqueConstraint("environment", "external_id", name="uq_orphan_endpoints_environment_external"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "sync_lock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_lock")),
    )
    op.execute("INSERT INTO sync_lock (id, owner) VALUES (1, '')")


def downgrade() -> None:
    op.drop_table("sync_lock")
    op.drop_table("orphan_endpoints")
    op.execute("DELETE FROM deployments WHERE status = 'missing' OR action = 'scale'")
    for table in reversed(TABLES):
        with _batch(table, False) as batch_op:
            if table == "deployments":
                batch_op.drop_constraint(batch_op.f("ck_deployments_deployment_status"), type_="check")
                batch_op.create_check_constraint(batch_op.f("ck_deployments_deployment_status"), OLD_STATUSES)
                batch_op.drop_column("build_hash")
                batch_op.drop_column("release")
            if table == "endpoints":
                batch_op.drop_column("delete_requested_by")
                batch_op.drop_column("delete_requested_at")
