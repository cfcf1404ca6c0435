"""Worker samples: RunPod's health-API worker counts over time, recorded by the periodic sync.

Revision ID: 0008_controlfix
Revises: 0007_secretsport
Create Date: 2026-12-14
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_controlfix"
down_revision: str | None = "0007_secretsport"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("billed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_samples")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_worker_samples_external_id_at", "worker_samples", ["external_id", "at"])
    op.create_index(op.f("ix_worker_samples_at"), "worker_samples", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_worker_samples_at"), table_name="worker_samples")
    op.drop_index("ix_worker_samples_external_id_at", table_name="worker_samples")
    op.drop_table("worker_samples")
