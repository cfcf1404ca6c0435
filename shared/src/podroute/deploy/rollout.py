"""The one rollout engine: the CLI and the dashboard's Celery tasks both deploy through it.

    check secrets (warn about credential-like plain env values; fail naming every referenced
    secret the provider lacks; store the caller's secret env values as provider secrets) -> upload
    -> find the target's endpoint (by name and marker) -> create or update -> wait until healthy
    (a ready worker of the new release and /ping 200 through the gateway) -> result

One undo rule: a *new* endpoint that never got healthy is deleted (and the provider confirms it is
gone), with the provider secrets stored for it; an *existing* endpoint gets its previous release
back. Idempotent: the endpoint is found by its name and marker before anything is created, so a
retried or re-run rollout after a crash lands on the same endpoint; a release of the same build and
config that a lost rollout already made is reused, not made twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from podroute.build import BuildResult
from podroute.deploy.endpoint_secrets import SecretCleanup, remove_owned_secrets
from podroute.deploy.model import ActualEndpoint, DesiredConfig, Target, endpoint_name
from podroute.deploy.preflight import (
    SecretEnv,
    credential_lines,
    require_secrets,
    store_secret_env,
    with_secret_env,
)
from podroute.providers.base import DeployError, EndpointNotFoundError, Provider

log = logging.getLogger("podroute.deploy")


class RolloutStep(StrEnum):
    """The step a rollout is at; every progress event names one, so no caller reads its text."""

    PREFLIGHT = "preflight"
    """Checks before anything is made: credentials the config needs, secrets kept at the provider."""
    UPLOAD = "upload"
    """The build is being uploaded (RunPod: its image is checked)."""
    RELEASE = "release"
    """The endpoint is being created, or updated to a new release (`endpoint`: the existing one)."""
    WAIT = "wait"
    """The release exists (`endpoint` says which): waiting for a ready worker and /ping 200."""
    NOTE = "note"
    """A detail of the current step (the provider's lines while waiting, e.g. worker output)."""


@dataclass(frozen=True)
class RolloutEvent:
    """One progress event: the step, a line for people, and the endpoint once it is known."""

    step: RolloutStep
    line: str
    endpoint: ActualEndpoint | None = None


RolloutProgress = Callable[[RolloutEvent], None]
"""Receives every `RolloutEvent` of a rollout, in order."""


def _quiet(_event: RolloutEvent) -> None:
    return None


@dataclass(frozen=True)
class RolloutResult:
    """A finished rollout: the healthy endpoint and whether this rollout created it."""

    target: Target
    endpoint: ActualEndpoint
    created: bool

    @property
    def release(self) -> int:
        """The release number now serving."""
        return self.endpoint.release.number if self.endpoint.release else 0


def find_endpoint(provider: Provider, target: Target) -> ActualEndpoint | None:
    """The target's endpoint: the marked one named `endpoint_name(target)`, if the provider has it.

    DeployError when there are several (something created a duplicate outside this engine): the
    message names them, so the extra one can be deleted with `podroute deploy orphans --delete`.
    """
    name = endpoint_name(target)
    found = [e for e in provider.list_endpoints(target.project) if e.name == name and e.target == target]
    if len(found) > 1:
        ids = ", ".join(e.id for e in found)
        raise DeployError(
            f"{target.key} in {target.environment} has several endpoints ({ids}); delete the extra ones "
            "with 'podroute deploy orphans --delete ID' (or the dashboard's Orphans page)"
        )
    return found[0] if found else None


def roll_out(
    provider: Provider,
    target: Target,
    build: BuildResult,
    config: DesiredConfig,
    *,
    deployed_by: str,
    progress: RolloutProgress = _quiet,
    timeout_s: float = 300.0,
    secret_env: SecretEnv | None = None,
) -> RolloutResult:
    """Deploy `build` with `config` as the target's endpoint; returns once it answers /ping 200.

    `progress` gets PREFLIGHT events (if any), an UPLOAD, a RELEASE and a WAIT event, then NOTE
    events while waiting.

    `secret_env` holds env values to keep as provider secrets (the dashboard's "secret" variables):
    the release's env refers to them (`{{ RUNPOD_SECRET_<name> }}`) and never holds a value.
    A secret the env refers to that the provider lacks fails the rollout before anything is made.
    Raises DeployError after undoing (see the module docstring); the message says what was undone.
    ProviderUnavailableError passes through untouched: the caller may retry the whole call.
    """
    key = f"{target.key} ({target.environment})"
    config = with_secret_env(target, config, secret_env)
    for line in credential_lines(target, config):
        progress(RolloutEvent(RolloutStep.PREFLIGHT, line))
    provided = secret_env.names(target).values() if secret_env else ()
    require_secrets(provider, [config], target.environment, provided=provided)
    if secret_env is not None and secret_env.values:
        created = store_secret_env(provider, target, secret_env)
        line = f"{target.key}: secret env values kept as provider secrets ({len(created)} new)"
        progress(RolloutEvent(RolloutStep.PREFLIGHT, line))
    size_kb = build.artifact.stat().st_size / 1024 if build.artifact.is_file() else 0.0
    line = f"{target.key}: uploading build {build.sha256[:12]} ({size_kb:.0f} KiB)"
    progress(RolloutEvent(RolloutStep.UPLOAD, line))
    provider.upload(build)
    existing = find_endpoint(provider, target)
    previous = existing.release.number if existing and existing.release else None
    if existing is not None:
        line = f"{target.key}: rolling endpoint {existing.id} over to the new build"
        progress(RolloutEvent(RolloutStep.RELEASE, line, existing))
        endpoint = provider.update(existing.id, build, config, deployed_by=deployed_by)
    else:
        progress(
            RolloutEvent(RolloutStep.RELEASE, f"{target.key}: creating endpoint {endpoint_name(target)}")
        )
        endpoint = provider.create(target, build, config, deployed_by=deployed_by)
    log.info("rollout of %s: endpoint %s, release %s", key, endpoint.id, _number(endpoint))
    line = f"{target.key}: waiting for /ping 200 through the gateway"
    progress(RolloutEvent(RolloutStep.WAIT, line, endpoint))

    def note(detail: str) -> None:
        progress(RolloutEvent(RolloutStep.NOTE, detail, endpoint))

    try:
        healthy = provider.wait_until_ready(endpoint, timeout_s, note)
    except DeployError as error:
        raise DeployError(f"{target.key}: {error}\n  {_undo(provider, endpoint, previous)}") from None
    return RolloutResult(target=target, endpoint=healthy, created=existing is None)


def _number(endpoint: ActualEndpoint) -> int:
    return endpoint.release.number if endpoint.release else 0


def _undo(provider: Provider, endpoint: ActualEndpoint, previous: int | None) -> str:
    """The one undo rule; returns what it did, for the error message."""
    try:
        if previous is None:
            cleanup = undeploy(provider, endpoint.id)
            return cleanup.after("the new endpoint was deleted")
        if previous == _number(endpoint):
            return "the release that was serving before keeps serving"
        provider.rollback(endpoint.id, previous)
        return f"rolled back: the previous release (#{previous}) keeps serving"
    except DeployError as error:
        return f"undoing it failed too ({error}); check endpoint {endpoint.id} on the provider"


def undeploy(provider: Provider, endpoint_id: str) -> SecretCleanup:
    """Delete an endpoint, then the provider secrets stored for its secret env values; returns only
    once the provider confirms the endpoint is gone (already gone is fine: nothing to clean up).
    The delete never waits on the read that finds the secrets: if that read fails, the endpoint is
    deleted all the same and the result says its secrets were not looked for."""
    try:
        endpoint = provider.status(endpoint_id)
    except EndpointNotFoundError:
        return SecretCleanup()
    except DeployError as error:
        log.warning("endpoint %s: its secrets were not looked for: %s", endpoint_id, error)
        endpoint, unread = None, str(error)
    try:
        provider.delete(endpoint_id)
    except EndpointNotFoundError:
        return SecretCleanup()
    return remove_owned_secrets(provider, endpoint) if endpoint else SecretCleanup(unlisted=unread)


def roll_back(provider: Provider, endpoint_id: str, to_release: int | None = None) -> ActualEndpoint:
    """Serve an earlier release again (default: the one before the serving one), with its config."""
    return provider.rollback(endpoint_id, to_release)


def apply_scaling(provider: Provider, endpoint_id: str, scaling: Mapping[str, int]) -> ActualEndpoint:
    """Change scaling at once and record it as the endpoint's desired override.

    Only the provider's `scaling_fields` are accepted; DeployError names any other.
    """
    unknown = sorted(set(scaling) - set(provider.scaling_fields))
    if unknown:
        raise DeployError(
            f"cannot scale {', '.join(unknown)}: this provider scales {', '.join(provider.scaling_fields)}"
        )
    return provider.scale(endpoint_id, scaling, record=True)
