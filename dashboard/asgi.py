"""ASGI entry for an external server: `hypercorn dashboard.asgi:app`.

Run `python -m dashboard migrate` first; the app refuses a database that is behind.
"""

from dashboard.app import create_app
from dashboard.settings import DashboardSettings
from podroute.logs import configure_logging

settings = DashboardSettings.from_env()
configure_logging(settings.log_level)
app = create_app(settings)
