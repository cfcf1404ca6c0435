"""The web side of builds and deployments: write the intent (a row) and its audit event.

Each function takes the session first and flushes; the view commits and only then enqueues the
task, so a worker never looks for a row that is not there yet. Scaling is in `dashboard.scaling`,
the drift actions in `dashboard.drift`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.images import check_image_reference
from dashboard.models import Build, Deployment, Endpoint, User, utc_now
from dashboard.queries import (
    active_deployment,
    add_audit_event,
    current_deployment,
    latest_build,
    live_deployments,
)
from dashboard.snapshots import config_snapshot, draft_changes, next_row, restored_by_rollback


class ReleaseConflictError(RuntimeError):
    """The operation cannot start now (another is running, nothing is built, ...); says what to do."""


class DraftDiffersError(ReleaseConflictError):
    """A rollback restored an older config; deploying now would bring the draft back: ask first."""

    def __init__(self, current: Deployment, changes: dict[str, list[Any]]) -> None:
        self.current = current
        self.changes = changes
        super().__init__(
            f"{current.environment} serves the config of #{current.rollback_of_id or current.id} "
            "(restored by a rollback) and your draft differs; confirm to deploy the draft"
        )


async def refuse_if_busy(session: AsyncSession, endpoint: Endpoint, environment: str) -> None:
    """ReleaseConflictError when an operation is still running for the endpoint in `environment`."""
    running = await active_deployment(session, endpoint.id, environment)
    if running is not None:
        raise ReleaseConflictError(
            f"{running.action} #{running.id} is still running in {environment}; wait for it to finish"
        )


async def queue_build(session: AsyncSession, user: User, endpoint: Endpoint) -> Build:
    """A queued build of the endpoint's service (refused while one is already running)."""
    newest = await latest_build(session, endpoint.id)
    if newest is not None and newest.active:
        raise ReleaseConflictError(f"build #{newest.id} is still running; wait for it to finish")
    if not endpoint.service or not endpoint.resource:
        raise ReleaseConflictError(
            "this endpoint is not linked to code: import it from code, or fill Service and "
            "Resource in code on the edit form"
        )
    build = Build(endpoint_id=endpoint.id, status="queued", created_by=user.username, log=["queued"])
    session.add(build)
    await session.flush()
    await add_audit_event(session, user, "build", endpoint, {"build": [None, build.id]})
    return build


def deployable_build(build: Build | None, environment: str, provider: str) -> Build:
    """`build` (the newest successful one), or ReleaseConflictError saying why it cannot be
    deployed to `environment`: there is none yet, or RunPod needs an image it does not have."""
    if build is None:
        raise ReleaseConflictError("there is no successful build yet: press Build first")
    if provider == "runpod" and not build.image:
        raise ReleaseConflictError(
            f"build #{build.id} has no image, and {environment} deploys to RunPod, which runs images: "
            "build and push it with the commands in the build panel, then paste the image reference"
        )
    return build


async def queue_deploy(
    session: AsyncSession,
    user: User,
    endpoint: Endpoint,
    environment: str,
    provider: str,
    *,
    confirm_draft: bool = False,
) -> Deployment:
    """A queued deployment of the newest successful build with the endpoint's current config.

    After a rollback, DraftDiffersError asks first (unless `confirm_draft`) when the draft differs
    from the restored config, so a rolled-back change never comes back silently.
    """
    await refuse_if_busy(session, endpoint, environment)
    current = await current_deployment(session, endpoint.id, environment)
    if current is not None and restored_by_rollback(current) and not confirm_draft:
        changes = draft_changes(current, endpoint)
        if changes:
            raise DraftDiffersError(current, changes)
    build = deployable_build(await latest_build(session, endpoint.id, succeeded=True), environment, provider)
    deployment = Deployment(
        endpoint_id=endpoint.id,
        build_id=build.id,
        environment=environment,
        provider=provider,
        action="deploy",
        status="queued",
        step="queued",
        config=config_snapshot(endpoint),
        build_hash=build.artifact_hash,
        created_by=user.username,
        log=[f"queued: build {build.artifact_hash[:12]} to {environment} ({provider})"],
    )
    session.add(deployment)
    await session.flush()
    await add_audit_event(
        session, user, "deploy", endpoint, {"environment": [None, environment], "build": [None, build.id]}
    )
    return deployment


async def set_build_image(
    session: AsyncSession, user: User, endpoint: Endpoint, build: Build, text: str
) -> str:
    """Store the image reference of a build (checked; ImageError says what is wrong) and audit it."""
    if build.endpoint_id != endpoint.id or build.status != "succeeded":
        raise ReleaseConflictError(f"build #{build.id} has not succeeded: wait for it, or build again")
    image = check_image_reference(text)
    if image != build.image:
        await add_audit_event(
            session,
            user,
            "image",
            endpoint,
            {"build": [None, build.id], "image": [build.image or None, image]},
        )
        build.image = image
        build.updated_at = utc_now()
        await session.flush()
    return image


async def queue_rollback(
    session: AsyncSession, user: User, endpoint: Endpoint, target: Deployment
) -> Deployment:
    """A queued rollback to `target`: its build and the whole config it ran with (scaling included)."""
    environment = target.environment
    await refuse_if_busy(session, endpoint, environment)
    current = await current_deployment(session, endpoint.id, environment)
    if current is None:
        raise ReleaseConflictError(f"nothing is deployed in {environment}: deploy first")
    restorable = target.build_id is not None or target.release is not None
    if not restorable or target.action == "undeploy" or target.status != "ready":
        raise ReleaseConflictError(f"deployment #{target.id} cannot be rolled back to")
    if target.id == current.id:
        raise ReleaseConflictError(f"deployment #{target.id} is already serving {environment}")
    line = f"queued: roll {environment} back to deployment #{target.id}"
    deployment = next_row(
        current, user, "rollback", target.config, line, release_of=target, rollback_of_id=target.id
    )
    session.add(deployment)
    await session.flush()
    await add_audit_event(
        session,
        user,
        "rollback",
        endpoint,
        {"environment": [None, environment], "to": [current.id, target.id]},
    )
    return deployment


async def queue_undeploy(
    session: AsyncSession, user: User, endpoint: Endpoint, environment: str
) -> Deployment:
    """A queued undeploy of whatever serves the environment."""
    await refuse_if_busy(session, endpoint, environment)
    current = await current_deployment(session, endpoint.id, environment)
    if current is None:
        raise ReleaseConflictError(f"nothing is deployed in {environment}")
    line = f"queued: delete endpoint {current.external_id}"
    deployment = next_row(current, user, "undeploy", current.config, line, status="deleting")
    session.add(deployment)
    await session.flush()
    await add_audit_event(session, user, "undeploy", endpoint, {"environment": [environment, None]})
    return deployment


async def queue_undeploy_all_then_delete(
    session: AsyncSession, user: User, endpoint: Endpoint
) -> list[Deployment]:
    """Queue an undeploy for every environment the endpoint serves, and mark the config for deletion.

    The worker deletes the config only once every provider endpoint of it is confirmed gone; until
    then the config (and its history) stays. Refused while another operation runs.
    """
    live = await live_deployments(session, endpoint.id)
    running = [row for row in live if row.active and row.action != "undeploy"]
    if running:
        row = running[0]
        raise ReleaseConflictError(
            f"{row.action} #{row.id} is still running in {row.environment}; wait for it to finish"
        )
    queued = []
    for row in live:
        running_undeploy = await active_deployment(session, endpoint.id, row.environment)
        if not row.active and running_undeploy is None:
            queued.append(await queue_undeploy(session, user, endpoint, row.environment))
    endpoint.delete_requested_at = utc_now()
    endpoint.delete_requested_by = user.username
    await session.flush()
    await add_audit_event(
        session,
        user,
        "delete-requested",
        endpoint,
        {"undeploy": [None, sorted(row.environment for row in queued)]},
    )
    return queued
