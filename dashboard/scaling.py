"""The scaling controls: read and validate the form, store the desired scaling, queue it per
environment as its own history entry (past snapshots never change)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.configs import resource_of
from dashboard.forms import INT_MAX
from dashboard.models import Deployment, Endpoint, User, utc_now
from dashboard.queries import active_deployment, add_audit_event, current_deployment
from dashboard.snapshots import next_row, restored_by_rollback
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
        restored = current.rollback_of_id if restored_by_rollback(current) else None
        config = {**current.config, "fields": fields}
        row = next_row(current, user, "scale", config, f"queued: scaling {diff}", rollback_of_id=restored)
        session.add(row)
        plan.rows.append(row)
    await session.flush()
    return plan
