"""Releases: deploy, roll back, scale, apply, adopt and undeploy one endpoint in one environment.

Every function takes a row id and re-reads the row; the row is the whole state of the operation.
The work itself is the library's (`podroute.deploy.rollout`): the same engine the CLI uses, with
its one naming rule and one undo rule, so a retried or redelivered task resumes on the same
provider endpoint and finishes the same deployment once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.configs import desired_config
from dashboard.models import SETTLED_STATUSES, Build, Deployment, Endpoint, EnvVar, utc_now
from dashboard.secret_versions import released_snapshot, require_held_secrets, secret_release
from dashboard.secrets_at_rest import KeyRing, installed_key_ring
from dashboard.worker.builds import build_result
from dashboard.worker.context import Context, TransientError, append_log, is_transient, note
from podroute.deploy.model import SCALING_FIELDS, ActualEndpoint
from podroute.deploy.rollout import (
    RolloutEvent,
    RolloutStep,
    apply_scaling,
    roll_back,
    roll_out,
    undeploy,
)
from podroute.providers.base import DeployError, EndpointNotFoundError, Provider

_PROGRESS = {"claimed": 5, "upload": 15, "release": 35, "scale": 50, "wait": 65, "ready": 100}


def secret_values(session: Session, endpoint_id: int) -> dict[str, str]:
    """The endpoint's current secret env values (decrypted from their `EnvVar` rows): a deploy
    stores one as a provider secret only while it is the value the snapshot versioned."""
    query = select(EnvVar).where(EnvVar.endpoint_id == endpoint_id, EnvVar.secret.is_(True))
    return {var.key: var.value for var in session.scalars(query)}


def current_release(
    session: Session, endpoint_id: int, environment: str, before: int | None = None
) -> Deployment | None:
    """The deployment serving an environment now: the newest settled row, if it is ready."""
    query = (
        select(Deployment)
        .where(
            Deployment.endpoint_id == endpoint_id,
            Deployment.environment == environment,
            Deployment.status.in_(SETTLED_STATUSES),
        )
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    if before is not None:
        query = query.where(Deployment.id < before)
    row = session.scalar(query)
    return row if row is not None and row.status == "ready" else None


def summarize(endpoint: ActualEndpoint) -> dict[str, Any]:
    """What the dashboard keeps of an endpoint's actual state: workers by state, scaling, decisions."""
    details = endpoint.details
    counts = dict(endpoint.workers)
    return {
        "counts": counts,
        "workers": [
            {"id": str(w.get("id", "")), "state": str(w.get("state", "")), "inflight": w.get("inflight", 0)}
            for w in details.get("workers", [])
        ],
        "inflight": details.get("inflight", 0),
        "scaling": {k: v for k, v in endpoint.serving.items() if k in SCALING_FIELDS},
        "decisions": [str(d) for d in details.get("decisions", [])[-5:]],
        "release": _release_summary(endpoint),
    }


def _release_summary(endpoint: ActualEndpoint) -> dict[str, Any] | None:
    """The serving release (what "adopt serving config" takes over when the build drifted)."""
    release = endpoint.release
    if release is None:
        return None
    return {"number": release.number, "build": release.build, "deployed_by": release.deployed_by}


class _Run:
    """One run of an operation: the row id, its log, its progress."""

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
        with self.context.sessions.begin() as session:
            row = session.get(Deployment, self.id)
            assert row is not None
            row.status, row.error, row.finished_at = status, error, utc_now()
            row.step = "done" if status in ("ready", "deleted") else "failed"
            if status != "failed":
                row.progress = 100  # a failure keeps the progress it stopped at
            row.lease_until, row.lease_owner = None, ""
            for name, value in values.items():
                setattr(row, name, value)
            append_log(row, line)

    def ready(self, endpoint: ActualEndpoint, line: str) -> None:
        release = endpoint.release.number if endpoint.release else None
        build = endpoint.release.build if endpoint.release else ""
        self.finish(
            "ready",
            line,
            external_id=endpoint.id,
            url=endpoint.url,
            release=release,
            build_hash=build or self.load()[0].build_hash,
            observed=summarize(endpoint),
            synced_at=utc_now(),
        )


def _images(build: Build | None) -> dict[str, str]:
    return {build.artifact_hash: build.image} if build is not None and build.image else {}


def run_deployment(context: Context, deployment_id: int) -> None:
    """Run the row's operation (its `action`); raises TransientError when the provider is down."""
    run = _Run(context, deployment_id)
    row, endpoint, build_row, previous = run.load()
    operations = {"undeploy": _undeploy, "scale": _scale, "apply": _apply, "adopt": _adopt}
    if row.action == "rollback" and previous is None:
        return run.finish(
            "failed", "nothing to roll back", f"nothing is deployed in {row.environment}; deploy first"
        )
    try:
        with context.providers(context.settings, row.environment, _images(build_row)) as provider:
            if row.action in operations:
                return operations[row.action](run, provider, row)
            if row.action == "rollback" and row.release is not None:
                return _roll_back(run, provider, row)
            return _deploy(run, provider, row, endpoint, build_row, previous)
    except DeployError as error:
        if is_transient(error):
            raise TransientError(str(error)) from error
        failed = "undeploy" if row.action == "undeploy" else row.action
        return run.finish("failed", f"{failed} failed: {error}", str(error))


def _deploy(
    run: _Run,
    provider: Provider,
    row: Deployment,
    endpoint: Endpoint,
    build_row: Build | None,
    previous: Deployment | None,
) -> None:
    """A new release (or a rollback of a row without a release number: its build again)."""
    if build_row is None or build_row.status != "succeeded":
        return run.finish(
            "failed", "no build", "the build of this deployment is missing or failed; build again"
        )
    context = run.context
    target = context.target(endpoint, row.environment)
    build = build_result(build_row)
    ring = installed_key_ring() or KeyRing(*context.settings.encryption_secrets)
    with context.sessions() as session:
        secrets = secret_release(row.config, target, secret_values(session, endpoint.id), ring)
    config = desired_config(released_snapshot(row.config, secrets), build.manifest.get("resource", {}))
    run.step(
        "upload", f"{row.action} #{row.id}, attempt {row.attempts}: build {build.sha256[:12]} to {target.key}"
    )
    if row.external_id:
        run.log(f"endpoint {row.external_id} was created or updated by an earlier attempt; resuming")

    def progress(event: RolloutEvent) -> None:
        if event.step is RolloutStep.WAIT and event.endpoint is not None:
            run.save(external_id=event.endpoint.id, url=event.endpoint.url)  # a resumed run finds it
            run.step("wait", event.line)
        elif event.step is RolloutStep.RELEASE:
            run.step("release", event.line)
        else:
            run.log(event.line)

    try:
        require_held_secrets(provider, secrets)
        result = roll_out(
            provider,
            target,
            build,
            config,
            deployed_by=f"dashboard:{row.created_by}",
            progress=progress,
            timeout_s=context.settings.deploy_timeout_s,
            secret_env=secrets.secret_env,
        )
    except DeployError as error:
        if is_transient(error):
            raise
        undone = _undo_resumed(provider, run, previous)
        return run.finish("failed", f"failed: {error}", f"{error}{undone}")
    run.ready(result.endpoint, f"ready at {result.endpoint.url} (release {result.release})")


def _undo_resumed(provider: Provider, run: _Run, previous: Deployment | None) -> str:
    """The library undoes what its own call made; an endpoint an earlier, killed attempt of this
    row created (nothing served the environment before) is deleted here, so nothing is left."""
    row = run.load()[0]
    if previous is not None or not row.external_id:
        return ""
    try:
        cleanup = undeploy(provider, row.external_id)
    except DeployError as error:
        return f"; deleting endpoint {row.external_id} failed too ({error})"
    return "; " + cleanup.after(f"endpoint {row.external_id} (made by an earlier attempt) was deleted")


def _wait(run: _Run, provider: Provider, endpoint: ActualEndpoint) -> ActualEndpoint:
    run.step("wait", "waiting for a ready worker and /ping 200 through the gateway")
    return provider.wait_until_ready(endpoint, run.context.settings.deploy_timeout_s, run.log)


def _roll_back(run: _Run, provider: Provider, row: Deployment) -> None:
    """Serve the release `row.release` again, with the config it ran with (the provider keeps it)."""
    run.step("release", f"rolling endpoint {row.external_id} back to release {row.release}")
    endpoint = roll_back(provider, row.external_id, row.release)
    run.ready(_wait(run, provider, endpoint), f"ready at {endpoint.url} (rollback to #{row.rollback_of_id})")


def _scaling(row: Deployment, provider: Provider) -> dict[str, int]:
    fields = row.config.get("fields", {})
    return {key: int(fields[key]) for key in provider.scaling_fields if key in fields}


def _scale(run: _Run, provider: Provider, row: Deployment) -> None:
    """Apply the row's scaling at once and record it as the endpoint's desired override."""
    scaling = _scaling(row, provider)
    run.step("scale", "scaling: " + ", ".join(f"{k}={v}" for k, v in scaling.items()))
    try:
        endpoint = apply_scaling(provider, row.external_id, scaling)
    except EndpointNotFoundError:
        return run.finish("failed", "gone", f"endpoint {row.external_id} no longer exists; deploy again")
    run.ready(endpoint, "scaled: " + ", ".join(f"{k}={v}" for k, v in scaling.items()))


def _apply(run: _Run, provider: Provider, row: Deployment) -> None:
    """ "Apply stored config": serve the row's config again. Drift outside the scaling fields (env,
    build) needs its release back first; then the stored scaling is applied and recorded."""
    drifted = [f["name"] for f in row.observed.get("drift", [])]
    if any(name not in provider.scaling_fields for name in drifted) and row.release is not None:
        run.step("release", f"serving release {row.release} again (drift in {', '.join(drifted)})")
        roll_back(provider, row.external_id, row.release)
    _scale(run, provider, row)


def _adopt(run: _Run, provider: Provider, row: Deployment) -> None:
    """ "Adopt serving config": the serving scaling becomes the desired one (recorded on the provider)."""
    _scale(run, provider, row)


def _undeploy(run: _Run, provider: Provider, row: Deployment) -> None:
    """Delete the endpoint; the library returns only once the provider confirms it is gone."""
    if not row.external_id:
        return run.finish("deleted", "nothing was deployed; nothing to delete")
    run.step("delete", f"deleting endpoint {row.external_id} (every worker stops)")
    cleanup = undeploy(provider, row.external_id)
    deleted = f"endpoint {row.external_id} deleted; nothing is running"
    run.finish("deleted", cleanup.after(deleted), observed={})


def fail_deployment(context: Context, deployment_id: int, message: str) -> None:
    """Mark a deployment failed after its retries ran out."""
    _Run(context, deployment_id).finish("failed", f"failed: {message}", message)


def scaling_of(fields: Mapping[str, Any]) -> dict[str, int]:
    """The scaling fields of a snapshot's fields."""
    return {key: int(fields[key]) for key in SCALING_FIELDS if key in fields}
