"""A failed operation keeps the progress it stopped at (the page draws it red, stopped there);
only a finished one is at 100 %."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from dashboard.db import create_sync_sessions
from dashboard.models import Base, Build, Deployment, Endpoint
from dashboard.settings import DashboardSettings
from dashboard.worker.context import Context
from dashboard.worker.releases import run_deployment
from podroute.build import ARTIFACT_NAME
from podroute.providers.base import DeployError


class RefusingProvider:
    """Refuses every upload, the first thing a rollout asks of a provider."""

    kind = "local"
    scaling_fields = ("workersMin", "workersMax", "idleTimeout", "scalerValue")
    poll_interval_s = 0.01

    def __enter__(self) -> RefusingProvider:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def list_endpoints(self, project: str | None = None) -> list[Any]:
        return []

    def upload(self, build: Any) -> None:
        raise DeployError("the runtime refused the artifact: disk full")


def _deploy_row(tmp_path: Path) -> tuple[Any, int]:
    sessions = create_sync_sessions(f"sqlite:///{tmp_path / 'progress.sqlite3'}")
    Base.metadata.create_all(sessions.kw["bind"])
    artifacts = tmp_path / "build"
    artifacts.mkdir()
    (artifacts / ARTIFACT_NAME).write_bytes(b"artifact")
    with sessions.begin() as session:
        endpoint = Endpoint(name="lab", service="lab", resource="lab", compute="cpu")
        session.add(endpoint)
        session.flush()
        build = Build(
            endpoint_id=endpoint.id,
            status="succeeded",
            directory=str(artifacts),
            artifact_hash="a" * 64,
            manifest={"service": "lab", "resource": {"name": "lab"}, "artifact_sha256": "a" * 64},
        )
        session.add(build)
        session.flush()
        row = Deployment(
            endpoint_id=endpoint.id,
            build_id=build.id,
            environment="production",
            action="deploy",
            status="deploying",
            step="claimed",
            progress=5,
            build_hash="a" * 64,
            config={"fields": {"workersMin": 0, "workersMax": 1}, "env": {}},
        )
        session.add(row)
        session.flush()
        return sessions, row.id


def test_a_failed_deploy_keeps_the_progress_where_it_failed(tmp_path: Path) -> None:
    sessions, row_id = _deploy_row(tmp_path)
    (tmp_path / "project").mkdir()
    settings = DashboardSettings(data_dir=tmp_path, project_dir=tmp_path / "project")
    context = Context(settings, sessions, providers=lambda *_: RefusingProvider())  # type: ignore[arg-type,return-value]
    run_deployment(context, row_id)
    with sessions() as session:
        row = session.get(Deployment, row_id)
        assert row.status == "failed" and "disk full" in row.error
        assert row.progress == 15  # the upload step, where it stopped; not a full bar
