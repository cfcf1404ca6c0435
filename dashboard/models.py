"""SQLAlchemy models of the dashboard database. Alembic revisions in `migrations/` mirror them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from dashboard.secrets_at_rest import EncryptedText
from podroute.resources import DEFAULT_VOLUME_MOUNT_PATH

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_MAX = 63
SERVICE_MAX = 100
IMAGE_MAX = 500
ENV_KEY_MAX = 255
ENV_VALUE_MAX = 32_768
USERNAME_MAX = 64
PATH_MAX = 1000
LOG_LINES_KEPT = 200
"""Log lines a build or deployment row keeps (the oldest are dropped)."""

COMPUTE_KINDS = ("gpu", "cpu")
DEPLOYMENT_STATUSES = ("queued", "deploying", "ready", "failed", "deleting", "deleted", "missing")
"""`missing`: the record says it serves, but the provider's fresh listing no longer has the endpoint."""
DEPLOYMENT_ACTIVE = ("queued", "deploying", "deleting")
"""Statuses of a deployment whose task has not finished."""
DEPLOYMENT_ACTIONS = ("deploy", "rollback", "undeploy", "scale")
"""`scale` is a scaling change: its own history entry, so past snapshots never change."""
SETTLED_STATUSES = ("ready", "deleted", "missing")
"""Statuses that say what an environment serves: the newest such row decides (only `ready` serves)."""
AUTOINCREMENT = {"sqlite_autoincrement": True}
"""Table option: SQLite never hands out the id of a deleted row again (PostgreSQL sequences never do)."""
BUILD_STATUSES = ("queued", "building", "succeeded", "failed")
BUILD_ACTIVE = ("queued", "building")
"""Statuses of a build whose task has not finished."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """`moment` as aware UTC (SQLite hands back naive datetimes that were stored as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention (stable names for migrations)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A person who can log in. Passwords are stored only as argon2 hashes."""

    __tablename__ = "users"
    __table_args__ = AUTOINCREMENT

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Endpoint(Base):
    """An endpoint configuration: which service/resource it deploys and its Flash-style settings."""

    __tablename__ = "endpoints"
    __table_args__ = (CheckConstraint("compute IN ('gpu', 'cpu')", name="compute_kind"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    service: Mapped[str] = mapped_column(String(SERVICE_MAX), default="")
    resource: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    compute: Mapped[str] = mapped_column(String(3))
    image_name: Mapped[str] = mapped_column(String(IMAGE_MAX), default="")
    gpus: Mapped[list[str]] = mapped_column(JSON, default=list)
    gpu_count: Mapped[int] = mapped_column(Integer, default=1)
    min_cuda_version: Mapped[str] = mapped_column(String(10), default="12.8")
    instance_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    workers_min: Mapped[int] = mapped_column(Integer, default=0)
    workers_max: Mapped[int] = mapped_column(Integer, default=1)
    idle_timeout: Mapped[int] = mapped_column(Integer, default=60)
    scaler_value: Mapped[int] = mapped_column(Integer, default=4)
    execution_timeout_ms: Mapped[int] = mapped_column(Integer, default=0)
    flashboot: Mapped[bool] = mapped_column(Boolean, default=True)
    locations: Mapped[list[str]] = mapped_column(JSON, default=list)
    network_volume_id: Mapped[str] = mapped_column(String(SERVICE_MAX), default="")
    volume_mount_path: Mapped[str] = mapped_column(String(SERVICE_MAX), default=DEFAULT_VOLUME_MOUNT_PATH)
    """Where workers see the network volume (RunPod serverless: /runpod-volume)."""
    version: Mapped[int] = mapped_column(Integer, default=1)
    delete_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Set by "undeploy all, then delete": the sync deletes the config once every endpoint is gone."""
    delete_requested_by: Mapped[str] = mapped_column(String(USERNAME_MAX), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)

    env_vars: Mapped[list[EnvVar]] = relationship(
        back_populates="endpoint", cascade="all, delete-orphan", order_by="EnvVar.key", lazy="raise"
    )
    deployments: Mapped[list[Deployment]] = relationship(
        back_populates="endpoint", cascade="all, delete-orphan", lazy="raise"
    )
    builds: Mapped[list[Build]] = relationship(
        back_populates="endpoint", cascade="all, delete-orphan", lazy="raise"
    )


class EnvVar(Base):
    """One environment variable of an endpoint's workers; `secret` ones are write-only in the UI."""

    __tablename__ = "endpoint_env_vars"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "key", name="uq_endpoint_env_vars_endpoint_key"),
        AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(ENV_KEY_MAX))
    value: Mapped[str] = mapped_column(EncryptedText, default="")
    """Stored encrypted (every value, secret or not; see `dashboard.secrets_at_rest`)."""
    secret: Mapped[bool] = mapped_column(Boolean, default=False)

    endpoint: Mapped[Endpoint] = relationship(back_populates="env_vars", lazy="raise")


class AuditEvent(Base):
    """Who changed what, when. `changes` never holds a secret value (they are recorded as '***')."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_target", "target_type", "target_id", "id"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(USERNAME_MAX))
    action: Mapped[str] = mapped_column(String(32))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(Integer)
    target_name: Mapped[str] = mapped_column(String(255), default="")
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UserSession(Base):
    """A logged-in browser. The cookie carries a random token; only its SHA-256 is stored, and
    deleting the row (logout, password change, "log out everywhere") ends the session at once."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")

    user: Mapped[User] = relationship(lazy="raise")


class LoginAttempt(Base):
    """A login attempt, kept for throttling (failures per address and user, in a window)."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_pair", "remote_addr", "username", "at"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX))
    remote_addr: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)


class Build(Base):
    """One build of an endpoint's service, filled by the build task (`dashboard.worker.builds`)."""

    __tablename__ = "builds"
    __table_args__ = (CheckConstraint(f"status IN {BUILD_STATUSES!r}", name="build_status"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    artifact_hash: Mapped[str] = mapped_column(String(128), default="")
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(USERNAME_MAX), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    directory: Mapped[str] = mapped_column(String(PATH_MAX), default="")
    log: Mapped[list[str]] = mapped_column(JSON, default=list)
    image: Mapped[str] = mapped_column(String(IMAGE_MAX), default="")
    """The container image RunPod runs for this build (`repo:tag` or `repo@sha256:...`); "" if none."""

    endpoint: Mapped[Endpoint] = relationship(back_populates="builds", lazy="raise")

    @property
    def active(self) -> bool:
        """True while the build task has not finished."""
        return self.status in BUILD_ACTIVE


class Deployment(Base):
    """One operation on an endpoint in one environment: a deploy, rollback, scaling change or undeploy.

    The row is the task's whole state: `step` says how far it got, `external_id` what the provider
    made, `lease_until` which worker holds it. A redelivered task resumes from there. `config` is the
    snapshot the operation released and never changes afterwards. Rows the sync found on the
    provider (a CLI deploy, say) have `created_by` "cli:<user>" and no build row, only `build_hash`.
    `api_key` is no longer written (the provider gives keys back); old rows keep theirs.
    """

    __tablename__ = "deployments"
    __table_args__ = (
        CheckConstraint(f"status IN {DEPLOYMENT_STATUSES!r}", name="deployment_status"),
        Index("ix_deployments_endpoint_latest", "endpoint_id", "created_at", "id"),
        Index("ix_deployments_endpoint_environment", "endpoint_id", "environment", "id"),
        AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"), index=True)
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id", ondelete="SET NULL"))
    provider: Mapped[str] = mapped_column(String(32), default="local")
    status: Mapped[str] = mapped_column(String(16), default="queued")
    external_id: Mapped[str] = mapped_column(String(255), default="")
    url: Mapped[str] = mapped_column(String(IMAGE_MAX), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(USERNAME_MAX), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    environment: Mapped[str] = mapped_column(String(32), default="production", index=True)
    action: Mapped[str] = mapped_column(String(16), default="deploy")
    step: Mapped[str] = mapped_column(String(32), default="")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    log: Mapped[list[str]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    release: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The provider's release number this row made or found (what a rollback goes back to)."""
    build_hash: Mapped[str] = mapped_column(String(128), default="")
    """The artifact sha256 it released (also for rows without a build row of this dashboard)."""
    api_key: Mapped[str] = mapped_column(EncryptedText, default="")
    """Rows made before the provider became the record; new rows leave it empty (keys come from it)."""
    rollback_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL"), nullable=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    observed: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    endpoint: Mapped[Endpoint] = relationship(back_populates="deployments", lazy="raise")
    build: Mapped[Build | None] = relationship(lazy="raise")

    @property
    def active(self) -> bool:
        """True while the task has not finished."""
        return self.status in DEPLOYMENT_ACTIVE


class OrphanEndpoint(Base):
    """A provider endpoint carrying this project's marker that no record knows (found by the sync).

    Rows come and go with each sync; `delete_requested_at` marks one the user asked to delete.
    """

    __tablename__ = "orphan_endpoints"
    __table_args__ = (
        UniqueConstraint("environment", "external_id", name="uq_orphan_endpoints_environment_external"),
        AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    url: Mapped[str] = mapped_column(String(IMAGE_MAX), default="")
    target: Mapped[str] = mapped_column(String(255), default="")
    """`service/resource` from its marker labels."""
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    delete_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")

    def mark_deleting(self) -> None:
        """Record that the user asked to delete it (the task checks this before deleting)."""
        self.delete_requested_at = utc_now()
        self.error = ""


class SyncLock(Base):
    """One row: which sync run holds the right to reconcile until when (runs never overlap, so two
    cycles cannot both record the same CLI deploy). Claimed with an atomic UPDATE, like leases."""

    __tablename__ = "sync_lock"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="")
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WorkerSample(Base):
    """Worker counts by state of one provider endpoint at one moment, read by the sync where the
    provider keeps no usage history itself (RunPod's health API): the workers chart and the cost
    estimate of a RunPod environment come from these. Kept for `SAMPLES_KEPT_S`."""

    __tablename__ = "worker_samples"
    __table_args__ = (Index("ix_worker_samples_external_id_at", "external_id", "at"), AUTOINCREMENT)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    billed: Mapped[int] = mapped_column(Integer, default=0)
    """Workers that cost money at `at`: running, idle and initializing ones."""


SAMPLES_KEPT_S = 7 * 86400
"""How long worker samples are kept (the metrics page's longest window)."""
