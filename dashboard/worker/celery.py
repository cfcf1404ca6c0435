"""The Celery worker's entry point: `celery -A dashboard.worker worker -B --loglevel INFO`.

Celery looks for `dashboard.worker.celery.app` when given the package `dashboard.worker`.

Settings come from the environment (`DashboardSettings.from_env`), like the web app's. `-B` runs
the beat scheduler inside the worker (the periodic status sync); with several workers, run beat
once, separately: `celery -A dashboard.worker beat`.
"""

from __future__ import annotations

from dashboard.settings import DashboardSettings
from dashboard.worker.celery_app import create_celery
from podroute.logs import configure_logging

settings = DashboardSettings.from_env()
configure_logging(settings.log_level)
app = create_celery(settings)
"""The Celery app the worker runs."""
