"""The web side of builds and deployments: write the intent (a row) and its audit event.

Each function takes the session first and flushes; the view commits and only then enqueues the
task, so a worker never looks for a row that is not there yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.configs import ConfigState, describe_changes, resource_of, state_of
from dashboard.forms import INT_MAX
from dashboard.images import check_image_reference
from dashboard.models import Build, Deployment, Endpoint, User, utc_now
from dashboard.queries import (
    active_deployment,
    add_audit_event,
    current_deployment,
    latest_build,
    live_deployments,
)
from podroute.resources import FieldProblem, ResourceConfigError

SCALING_FIELDS: dict[str, str] = {
    "workersMin": "workers_min",
    "workersMax": "workers_max",
    "idleTimeout": "idle_timeout",
    "scalerValue": "scaler_value",
}
"""The scaling controls: Flash field -> Endpoint column."""

SCALING_COLUMNS: dict[str, str] = {**SCALING_FIELDS, "executionTimeoutMs": "execution_timeout_ms"}
"""Every field a provider scales at once: Flash field -> Endpoint column."""


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


def config_snapshot(endpoint: Endpoint) -> dict[str, Any]:
    """What a deployment deploys: the config fields, the env (secret values included: never shown)."""
    state = state_of(endpoint)
    return {
        "fields": state.fields,
        "env": {key: value for key, (value, _secret) in state.env.items()},
        "secrets": sorted(key for key, (_value, secret) in state.env.items() if secret),
    }


def _state(config: dict[str, Any]) -> ConfigState:
    secrets = set(config.get("secrets", []))
    return ConfigState(
        dict(config.get("fields", {})),
        {key: (value, key in secrets) for key, value in config.get("env", {}).items()},
    )


def release_diff(release: Deployment, current: Deployment) -> dict[str, list[Any]]:
    """Field -> [in `release`, in `current`] for config and build; secrets appear only as '***'."""
    changes = describe_changes(_state(release.config), _state(current.config))
    old_hash, new_hash = release.build_hash, current.build_hash
    if old_hash != new_hash:
        changes = {"build": [old_hash[:12] or None, new_hash[:12] or None], **changes}
    return changes


def draft_changes(current: Deployment, endpoint: Endpoint) -> dict[str, list[Any]]:
    """Field -> [serving, draft]: how the stored draft differs from the config `current` released."""
    return describe_changes(_state(current.config), state_of(endpoint))


def restored_by_rollback(current: Deployment) -> bool:
    """True when what serves came from a rollback (also after scaling the restored release)."""
    return current.action == "rollback" or (current.action == "scale" and current.rollback_of_id is not None)


async def _refuse_if_busy(session: AsyncSession, endpoint: Endpoint, environment: str) -> None:
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
    await _refuse_if_busy(session, endpoint, environment)
    current = await current_deployment(session, endpoint.id, environment)
    if current is not None and restored_by_rollback(current) and not confirm_draft:
        changes = draft_changes(current, endpoint)
        if changes:
            raise DraftDiffersError(current, changes)
    build = await latest_build(session, endpoint.id, succeeded=True)
    if build is None:
        raise ReleaseConflictError("there is no successful build yet: press Build first")
    if provider == "runpod" and not build.image:
        raise ReleaseConflictError(
            f"build #{build.id} has no image, and {environment} deploys to RunPod, which runs images: "
            "build and push it with the commands in the build panel, then paste the image reference"
        )
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
    await _refuse_if_busy(session, endpoint, environment)
    current = await current_deployment(session, endpoint.id, environment)
    if current is None:
        raise ReleaseConflictError(f"nothing is deployed in {environment}: deploy first")
    restorable = target.build_id is not None or target.release is not None
    if not restorable or target.action == "undeploy" or target.status != "ready":
        raise ReleaseConflictError(f"deployment #{target.id} cannot be rolled back to")
    if target.id == current.id:
        raise ReleaseConflictError(f"deployment #{target.id} is already serving {environment}")
    deployment = Deployment(
        endpoint_id=endpoint.id,
        build_id=target.build_id,
        environment=environment,
        provider=current.provider,
        action="rollback",
        status="queued",
        step="queued",
        rollback_of_id=target.id,
        external_id=current.external_id,
        url=current.url,
        release=target.release,
        build_hash=target.build_hash,
        config=target.config,
        created_by=user.username,
        log=[f"queued: roll {environment} back to deployment #{target.id}"],
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
    await _refuse_if_busy(session, endpoint, environment)
    current = await current_deployment(session, endpoint.id, environment)
    if current is None:
        raise ReleaseConflictError(f"nothing is deployed in {environment}")
    deployment = Deployment(
        endpoint_id=endpoint.id,
        build_id=current.build_id,
        environment=environment,
        provider=current.provider,
        action="undeploy",
        status="deleting",
        step="queued",
        external_id=current.external_id,
        url=current.url,
        release=current.release,
        build_hash=current.build_hash,
        config=current.config,
        created_by=user.username,
        log=[f"queued: delete endpoint {current.external_id}"],
    )
    session.add(deployment)
    await session.flush()
    await add_audit_event(session, user, "undeploy", endpoint, {"environment": [environment, None]})
    return deployment


@dataclass
class ScalingForm:
    """The scaling controls as typed, with errors beside each field."""

    values: dict[str, str]
    errors: dict[str, list[str]]

    @classmethod
    def of(cls, endpoint: Endpoint) -> ScalingForm:
        """The form showing the endpoint's stored scaling."""
        return cls({flash: str(getattr(endpoint, column)) for flash, column in SCALING_FIELDS.items()}, {})


def parse_scaling(endpoint: Endpoint, data: Any) -> tuple[ScalingForm, dict[str, int] | None]:
    """Read the scaling form; validate the endpoint's whole config with it (podroute's rules)."""
    form = ScalingForm({flash: str(data.get(flash, "")).strip()[:12] for flash in SCALING_FIELDS}, {})
    wanted: dict[str, int] = {}
    for flash, text in form.values.items():
        try:
            wanted[flash] = int(text)
        except ValueError:
            form.errors.setdefault(flash, []).append("enter a whole number")
            continue
        if not 0 <= wanted[flash] <= INT_MAX:
            form.errors.setdefault(flash, []).append(f"must be between 0 and {INT_MAX}")
    if form.errors:
        return form, None
    before = {column: getattr(endpoint, column) for column in SCALING_FIELDS.values()}
    try:
        for flash, column in SCALING_FIELDS.items():
            setattr(endpoint, column, wanted[flash])
        resource_of(endpoint)
    except ResourceConfigError as error:
        _add_problems(form, error.problems)
        return form, None
    finally:
        for column, value in before.items():
            setattr(endpoint, column, value)
    return form, wanted


def _add_problems(form: ScalingForm, problems: list[FieldProblem]) -> None:
    for problem in problems:
        named = [flash for flash in SCALING_FIELDS if flash in problem.field or flash in problem.message]
        for flash in named or ["workersMax"]:
            form.errors.setdefault(flash, []).append(problem.message)


async def apply_scaling(
    session: AsyncSession, user: User, endpoint: Endpoint, wanted: dict[str, int]
) -> dict[str, list[Any]]:
    """Store validated scaling on the endpoint (the desired state) and audit it; returns the changes."""
    changes = {
        flash: [getattr(endpoint, column), wanted[flash]]
        for flash, column in SCALING_FIELDS.items()
        if getattr(endpoint, column) != wanted[flash]
    }
    if changes:
        for flash, column in SCALING_FIELDS.items():
            setattr(endpoint, column, wanted[flash])
        endpoint.version += 1
        endpoint.updated_at = utc_now()
        await session.flush()
        await add_audit_event(session, user, "scale", endpoint, changes)
    return changes


@dataclass
class ScalingPlan:
    """What saving the scaling controls queued: one `scale` row per live environment, and the
    environments where an operation is running (they get the new scaling with their next deploy)."""

    changes: dict[str, list[Any]]
    rows: list[Deployment]
    busy: list[str]


async def queue_scaling(
    session: AsyncSession, user: User, endpoint: Endpoint, wanted: dict[str, int], environments: list[str]
) -> ScalingPlan:
    """Store the scaling and queue a `scale` history entry for every environment it is live in.

    Each entry snapshots the serving config with the new scaling: past rows never change, and the
    history shows the scaling change with its diff. The sync applies entries whose task never ran.
    """
    changes = await apply_scaling(session, user, endpoint, wanted)
    plan = ScalingPlan(changes, [], [])
    if not changes:
        return plan
    for environment in environments:
        current = await current_deployment(session, endpoint.id, environment)
        if current is None:
            continue
        if await active_deployment(session, endpoint.id, environment) is not None:
            plan.busy.append(environment)
            continue
        fields = {**current.config.get("fields", {}), **wanted}
        if fields == current.config.get("fields", {}):
            continue
        diff = ", ".join(f"{k} {v[0]} → {v[1]}" for k, v in changes.items())
        row = Deployment(
            endpoint_id=endpoint.id,
            build_id=current.build_id,
            environment=environment,
            provider=current.provider,
            action="scale",
            status="queued",
            step="queued",
            external_id=current.external_id,
            url=current.url,
            release=current.release,
            build_hash=current.build_hash,
            rollback_of_id=current.rollback_of_id if restored_by_rollback(current) else None,
            config={**current.config, "fields": fields},
            created_by=user.username,
            log=[f"queued: scaling {diff}"],
        )
        session.add(row)
        plan.rows.append(row)
    await session.flush()
    return plan


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


def _follow_up(current: Deployment, user: User, action: str, config: dict[str, Any], line: str) -> Deployment:
    """A queued operation on the serving endpoint that keeps its release (scale, apply, adopt)."""
    return Deployment(
        endpoint_id=current.endpoint_id,
        build_id=current.build_id,
        environment=current.environment,
        provider=current.provider,
        action=action,
        status="queued",
        step="queued",
        external_id=current.external_id,
        url=current.url,
        release=current.release,
        build_hash=current.build_hash,
        rollback_of_id=current.rollback_of_id if restored_by_rollback(current) else None,
        config=config,
        observed={"drift": list(current.observed.get("drift", []))},
        created_by=user.username,
        log=[line],
    )


async def _serving_with_drift(session: AsyncSession, endpoint: Endpoint, environment: str) -> Deployment:
    await _refuse_if_busy(session, endpoint, environment)
    current = await current_deployment(session, endpoint.id, environment)
    if current is None:
        raise ReleaseConflictError(f"nothing is deployed in {environment}")
    if not current.observed.get("drift"):
        raise ReleaseConflictError(f"{environment} serves the stored config; there is no drift to end")
    return current


async def queue_apply_stored(
    session: AsyncSession, user: User, endpoint: Endpoint, environment: str
) -> Deployment:
    """Queue "apply stored config": the provider serves the serving row's snapshot again."""
    current = await _serving_with_drift(session, endpoint, environment)
    names = ", ".join(f["name"] for f in current.observed["drift"])
    row = _follow_up(current, user, "apply", current.config, f"queued: apply the stored config ({names})")
    session.add(row)
    await session.flush()
    await add_audit_event(session, user, "apply-stored", endpoint, {"environment": [None, environment]})
    return row


async def queue_adopt_serving(
    session: AsyncSession, user: User, endpoint: Endpoint, environment: str
) -> Deployment:
    """Queue "adopt serving config": the serving scaling becomes the stored (and desired) one.

    The new entry snapshots the serving values; the endpoint's scaling controls take them too.
    Env keys and builds cannot be adopted from a provider (it keeps no env values, and a build is
    a release): for those, deploy or apply the stored config.
    """
    current = await _serving_with_drift(session, endpoint, environment)
    drift = {f["name"]: f["serving"] for f in current.observed["drift"]}
    scaling = {name: int(value) for name, value in drift.items() if name in SCALING_COLUMNS}
    if not scaling:
        raise ReleaseConflictError(
            f"{environment} differs in {', '.join(drift)}, which only a release changes: deploy, or "
            "apply the stored config"
        )
    fields = {**current.config.get("fields", {}), **scaling}
    changes = {name: [current.config.get("fields", {}).get(name), value] for name, value in scaling.items()}
    for name, value in scaling.items():
        setattr(endpoint, SCALING_COLUMNS[name], value)
    endpoint.version += 1
    endpoint.updated_at = utc_now()
    line = "queued: adopt the serving " + ", ".join(f"{k}={v}" for k, v in scaling.items())
    row = _follow_up(current, user, "adopt", {**current.config, "fields": fields}, line)
    session.add(row)
    await session.flush()
    await add_audit_event(
        session, user, "adopt-serving", endpoint, {"environment": [None, environment], **changes}
    )
    return row
