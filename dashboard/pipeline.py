"""What the Celery tasks do: build, deploy, roll back, scale, undeploy and sync, as plain functions.

Every function takes a row id and re-reads the row; the row is the whole state. A run first
*claims* its row with a lease (an atomic UPDATE), and a keeper thread renews the lease while it
works. A second delivery of the same task finds the row finished (and does nothing) or leased (and
leaves it: if the holder dies, the lease runs out and `sync_status` enqueues the task again). Each
step is safe to repeat: uploads are keyed by hash, an endpoint is created only when the row has
none (endpoints left by a crashed attempt are found by name and deleted first), updates and
scaling set absolute values. So a redelivered task resumes and finishes the same deployment once.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from dashboard.db import SyncSessions
from dashboard.discovery import child_environment
from dashboard.images import ImageError, build_and_push, docker_unavailable
from dashboard.models import (
    BUILD_ACTIVE,
    DEPLOYMENT_ACTIVE,
    LOG_LINES_KEPT,
    Build,
    Deployment,
    Endpoint,
    utc_now,
)
from dashboard.providers import DeployTarget, is_not_found, is_transient, provider_for
from dashboard.settings import DashboardSettings
from podroute.build import MANIFEST_NAME, BuildResult
from podroute.deploy import DeployError, EndpointInfo, wait_until_healthy
from podroute.runpod import SCALING_FIELDS as RUNPOD_SCALING_FIELDS
from podroute.runpod import RunPodProvider

logger = logging.getLogger("dashboard.pipeline")

SCALING_KEYS = ("workersMin", "workersMax", "idleTimeout", "scalerValue", "executionTimeoutMs")
"""The config fields a provider's `scale` takes."""

BUILD_TIMEOUT_S = 600
_SECRET_ENV = ("RUNPOD_API_KEY", "REDIS_URL", "CELERY_BROKER_URL", "PODROUTE_RUNTIME_TOKEN")
_PROGRESS = {"claimed": 5, "upload": 15, "release": 35, "scale": 50, "wait": 65, "ready": 100}

Claim = Literal["claimed", "finished", "leased", "missing"]
Enqueue = Callable[[str, int], None]
"""`enqueue(task_name, row_id)`: how `sync_status` sends a task again."""
ProviderFactory = Callable[[DashboardSettings, str, Mapping[str, str] | None], DeployTarget]
"""`providers(settings, environment, images)`: the provider of an environment (images: sha -> ref)."""


class TransientError(Exception):
    """A provider failure worth retrying later (the row's lease has been released)."""


@dataclass
class Context:
    """What every pipeline function needs: settings, the worker's sessions, a provider factory."""

    settings: DashboardSettings
    sessions: SyncSessions
    providers: ProviderFactory = provider_for


def _append(row: Deployment | Build, line: str) -> None:
    row.log = [*row.log, line][-LOG_LINES_KEPT:]
    row.updated_at = utc_now()


def note(context: Context, model: type[Deployment] | type[Build], row_id: int, line: str) -> None:
    """Append one log line to a row, in its own transaction (the status panel shows it at once)."""
    with context.sessions.begin() as session:
        row = cast("Deployment | Build | None", session.get(model, row_id))
        if row is not None:
            _append(row, line)


# -- leases ------------------------------------------------------------------------------------------


def claim_deployment(context: Context, deployment_id: int, owner: str) -> Claim:
    """Take the row's lease unless it is finished or another run holds a live lease."""
    now = utc_now()
    until = now + timedelta(seconds=context.settings.lease_s)
    with context.sessions.begin() as session:
        result = session.execute(
            update(Deployment)
            .where(
                Deployment.id == deployment_id,
                Deployment.status.in_(DEPLOYMENT_ACTIVE),
                or_(Deployment.lease_until.is_(None), Deployment.lease_until < now),
            )
            .values(lease_owner=owner, lease_until=until, attempts=Deployment.attempts + 1, updated_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return "claimed"
        row = session.get(Deployment, deployment_id)
    if row is None:
        return "missing"
    return "leased" if row.active else "finished"


def release_lease(context: Context, deployment_id: int, owner: str) -> None:
    """Give the lease back (before a retry, so the retried task can claim the row at once)."""
    with context.sessions.begin() as session:
        session.execute(
            update(Deployment)
            .where(Deployment.id == deployment_id, Deployment.lease_owner == owner)
            .values(lease_until=None, lease_owner="")
        )


@contextmanager
def keep_lease(context: Context, deployment_id: int, owner: str) -> Iterator[None]:
    """Renew the lease every third of its length until the block ends."""
    stop = threading.Event()
    period = context.settings.lease_s / 3

    def renew() -> None:
        while not stop.wait(period):
            try:
                with context.sessions.begin() as session:
                    session.execute(
                        update(Deployment)
                        .where(Deployment.id == deployment_id, Deployment.lease_owner == owner)
                        .values(lease_until=utc_now() + timedelta(seconds=context.settings.lease_s))
                    )
            except Exception:  # a busy database must not kill the task; the next renewal retries
                logger.warning(
                    "renewing the lease failed", exc_info=True, extra={"deployment": deployment_id}
                )

    thread = threading.Thread(target=renew, name=f"lease-{deployment_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def new_owner() -> str:
    """A lease owner id unique to one run of one task."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:16]}"


# -- deployments -------------------------------------------------------------------------------------


def current_release(
    session: Session, endpoint_id: int, environment: str, before: int | None = None
) -> Deployment | None:
    """The deployment serving an environment now: the newest ready or deleted (undeploy) row, if ready."""
    query = (
        select(Deployment)
        .where(
            Deployment.endpoint_id == endpoint_id,
            Deployment.environment == environment,
            Deployment.status.in_(("ready", "deleted")),
        )
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    if before is not None:
        query = query.where(Deployment.id < before)
    row = session.scalar(query)
    return row if row is not None and row.status == "ready" else None


def endpoint_name(endpoint: Endpoint, environment: str) -> str:
    """The provider-side name of an endpoint in an environment (what orphans are found by)."""
    return f"podroute-{endpoint.name}-{environment}"[:63]


def build_result(build: Build) -> BuildResult:
    """The library's view of a stored build; DeployError when its artifact is gone."""
    directory = Path(build.directory)
    result = BuildResult(
        service=str(build.manifest.get("service", "")),
        resource=str(build.manifest.get("resource", {}).get("name", "")),
        directory=directory,
        manifest=build.manifest,
        cached=True,
    )
    if not result.artifact.is_file():
        raise DeployError(f"build #{build.id}'s artifact is missing at {result.artifact}; build again")
    return result


class _Run:
    """One run of a deploy, rollback or undeploy: the row id, its provider, its log."""

    def __init__(self, context: Context, deployment_id: int) -> None:
        self.context = context
        self.id = deployment_id

    def load(self) -> tuple[Deployment, Endpoint, Build | None, Deployment | None]:
        with self.context.sessions() as session:
            row = session.get(Deployment, self.id)
            assert row is not None
            endpoint = session.get(Endpoint, row.endpoint_id)
            assert endpoint is not None
            build = session.get(Build, row.build_id) if row.build_id else None
            previous = current_release(session, row.endpoint_id, row.environment, before=self.id)
            return row, endpoint, build, previous

    def step(self, step: str, line: str) -> None:
        with self.context.sessions.begin() as session:
            row = session.get(Deployment, self.id)
            assert row is not None
            row.step, row.progress = step, max(row.progress, _PROGRESS.get(step, row.progress))
            row.status = "deleting" if row.action == "undeploy" else "deploying"
            _append(row, line)

    def log(self, line: str) -> None:
        note(self.context, Deployment, self.id, line)

    def save(self, **values: Any) -> None:
        with self.context.sessions.begin() as session:
            row = session.get(Deployment, self.id)
            assert row is not None
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utc_now()

    def finish(self, status: str, line: str, error: str = "", **values: Any) -> None:
        now = utc_now()
        with self.context.sessions.begin() as session:
            row = session.get(Deployment, self.id)
            assert row is not None
            row.status, row.error, row.finished_at = status, error, now
            row.step = "done" if status in ("ready", "deleted") else "failed"
            row.progress = 100
            row.lease_until, row.lease_owner = None, ""
            for name, value in values.items():
                setattr(row, name, value)
            _append(row, line)


def _scaling(config: dict[str, Any], provider: DeployTarget) -> dict[str, int]:
    """The scaling fields of a config snapshot that `provider.scale` takes."""
    keys = RUNPOD_SCALING_FIELDS if isinstance(provider, RunPodProvider) else SCALING_KEYS
    fields = config.get("fields", {})
    return {key: int(fields[key]) for key in keys if key in fields}


def _release(
    run: _Run,
    provider: DeployTarget,
    row: Deployment,
    endpoint: Endpoint,
    build: BuildResult,
    previous: Deployment | None,
) -> tuple[EndpointInfo, bool]:
    """Create or update the provider's endpoint; returns it and whether it is new."""
    env = dict(row.config.get("env", {}))
    if previous is not None:
        if not row.external_id:
            run.save(external_id=previous.external_id, api_key=previous.api_key, url=previous.url)
        run.step("release", f"rolling endpoint {previous.external_id} over to build {build.sha256[:12]}")
        return provider.update(previous.external_id, build=build, env=env), False
    if row.external_id:
        run.step("release", f"endpoint {row.external_id} was created by an earlier attempt; resuming")
        return provider.status(row.external_id), True
    name = endpoint_name(endpoint, row.environment)
    for orphan in provider.find(name):
        run.log(f"deleting endpoint {orphan.id}, left by an attempt that stopped before recording it")
        provider.delete(orphan.id)
    run.step("release", f"creating endpoint {name}")
    info = provider.create(build, name, env)
    # RunPod endpoints take the account's RUNPOD_API_KEY: it is configuration, never stored on a row.
    api_key = "" if isinstance(provider, RunPodProvider) else info.api_key or ""
    run.save(external_id=info.id, api_key=api_key, url=info.url)
    run.log(f"created endpoint {info.id} at {info.url}")
    return info, True


def _undo(
    provider: DeployTarget,
    row: Deployment,
    previous: Deployment | None,
    previous_build: Build | None,
    created: bool,
) -> str:
    """Leave the environment as it was before this run; returns what was done, for the error."""
    try:
        if created and row.external_id:
            provider.delete(row.external_id)
            return "the new endpoint was deleted; nothing is left running"
        if previous is not None and previous_build is not None:
            env = dict(previous.config.get("env", {}))
            provider.update(previous.external_id, build=build_result(previous_build), env=env)
            provider.scale(previous.external_id, _scaling(previous.config, provider))
            return f"rolled back: deployment #{previous.id} keeps serving"
    except DeployError as error:
        return f"undoing it failed too ({error}); check the endpoint on the provider"
    return "nothing was changed"


def run_deployment(context: Context, deployment_id: int) -> None:
    """Deploy or roll back (the row's `action`); raises TransientError when the provider is down."""
    run = _Run(context, deployment_id)
    row, endpoint, build_row, previous = run.load()
    if row.action == "undeploy":
        return run_undeploy(context, deployment_id)
    if row.action == "rollback" and previous is None:
        return run.finish(
            "failed", "nothing to roll back", f"nothing is deployed in {row.environment}; deploy first"
        )
    if build_row is None or build_row.status != "succeeded":
        return run.finish(
            "failed", "no build", "the build of this deployment is missing or failed; build again"
        )
    with context.sessions() as session:
        previous_build = session.get(Build, previous.build_id) if previous and previous.build_id else None
    images = {b.artifact_hash: b.image for b in (build_row, previous_build) if b is not None and b.image}
    try:
        provider = context.providers(context.settings, row.environment, images)
    except DeployError as error:
        return run.finish("failed", f"failed: {error}", str(error))
    created = False
    try:
        build = build_result(build_row)
        run.step(
            "upload", f"uploading build {build.sha256[:12]} ({row.action} #{row.id}, attempt {row.attempts})"
        )
        provider.upload(build)
        info, created = _release(run, provider, row, endpoint, build, previous)
        row = run.load()[0]
        scaling = _scaling(row.config, provider)
        run.step("scale", "scaling: " + ", ".join(f"{k}={v}" for k, v in scaling.items()))
        info = provider.scale(info.id, scaling)
        run.step("wait", "waiting for a ready worker and /ping 200 through the gateway")
        timeout_s = context.settings.deploy_timeout_s
        if isinstance(provider, RunPodProvider):  # authenticates /ping with the account key itself
            info = provider.wait_until_ready(info, timeout_s, run.log)
        else:
            info = wait_until_healthy(provider, info, row.api_key, timeout_s, run.log)
    except DeployError as error:
        if is_transient(error):
            raise TransientError(str(error)) from error
        undone = _undo(provider, run.load()[0], previous, previous_build, created)
        return run.finish("failed", f"failed: {error}", f"{error}; {undone}")
    run.finish(
        "ready", f"ready at {info.url}", url=info.url, observed=summarize(info.status), synced_at=utc_now()
    )


def run_undeploy(context: Context, deployment_id: int) -> None:
    """Delete the environment's endpoint and check the provider no longer has it."""
    run = _Run(context, deployment_id)
    row = run.load()[0]
    if not row.external_id:
        return run.finish("deleted", "nothing was deployed; nothing to delete")
    try:
        provider = context.providers(context.settings, row.environment, None)
        run.step("delete", f"deleting endpoint {row.external_id} (every worker stops)")
        try:
            provider.delete(row.external_id)
        except DeployError as error:
            if not is_not_found(error):
                raise
            run.log(f"endpoint {row.external_id} was already gone")
        run.step("verify", "checking nothing is left")
        try:
            provider.status(row.external_id)
        except DeployError as error:
            if not is_not_found(error):
                raise
        else:
            return run.finish(
                "failed", "still there", f"endpoint {row.external_id} still exists; undeploy again"
            )
    except DeployError as error:
        if is_transient(error):
            raise TransientError(str(error)) from error
        return run.finish("failed", f"failed: {error}", str(error))
    run.finish("deleted", f"endpoint {row.external_id} deleted; nothing is running", observed={})


def fail_deployment(context: Context, deployment_id: int, message: str) -> None:
    """Mark a deployment failed after its retries ran out."""
    _Run(context, deployment_id).finish("failed", f"failed: {message}", message)


# -- builds ------------------------------------------------------------------------------------------


def claim_build(context: Context, build_id: int) -> Claim:
    """Start a queued build, or take over one whose worker stopped updating it."""
    now = utc_now()
    stale = now - timedelta(seconds=context.settings.lease_s)
    with context.sessions.begin() as session:
        result = session.execute(
            update(Build)
            .where(
                Build.id == build_id,
                or_(Build.status == "queued", (Build.status == "building") & (Build.updated_at < stale)),
            )
            .values(status="building", updated_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return "claimed"
        row = session.get(Build, build_id)
    if row is None:
        return "missing"
    return "leased" if row.active else "finished"


def run_build(context: Context, build_id: int) -> None:
    """Build the endpoint's service in a child process (user code never runs in the worker)."""
    with context.sessions() as session:
        build = session.get(Build, build_id)
        assert build is not None
        endpoint = session.get(Endpoint, build.endpoint_id)
        assert endpoint is not None
    if not endpoint.service or not endpoint.resource:
        return _finish_build(
            context,
            build_id,
            error=(
                "this endpoint is not linked to code (Service and Resource in code are empty): "
                "import it from code, or fill both on the edit form"
            ),
        )
    project = context.settings.project_dir.resolve()
    note(context, Build, build_id, f"building service {endpoint.service} of {project}")
    command = [sys.executable, "-m", "podroute", "build", endpoint.service, "--project", str(project)]
    env = {k: v for k, v in child_environment(project).items() if k not in _SECRET_ENV}
    process = subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def forward_progress() -> None:
        for line in process.stderr or []:
            note(context, Build, build_id, line.rstrip())

    reader = threading.Thread(target=forward_progress, daemon=True)
    reader.start()
    try:
        output = process.stdout.read() if process.stdout else ""
        process.wait(timeout=BUILD_TIMEOUT_S)
        reader.join(10)
    except subprocess.TimeoutExpired:
        process.kill()
        return _finish_build(
            context, build_id, error=f"the build took longer than {BUILD_TIMEOUT_S}s and was stopped"
        )
    if process.returncode != 0:
        return _finish_build(
            context, build_id, error=f"`podroute build` failed (exit {process.returncode}); see the log"
        )
    prefix = f"{endpoint.service}/{endpoint.resource}: "
    line = next((item for item in output.splitlines() if item.startswith(prefix)), None)
    if line is None:
        return _finish_build(
            context,
            build_id,
            error=(
                f"service {endpoint.service!r} has no resource {endpoint.resource!r}; "
                "check 'Resource in code' on the edit form"
            ),
        )
    directory = Path(line.split("  ", 1)[1].strip()).parent
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    _finish_build(context, build_id, directory=directory, manifest=manifest, line=line)
    if context.settings.docker_registry:
        publish_image(context, build_id)


def publish_image(
    context: Context, build_id: int, unavailable: Callable[[], str | None] = docker_unavailable
) -> None:
    """Build and push a finished build's image to DASHBOARD_DOCKER_REGISTRY and record its digest.

    The build stays succeeded either way: without Docker the log says why, and pasting a reference
    in the build panel still works.
    """
    problem = unavailable()
    if problem is not None:
        note(context, Build, build_id, f"image not built: {problem}")
        return
    with context.sessions() as session:
        row = session.get(Build, build_id)
        assert row is not None
    try:
        image = build_and_push(
            build_result(row),
            context.settings.docker_registry,
            lambda line: note(context, Build, build_id, line),
        )
    except (ImageError, DeployError, OSError, subprocess.TimeoutExpired) as error:
        note(context, Build, build_id, f"image not pushed: {error}")
        return
    with context.sessions.begin() as session:
        stored = session.get(Build, build_id)
        if stored is not None:
            stored.image = image
            _append(stored, f"pushed image {image}")


def _finish_build(
    context: Context,
    build_id: int,
    *,
    error: str = "",
    directory: Path | None = None,
    manifest: dict[str, Any] | None = None,
    line: str = "",
) -> None:
    with context.sessions.begin() as session:
        build = session.get(Build, build_id)
        assert build is not None
        if error:
            build.status, build.error = "failed", error
            _append(build, f"failed: {error}")
            return
        assert directory is not None and manifest is not None
        build.status, build.directory, build.manifest = "succeeded", str(directory), manifest
        build.artifact_hash = str(manifest["artifact_sha256"])
        _append(build, line or f"built {build.artifact_hash[:12]}")


def fail_build(context: Context, build_id: int, message: str) -> None:
    """Mark a build failed (its task gave up)."""
    _finish_build(context, build_id, error=message)


# -- scaling and status --------------------------------------------------------------------------------


def summarize(status: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard keeps of a provider's status: workers by state, scaling, recent decisions."""
    workers = status.get("workers", [])
    counts: dict[str, int] = dict(status.get("counts") or {})
    if not counts:
        for worker in workers:
            counts[worker.get("state", "?")] = counts.get(worker.get("state", "?"), 0) + 1
    return {
        "counts": counts,
        "workers": [
            {"id": str(w.get("id", "")), "state": str(w.get("state", "")), "inflight": w.get("inflight", 0)}
            for w in workers
        ],
        "inflight": status.get("inflight", 0),
        "waiting": status.get("waiting", 0),
        "desired": status.get("desired"),
        "scaling": status.get("scaling", {}),
        "decisions": [str(d) for d in status.get("decisions", [])[-5:]],
    }


def live_deployments(session: Session, endpoint_id: int | None = None) -> list[Deployment]:
    """The current release of every (endpoint, environment) that has one."""
    query = select(Deployment.endpoint_id, Deployment.environment).distinct()
    if endpoint_id is not None:
        query = query.where(Deployment.endpoint_id == endpoint_id)
    pairs = session.execute(query).all()
    found = (current_release(session, pair[0], pair[1]) for pair in pairs)
    return [row for row in found if row is not None]


def run_scale(context: Context, endpoint_id: int) -> None:
    """Apply the endpoint's stored scaling to each environment it is live in."""
    with context.sessions() as session:
        endpoint = session.get(Endpoint, endpoint_id)
        if endpoint is None:
            return
        scaling = {
            "workersMin": endpoint.workers_min,
            "workersMax": endpoint.workers_max,
            "idleTimeout": endpoint.idle_timeout,
            "scalerValue": endpoint.scaler_value,
        }
        live = live_deployments(session, endpoint_id)
    for row in live:
        try:
            info = context.providers(context.settings, row.environment, None).scale(row.external_id, scaling)
        except DeployError as error:
            if is_transient(error):
                raise TransientError(str(error)) from error
            note(context, Deployment, row.id, f"scaling failed: {error}")
            continue
        with context.sessions.begin() as session:
            stored = session.get(Deployment, row.id)
            if stored is not None:
                stored.config = {**stored.config, "fields": {**stored.config.get("fields", {}), **scaling}}
                stored.observed, stored.synced_at = summarize(info.status), utc_now()
                _append(stored, "scaled: " + ", ".join(f"{k}={v}" for k, v in scaling.items()))


def sync_status(context: Context, enqueue: Enqueue) -> None:
    """Refresh live endpoints' workers, and enqueue again any task whose worker stopped."""
    _recover(context, enqueue)
    with context.sessions() as session:
        live = live_deployments(session)
    for row in live:
        try:
            info = context.providers(context.settings, row.environment, None).status(row.external_id)
        except DeployError as error:
            observed = {"error": str(error), "missing": is_not_found(error)}
        except Exception as error:  # one broken environment must not stop the others from syncing
            observed = {"error": f"{type(error).__name__}: {error}"}
        else:
            observed = summarize(info.status)
        with context.sessions.begin() as session:
            stored = session.get(Deployment, row.id)
            if stored is not None:
                stored.observed, stored.synced_at = observed, utc_now()


def _recover(context: Context, enqueue: Enqueue) -> None:
    now = utc_now()
    stale = now - timedelta(seconds=context.settings.lease_s)
    with context.sessions() as session:
        deployments = session.scalars(
            select(Deployment.id).where(
                Deployment.status.in_(DEPLOYMENT_ACTIVE),
                or_(
                    Deployment.lease_until < now,
                    Deployment.lease_until.is_(None) & (Deployment.updated_at < stale),
                ),
            )
        ).all()
        builds = session.scalars(
            select(Build.id).where(Build.status.in_(BUILD_ACTIVE), Build.updated_at < stale)
        ).all()
    for deployment_id in deployments:
        logger.warning(
            "deployment task stopped without finishing; enqueueing it again",
            extra={"deployment": deployment_id},
        )
        note(context, Deployment, deployment_id, "the worker running this stopped; resuming")
        enqueue("dashboard.tasks.deploy_endpoint", deployment_id)
    for build_id in builds:
        note(context, Build, build_id, "the worker running this stopped; building again")
        enqueue("dashboard.tasks.build_endpoint", build_id)
