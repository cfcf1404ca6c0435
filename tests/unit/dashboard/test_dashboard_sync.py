"""The sync's bookkeeping without a network: a provider that answers from memory, real SQLite files.

- the statements one cycle sends do not grow with the number of endpoints (it is batched);
- drift, missing, CLI deploys and orphans land where the pages read them; unmarked endpoints and
  rows of a running operation are left alone;
- a cycle that changes nothing logs at DEBUG only;
- worker counts a provider reports (RunPod's health API) are stored as samples once per interval;
- the embedded broker's delivered messages are trimmed, so the table stays bounded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from kombu import Connection
from sqlalchemy import event, func, select, text

from dashboard.db import create_sync_sessions
from dashboard.models import Base, Deployment, Endpoint, OrphanEndpoint, SyncLock, WorkerSample
from dashboard.settings import DashboardSettings
from dashboard.worker.context import Context
from dashboard.worker.housekeeping import trim_broker
from dashboard.worker.sync import sync_status
from podroute.deploy.model import ActualEndpoint, ReleaseInfo, Target, endpoint_name, target_labels

PROJECT = "acme"


class MemoryProvider:
    """Answers `list_endpoints` from a list; counts the calls (one per environment and cycle)."""

    kind = "local"
    scaling_fields = ("workersMin", "workersMax", "idleTimeout", "scalerValue", "executionTimeoutMs")
    poll_interval_s = 0.01

    def __init__(
        self, endpoints: list[ActualEndpoint], health: dict[str, dict[str, int]] | None = None
    ) -> None:
        self.endpoints = endpoints
        self.listings = 0
        self.health = health or {}
        """Worker counts `sample_workers` reports (RunPod's health API); none, like the runtime."""
        self.samplings = 0

    def __enter__(self) -> MemoryProvider:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def list_endpoints(self, project: str | None = None) -> list[ActualEndpoint]:
        self.listings += 1
        return [e for e in self.endpoints if project is None or e.labels.get("podroute.project") == project]

    def sample_workers(self, endpoint_ids: list[str]) -> dict[str, dict[str, int]]:
        self.samplings += 1
        return {i: dict(self.health[i]) for i in endpoint_ids if i in self.health}


def actual(
    environment: str, service: str, endpoint_id: str, workers_max: int = 2, **labels: str
) -> ActualEndpoint:
    target = Target(PROJECT, environment, service, service)
    return ActualEndpoint(
        id=endpoint_id,
        name=endpoint_name(target),
        url=f"http://runtime/{endpoint_id}",
        labels={**target_labels(target), **labels},
        serving={"workersMin": 0, "workersMax": workers_max, "env_keys": [], "build": "b" * 64},
        release=ReleaseInfo(number=1, build="b" * 64, config={"workersMax": 2}, deployed_by="cli:bob"),
        workers={"idle": 1},
    )


@pytest.fixture
def sessions(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'sync.sqlite3'}"
    factory = create_sync_sessions(url)
    Base.metadata.create_all(factory.kw["bind"])
    with factory.begin() as session:
        session.add(SyncLock(id=1, owner=""))
    return factory


def settings(tmp_path: Path) -> DashboardSettings:
    (tmp_path / "project").mkdir(exist_ok=True)
    (tmp_path / "project" / "pyproject.toml").write_text(f'[tool.podroute]\nname = "{PROJECT}"\n')
    return DashboardSettings(
        data_dir=tmp_path, project_dir=tmp_path / "project", environments=("production",), sync_interval_s=1
    )


def add_deployed(sessions: Any, count: int) -> None:
    """`count` endpoint configs, each with a serving row in production."""
    with sessions.begin() as session:
        for index in range(count):
            endpoint = Endpoint(
                name=f"svc{index}", service=f"svc{index}", resource=f"svc{index}", compute="cpu"
            )
            session.add(endpoint)
            session.flush()
            session.add(
                Deployment(
                    endpoint_id=endpoint.id,
                    environment="production",
                    status="ready",
                    external_id=f"ep{index}",
                    build_hash="b" * 64,
                    config={"fields": {"workersMin": 0, "workersMax": 2}, "env": {}},
                )
            )


def run_cycle(tmp_path: Path, sessions: Any, provider: MemoryProvider) -> Any:
    context = Context(settings(tmp_path), sessions, providers=lambda *_: provider)
    return sync_status(context, lambda name, row_id: None)


def counted_cycles(tmp_path: Path, count: int) -> tuple[int, int, MemoryProvider]:
    """Statements of a first cycle and of a quiet one, with `count` deployed endpoints."""
    factory = create_sync_sessions(f"sqlite:///{tmp_path / f'sync-{count}.sqlite3'}")
    Base.metadata.create_all(factory.kw["bind"])
    with factory.begin() as session:
        session.add(SyncLock(id=1, owner=""))
    add_deployed(factory, count)
    provider = MemoryProvider(
        [actual("production", f"svc{i}", f"ep{i}", workers_max=3) for i in range(count)],
        health={f"ep{i}": {"running": 1, "idle": 1, "throttled": 2} for i in range(count)},
    )
    sent: list[str] = []
    event.listen(factory.kw["bind"], "before_cursor_execute", lambda *args: sent.append(args[2]))
    first_report = run_cycle(tmp_path, factory, provider)  # records workers and drift on every row
    assert first_report.drift_changed == count
    first = len(sent)
    sent.clear()
    assert not run_cycle(tmp_path, factory, provider).changed
    return first, len(sent), provider


def test_statements_per_cycle_do_not_grow_with_endpoints(tmp_path) -> None:
    one = counted_cycles(tmp_path, 1)
    many = counted_cycles(tmp_path, 25)
    assert one[:2] == many[:2]
    assert many[2].listings == 2  # one listing per environment and cycle, never a call per endpoint
    assert many[2].samplings == 1  # worker counts: sampled once per usage interval, not per cycle


def test_worker_counts_are_stored_as_samples_and_shown_on_the_row(tmp_path, sessions) -> None:
    add_deployed(sessions, 2)
    provider = MemoryProvider(
        [actual("production", "svc0", "ep0", workers_max=2), actual("production", "svc1", "ep1")],
        health={"ep0": {"running": 2, "idle": 1, "initializing": 1, "throttled": 3}},
    )
    for endpoint in provider.endpoints:
        endpoint.workers = {}  # RunPod's listing carries no worker counts
    run_cycle(tmp_path, sessions, provider)
    with sessions() as session:
        samples = list(session.scalars(select(WorkerSample)))
        rows = {row.external_id: row for row in session.scalars(select(Deployment))}
    assert [(s.environment, s.external_id, s.billed) for s in samples] == [("production", "ep0", 4)]
    assert samples[0].counts["throttled"] == 3  # kept, but throttled workers are not billed
    assert rows["ep0"].observed["counts"] == {"running": 2, "idle": 1, "initializing": 1, "throttled": 3}
    run_cycle(tmp_path, sessions, provider)  # within the usage interval: no new sample
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(WorkerSample)) == 1


def test_drift_missing_cli_deploys_and_orphans(tmp_path, sessions, caplog) -> None:
    add_deployed(sessions, 2)
    with sessions.begin() as session:
        session.add(Endpoint(name="cli-made", service="fromcli", resource="fromcli", compute="cpu"))
    provider = MemoryProvider(
        [
            actual("production", "svc0", "ep0", workers_max=5),  # scaled out of band: drift
            actual("production", "fromcli", "ep-cli"),  # a CLI deploy of a config with no row
            actual("production", "ghost", "ep-ghost"),  # marked, no config: an orphan
            actual("production", "svc1", "ep-other", **{"podroute.project": "someone-else"}),
        ]
    )
    unmarked = ActualEndpoint(id="ep-plain", name="plain", url="http://runtime/ep-plain")
    provider.endpoints.append(unmarked)
    report = run_cycle(tmp_path, sessions, provider)
    assert report.changed and report.missing == ["production: ep1"]
    with sessions() as session:
        rows = {row.external_id: row for row in session.scalars(select(Deployment))}
        orphans = [o.external_id for o in session.scalars(select(OrphanEndpoint))]
    assert rows["ep0"].observed["drift"] == [{"name": "workersMax", "stored": 2, "serving": 5}]
    assert rows["ep1"].status == "missing"
    assert (
        rows["ep-cli"].created_by == "cli:bob"
        and rows["ep-cli"].status == "ready"
        and rows["ep-cli"].release == 1
    )
    assert orphans == ["ep-ghost"]  # never the other project's, never the unmarked one
    caplog.set_level(logging.DEBUG, logger="dashboard.worker.sync")
    caplog.clear()
    quiet = run_cycle(tmp_path, sessions, provider)
    assert not quiet.changed
    assert [r.levelno for r in caplog.records if r.getMessage() == "sync"] == [logging.DEBUG]


def test_rows_of_a_running_operation_are_left_alone(tmp_path, sessions) -> None:
    add_deployed(sessions, 1)
    with sessions.begin() as session:
        session.add(
            Deployment(
                endpoint_id=1,
                environment="production",
                action="undeploy",
                status="deleting",
                external_id="ep0",
            )
        )
    report = run_cycle(tmp_path, sessions, MemoryProvider([]))  # the undeploy already removed it
    assert report.missing == [] and report.orphans_new == []
    with sessions() as session:
        assert session.scalar(select(func.count()).where(Deployment.status == "missing")) == 0


def test_the_embedded_broker_stays_bounded_over_ten_thousand_cycles(tmp_path) -> None:
    config = settings(tmp_path)
    assert config.uses_embedded_broker
    context = Context(config, create_sync_sessions(f"sqlite:///{tmp_path / 'unused.sqlite3'}"))
    # Real kombu traffic first: a delivered and acknowledged message stays in the table ...
    with Connection(config.celery_broker_url) as connection:
        queue = connection.SimpleQueue("sync-test")
        for _ in range(3):
            queue.put({"task": "sync"})
            queue.get(timeout=5).ack()
        queue.close()
    broker = create_sync_sessions(config.celery_broker_url.removeprefix("sqla+"))
    with broker() as session:
        assert session.scalar(text("SELECT count(*) FROM kombu_message")) == 3
    # ... until the sync trims it; then 10 000 cycles of one delivered message each stay bounded.
    assert trim_broker(context) == 3
    engine = broker.kw["bind"]
    with engine.begin() as connection:
        queue_id = connection.scalar(text("SELECT id FROM kombu_queue WHERE name = 'sync-test'"))
    for cycle in range(10_000):
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO kombu_message (queue_id, visible, timestamp, payload, version) "
                    "VALUES (:q, 0, CURRENT_TIMESTAMP, 'x', 1)"
                ),
                {"q": queue_id},
            )
        if cycle % 10 == 9:  # one sync every ten tasks
            trim_broker(context)
    with engine.begin() as connection:
        assert connection.scalar(text("SELECT count(*) FROM kombu_message")) == 0
