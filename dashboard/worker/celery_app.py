"""The dashboard's Celery app factory; `celery -A dashboard.worker worker -B` runs its tasks.

The broker is a SQLite file in the data dir by default (kombu's SQLAlchemy transport: nothing to
install or start), or Redis when `REDIS_URL` / `CELERY_BROKER_URL` is set. Results are not kept:
the state of every build and deployment lives on its database row.
"""

from __future__ import annotations

from typing import Any

from celery import Celery  # type: ignore[import-untyped]

from dashboard.db import prepare_data_dir
from dashboard.secrets_at_rest import install_key_ring
from dashboard.settings import DashboardSettings

TASK_NAMES = {  # names kept from before the split, so queued messages stay valid
    "build": "dashboard.tasks.build_endpoint",
    "deploy": "dashboard.tasks.deploy_endpoint",
    "rollback": "dashboard.tasks.rollback_endpoint",
    "undeploy": "dashboard.tasks.undeploy_endpoint",
    "scale": "dashboard.tasks.scale_endpoint",
    "sync": "dashboard.tasks.sync_status",
    "orphan": "dashboard.tasks.delete_orphan",
}
"""Task names by what they do (the web side sends tasks by name; it never imports the worker code)."""


class DashboardCelery(Celery):  # type: ignore[misc]
    """A Celery app that carries the dashboard settings its tasks read."""

    settings: DashboardSettings


def celery_config(settings: DashboardSettings) -> dict[str, Any]:
    """Celery configuration for these settings (broker, reliability, beat schedule)."""
    config: dict[str, Any] = {
        "broker_url": settings.celery_broker_url,
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": settings.celery_queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "sync-status": {"task": TASK_NAMES["sync"], "schedule": settings.sync_interval_s},
        },
        "beat_schedule_filename": str(settings.data_dir / "celery-beat-schedule"),
    }
    if not settings.uses_embedded_broker:
        # An unacknowledged message returns to the queue when its worker vanishes; the lease on
        # the row keeps a second delivery from doing the work twice.
        config["broker_transport_options"] = {"visibility_timeout": max(60, int(settings.lease_s * 2))}
    return config


def create_celery(settings: DashboardSettings) -> DashboardCelery:
    """A Celery app for `settings`, with the dashboard's tasks registered (and the key ring that
    decrypts stored secrets installed for them)."""
    prepare_data_dir(settings)
    install_key_ring(*settings.encryption_secrets)
    app = DashboardCelery("dashboard", include=["dashboard.worker.tasks"])
    app.settings = settings
    app.conf.update(celery_config(settings))
    return app


def send(app: Celery, action: str, row_id: int) -> None:
    """Enqueue the task for `action` on one row (after the row was committed)."""
    app.send_task(TASK_NAMES[action], args=[row_id])
