"""Endpoint configs keep the network volume's mount path (`volumeMountPath`), so a deploy from the
dashboard releases the path the code declares instead of dropping it.

Plain ADD/DROP COLUMN (no table rebuild), so SQLite tables keep their AUTOINCREMENT.

Revision ID: 0007_secretsport
Revises: 0006_dashsec
Create Date: 2026-12-14
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_secretsport"
down_revision: str | None = "0006_dashsec"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add endpoints.volume_mount_path (RunPod's /runpod-volume for existing rows)."""
    op.add_column(
        "endpoints",
        sa.Column("volume_mount_path", sa.String(100), nullable=False, server_default="/runpod-volume"),
    )


def downgrade() -> None:
    """Drop the column again."""
    op.drop_column("endpoints", "volume_mount_path")
