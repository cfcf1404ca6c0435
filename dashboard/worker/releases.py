"""Releases: deploy, roll back, scale and undeploy one endpoint in one environment.

Every function takes a row id and re-reads the row; the row is the whole state of the operation.
Each step is safe to repeat: uploads are keyed by hash, an endpoint is created only when the row
has none (endpoints left by a crashed attempt are found by name and deleted first), updates and
scaling set absolute values. So a redelivered task resumes and finishes the same deployment once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.models import Build, Deployment, Endpoint, utc_now
from dashboard.providers import DeployTarget, is_not_found, is_transient
from dashboard.worker.builds import build_result
from dashboard.worker.context import Context, TransientError, append_log, note
from podroute.build import BuildResult
from podroute.deploy import DeployError, EndpointInfo, wait_until_healthy
from podroute.runpod import SCALING_FIELDS as RUNPOD_SCALING_FIELDS
from podroute.runpod import RunPodProvider

SCALING_KEYS = ("workersMin", "workersMax", "idleTimeout", "scalerValue", "executionTimeoutMs")
"""The config fields a provider's `scale` takes."""

_PROGRESS = {"claimed": 5, "upload": 15, "release": 35, "scale": 50, "wait": 65, "ready": 100}


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


def live_deployments(session: Session, endpoint_id: int | None = None) -> list[Deployment]:
    """The current release of every (endpoint, environment) that has one."""
    query = select(Deployment.endpoint_id, Deployment.environment).distinct()
    if endpoint_id is not None:
        query = query.where(Deployment.endpoint_id == endpoint_id)
    pairs = session.execute(query).all()
    found = (current_release(session, pair[0], pair[1]) for pair in pairs)
    return [row for row in found if row is not None]


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


def endpoint_name(endpoint: Endpoint, environment: str) -> str:
    """The provider-side name of an endpoint in an environment (what orphans are found by)."""
    return f"podroute-{endpoint.name}-{environment}"[:63]


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
            append_log(row, line)

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
            append_log(row, line)


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
                append_log(stored, "scaled: " + ", ".join(f"{k}={v}" for k, v in scaling.items()))
