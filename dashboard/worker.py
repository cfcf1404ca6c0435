"""The Celery worker's entry point: `celery -A dashboard.worker worker -B --loglevel INFO`.

Settings come from the environment (`DashboardSettings.from_env`), like the web app's. `-B` runs
the beat scheduler inside the worker (the periodic status sync); with several workers, run beat
once, separately: `celery -A dashboard.worker beat`.
"""

from __future__ import annotations

from dashboard.celery_app import create_celery
from dashboard.logs import configure_logging
from dashboard.settings import DashboardSettings

settings = DashboardSettings.from_env()
configure_logging(settings.log_level)
app = create_celery(settings)
"""The Celery app the worker runs."""
