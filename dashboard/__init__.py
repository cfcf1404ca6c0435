"""The PodRoute dashboard: a Quart + htmx app that keeps a team's endpoint configurations.

Run it with `python -m dashboard` (see `dashboard/README.md`); build the app in code with
`dashboard.app.create_app(settings)`.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
"""The directory of the `dashboard` package (templates, static files, node_modules)."""

REPO_ROOT = PACKAGE_DIR.parent
"""The monorepo root: holds `migrations/`, `services/` and the default `.podroute/` data dir."""

__all__ = ["PACKAGE_DIR", "REPO_ROOT"]
