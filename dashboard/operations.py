"""What the dashboard changes, each with its audit event: create, update, delete, import from code.

Functions take the session first and flush; the caller's transaction commits (or rolls back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.configs import EndpointDraft, apply_draft, describe_changes, resource_class, state_of
from dashboard.discovery import DiscoveredResource, Discovery
from dashboard.models import Deployment, Endpoint, EnvVar, User, utc_now
from dashboard.queries import (
    add_audit_event,
    find_endpoints_for_code,
    get_endpoint_by_name,
    live_deployments,
)
from podroute.resources import FieldProblem, ResourceConfigError


class NameTakenError(ValueError):
    """Another endpoint already has this name."""


class VersionConflictError(RuntimeError):
    """The endpoint changed since the form was opened."""

    def __init__(self, current: int) -> None:
        self.current = current
        super().__init__(
            f"someone else saved this endpoint since you opened the form (it is now at version {current}); "
            "reload the page to see their changes, then apply yours again"
        )


async def _check_name_free(session: AsyncSession, name: str, endpoint_id: int | None) -> None:
    other = await get_endpoint_by_name(session, name)
    if other is not None and other.id != endpoint_id:
        raise NameTakenError(f"an endpoint named {name!r} already exists; choose another name")


class TargetTakenError(ValueError):
    """Another endpoint config already deploys this service's resource: both would land on one
    provider endpoint per environment (the naming rule is per target), so the second is refused."""

    def __init__(self, service: str, resource: str, other: Endpoint) -> None:
        self.other = other
        super().__init__(
            f"{service}/{resource} is already deployed by the endpoint config {other.name!r} (id "
            f"{other.id}); two configs of one resource would share its provider endpoints: edit "
            f"{other.name!r} instead, or point this one at another resource"
        )


async def _check_target_free(session: AsyncSession, draft: EndpointDraft, endpoint_id: int | None) -> None:
    if not draft.service or not draft.resource_name:
        return  # not linked to code: nothing is deployed from it
    for other in await find_endpoints_for_code(session, draft.service, draft.resource_name):
        if other.id != endpoint_id:
            raise TargetTakenError(draft.service, draft.resource_name, other)


async def _flush(session: AsyncSession, name: str) -> None:
    try:
        await session.flush()
    except IntegrityError:
        raise NameTakenError(f"an endpoint named {name!r} already exists; choose another name") from None


async def create_endpoint(session: AsyncSession, user: User | None, draft: EndpointDraft) -> Endpoint:
    """Store a new endpoint config and audit it (NameTakenError, TargetTakenError)."""
    await _check_name_free(session, draft.resource.name, None)
    await _check_target_free(session, draft, None)
    endpoint = Endpoint(compute=draft.compute, version=1, created_at=utc_now(), updated_at=utc_now())
    endpoint.env_vars = []
    apply_draft(endpoint, draft)
    session.add(endpoint)
    await _flush(session, draft.resource.name)
    await add_audit_event(session, user, "create", endpoint, describe_changes(None, state_of(endpoint)))
    return endpoint


async def update_endpoint(
    session: AsyncSession, user: User | None, endpoint: Endpoint, draft: EndpointDraft, version: int | None
) -> dict[str, list[Any]]:
    """Apply a draft to a stored endpoint (refusing a stale form, a taken name or a resource another
    config deploys) and audit what changed."""
    if version is not None and version != endpoint.version:
        raise VersionConflictError(endpoint.version)
    await _check_name_free(session, draft.resource.name, endpoint.id)
    await _check_target_free(session, draft, endpoint.id)
    before = state_of(endpoint)
    apply_draft(endpoint, draft)
    changes = describe_changes(before, state_of(endpoint))
    if changes:
        endpoint.version += 1
        endpoint.updated_at = utc_now()
        await _flush(session, draft.resource.name)
        await add_audit_event(session, user, "update", endpoint, changes)
    return changes


class LiveDeploymentsError(RuntimeError):
    """The endpoint is deployed somewhere: deleting its config now would leave billed endpoints
    nobody can see. `live` lists them; "undeploy all, then delete" is the way out."""

    def __init__(self, live: list[Deployment]) -> None:
        self.live = live
        where = ", ".join(f"{row.environment} (endpoint {row.external_id or 'not yet made'})" for row in live)
        super().__init__(
            f"this endpoint is still deployed in {where}: undeploy it first, or use "
            "'Undeploy all, then delete'"
        )


async def delete_endpoint(session: AsyncSession, user: User | None, endpoint: Endpoint) -> None:
    """Delete an endpoint config (its env, builds and deployments go with it) and audit it.

    Refused with LiveDeploymentsError while any environment serves it or runs an operation on it.
    """
    live = await live_deployments(session, endpoint.id)
    if live:
        raise LiveDeploymentsError(live)
    await add_audit_event(session, user, "delete", endpoint, {"name": [endpoint.name, None]})
    await session.delete(endpoint)
    await session.flush()


@dataclass
class ImportItem:
    """What importing one discovered resource would do."""

    found: DiscoveredResource
    action: str  # "create", "update", "unchanged", "invalid" or "ambiguous"
    endpoint: Endpoint | None
    changes: dict[str, list[Any]] = field(default_factory=dict)
    problems: list[FieldProblem] = field(default_factory=list)
    warning: str = ""

    @property
    def key(self) -> str:
        """The form value that selects this item: 'service/resource'."""
        return f"{self.found.service}/{self.found.resource}"


def draft_from_code(found: DiscoveredResource, existing: Endpoint | None) -> EndpointDraft:
    """The config a discovered resource describes, merged with an existing endpoint's env and name.

    Variables declared in code set their values; variables only in the dashboard (secrets, say) are
    kept; a variable that is secret in the dashboard stays secret.
    """
    fields = {k: v for k, v in found.config.items() if k not in ("type", "scalerType")}
    compute = found.compute
    allowed = set(resource_class(compute).model_fields)
    fields = {k: v for k, v in fields.items() if k in allowed}
    stored = {var.key: var for var in existing.env_vars} if existing else {}
    env = {key: var.value for key, var in stored.items()}
    env.update(fields.get("env", {}))
    fields["env"] = env
    if existing is not None:
        fields["name"] = existing.name
    resource = resource_class(compute)(**fields)
    secrets = {key for key, var in stored.items() if var.secret}
    return EndpointDraft(resource, found.service, found.resource, secrets)


def _preview(draft: EndpointDraft, existing: Endpoint | None) -> dict[str, list[Any]]:
    scratch = Endpoint(compute=draft.compute)
    scratch.env_vars = (
        [EnvVar(key=v.key, value=v.value, secret=v.secret) for v in existing.env_vars] if existing else []
    )
    apply_draft(scratch, draft)
    return describe_changes(state_of(existing) if existing else None, state_of(scratch))


async def plan_import(session: AsyncSession, discovery: Discovery) -> list[ImportItem]:
    """For each discovered resource: create, update (with the changes) or unchanged."""
    items: list[ImportItem] = []
    for found in discovery.resources:
        matches = await find_endpoints_for_code(session, found.service, found.resource)
        if len(matches) > 1:
            names = ", ".join(endpoint.name for endpoint in matches)
            warning = (
                f"{len(matches)} stored endpoints deploy {found.service}/{found.resource} ({names}): "
                "import cannot tell which one to update; delete or re-point all but one, then import "
                "(saving refuses a second config of one resource; these predate that rule)"
            )
            items.append(ImportItem(found, "ambiguous", None, warning=warning))
            continue
        existing = matches[0] if matches else await get_endpoint_by_name(session, found.resource)
        try:
            draft = draft_from_code(found, existing)
        except ResourceConfigError as error:
            items.append(ImportItem(found, "invalid", existing, problems=error.problems))
            continue
        changes = _preview(draft, existing)
        action = "create" if existing is None else ("update" if changes else "unchanged")
        items.append(ImportItem(found, action, existing, changes))
    return items


@dataclass
class ImportOutcome:
    """How many configs an import created and updated."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


async def apply_import(session: AsyncSession, user: User | None, items: list[ImportItem]) -> ImportOutcome:
    """Create or update the endpoints of the chosen items, each audited as an import."""
    outcome = ImportOutcome()
    for item in items:
        if item.action not in ("create", "update"):
            continue
        draft = draft_from_code(item.found, item.endpoint)
        if item.endpoint is None:
            endpoint = await create_endpoint(session, user, draft)
            outcome.created.append(endpoint.name)
            continue
        changes = await update_endpoint(session, user, item.endpoint, draft, None)
        if changes:
            outcome.updated.append(item.endpoint.name)
    if outcome.created or outcome.updated:
        summary = {"created": [None, outcome.created], "updated": [None, outcome.updated]}
        await add_audit_event(session, user, "import", None, summary, target_name="from code")
    return outcome
