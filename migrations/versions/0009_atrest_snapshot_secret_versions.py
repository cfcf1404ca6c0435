"""Deployment snapshots keep the version of a secret env value, never the value.

`deployments.config` is a plain JSON column. Earlier dashboards stored each "secret" env value in
it in clear; this upgrade replaces every such value by its version marker
(`secret-version:<12 hex>`, `dashboard.secret_versions`): the keyed fingerprint under the dashboard
secret, which is also the version in the name of the provider secret the value was deployed as,
so a rollback to such a row still refers to the provider secret it ran with, and diffs still tell
changed values apart. Values already marked, empty values and the '***' of releases another tool
made are left as they are. The key comes from `python -m dashboard migrate` (its key ring), else
from DASHBOARD_SECRET_KEY; it is only needed when some row holds a value to replace.

On SQLite the rewrite runs with `PRAGMA secure_delete`, so the space the old values took is
zeroed in the file (the write-ahead log drops them at its next checkpoint). On PostgreSQL the old
row versions stay in the table's files until `VACUUM FULL deployments` rewrites them.

The downgrade cannot restore the values: they are gone from the snapshots for good (the current
values stay in the encrypted `endpoint_env_vars`). It leaves the markers in place, so after a
downgrade deploy the current config rather than rolling back to a row from before it (the older
code would take a marker for a value).

Revision ID: 0009_atrest
Revises: 0008_controlfix
Create Date: 2026-12-15
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from dashboard.configs import SECRET_MASK
from dashboard.secret_versions import VERSION_PREFIX, secret_marker
from dashboard.secrets_at_rest import KeyRing, installed_key_ring
from dashboard.settings import DashboardSettings

revision: str = "0009_atrest"
down_revision: str | None = "0008_controlfix"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_deployments = sa.table("deployments", sa.column("id", sa.Integer), sa.column("config", sa.JSON))


def _key_ring() -> KeyRing:
    """The ring `python -m dashboard migrate` passes, else the one this process installed, else
    one from DASHBOARD_SECRET_KEY / DASHBOARD_OLD_SECRET_KEYS."""
    ring = context.config.attributes.get("key_ring") or installed_key_ring()
    if isinstance(ring, KeyRing):
        return ring
    return KeyRing(*DashboardSettings.from_env().encryption_secrets)


def _clear_values(config: dict[str, Any]) -> list[str]:
    """The secret variables of a snapshot whose env still holds a value in clear."""
    env = config.get("env", {})
    keys = []
    for key in config.get("secrets", []):
        value = env.get(key)
        if isinstance(value, str) and value and value != SECRET_MASK and not value.startswith(VERSION_PREFIX):
            keys.append(key)
    return keys


def upgrade() -> None:
    if context.is_offline_mode():
        return  # the rewrite needs the rows; run the migration online to replace existing values
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA secure_delete = ON")
    ring: list[KeyRing] = []
    for row_id, config in connection.execute(sa.select(_deployments.c.id, _deployments.c.config)).all():
        if not isinstance(config, dict):
            continue
        keys = _clear_values(config)
        if not keys:
            continue
        if not ring:
            ring.append(_key_ring())
        env = dict(config["env"])
        env.update({key: secret_marker(key, env[key], ring[0].fingerprint_key) for key in keys})
        connection.execute(
            sa.update(_deployments).where(_deployments.c.id == row_id).values(config={**config, "env": env})
        )


def downgrade() -> None:
    """Nothing to undo in the schema; the replaced values cannot come back (see above)."""
