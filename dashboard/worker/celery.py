"""The Celery worker's entry point: `celery -A dashboard.worker worker -B --loglevel INFO`.

Celery looks for `dashboard.worker.celery.app` when given the package `dashboard.worker`.

Settings come from the environment (`DashboardSettings.from_env`), like the web app's. `-B` runs
the beat scheduler inside the worker (the periodic status sync); with several workers, run beat
once, separately: `celery -A dashboard.worker beat`.
"""

from __future__ import annotations

import logging

from dashboard.settings import DashboardSettings
from dashboard.worker.celery_app import create_celery
from podroute.logs import configure_logging

PER_TASK_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")
"""Celery's loggers that say "sent", "received" and "succeeded" at INFO for every task: three lines
every sync interval. The tasks log what they changed themselves, so these speak only at DEBUG (a
failed task is still logged, at ERROR)."""

settings = DashboardSettings.from_env()
configure_logging(settings.log_level)
if logging.getLevelName(settings.log_level) != logging.DEBUG:
    for name in PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
app = create_celery(settings)
"""The Celery app the worker runs."""
