"""`podroute deploy ...` and `podroute scale`: the CLI side of the control plane.

Everything here reads the provider, the source of truth: `list` and `status` show what the
dashboard deployed too, and a deploy of a target the dashboard already deployed updates the same
endpoint. `.podroute/deployments.json` keeps only each environment's provider settings.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from podroute.build import BuildResult, build_project
from podroute.deploy.environments import Environments
from podroute.deploy.model import ActualEndpoint, Reconciliation, Target, endpoint_name, resolve_config
from podroute.deploy.preflight import require_secrets
from podroute.deploy.reconcile import reconcile, records_from_provider
from podroute.deploy.rollout import (
    RolloutEvent,
    apply_scaling,
    find_endpoint,
    roll_back,
    roll_out,
    undeploy,
)
from podroute.metrics_report import print_logs, print_route_tables
from podroute.project import project_name, service_names
from podroute.providers.base import DeployError, Provider
from podroute.providers.factory import provider_for
from podroute.providers.runpod.http import RunPodSettings


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rollout_progress(event: RolloutEvent) -> None:
    _progress(event.line)


def deployed_by() -> str:
    """Who the CLI releases as: `cli:<user>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:
        return "cli:unknown"


def _endpoints_of(provider: Provider, project: str, env_name: str) -> list[ActualEndpoint]:
    return [
        e
        for e in provider.list_endpoints(project)
        if e.target is not None and e.target.environment == env_name
    ]


def _key(endpoint: ActualEndpoint) -> str:
    return endpoint.target.key if endpoint.target else endpoint.name


def _selected(endpoints: list[ActualEndpoint], services: list[str]) -> list[ActualEndpoint]:
    return [e for e in endpoints if not services or (e.target and e.target.service in services)]


def reconcile_environment(
    project_dir: Path, project: str, env_name: str, endpoints: list[ActualEndpoint]
) -> Reconciliation:
    """The CLI's reconcile: the record is each endpoint's serving release plus its recorded overrides,
    for the project's services under the naming rule; any other endpoint marked for this project
    and environment (a removed service, a duplicate) is an orphan."""
    services = set(service_names(project_dir))
    known = [
        e
        for e in endpoints
        if e.target is not None and e.target.service in services and e.name == endpoint_name(e.target)
    ]
    return reconcile(project, env_name, records_from_provider(known), endpoints)


def _new(args: argparse.Namespace, environments: Environments, project: Path) -> None:
    if args.env in environments.environments:
        raise DeployError(
            f"environment {args.env!r} already exists; deploy to it with 'podroute deploy send {args.env}'"
        )
    if args.provider == "runpod":
        RunPodSettings.from_env()  # fails now, not at the first deploy, when there is no key
        environments.environments[args.env] = {"provider": "runpod", "api": args.runpod_api}
        environments.save()
        print(
            f"environment {args.env!r} created (RunPod, {args.runpod_api} API); "
            f"next: podroute deploy send {args.env} --image SERVICE/RESOURCE=IMAGE"
        )
        return
    token_file = args.token_file if args.token_file.is_absolute() else project / args.token_file
    environments.environments[args.env] = {
        "provider": "local",
        "runtime_url": args.runtime_url,
        "token_file": str(token_file),
    }
    environments.save()
    print(
        f"environment {args.env!r} created (local runtime {args.runtime_url}); "
        f"next: podroute deploy send {args.env}"
    )


def _send(args: argparse.Namespace, environments: Environments, project: Path, name: str) -> None:
    environment = environments.environment(args.env)
    images = environment.setdefault("images", {})
    for item in args.image:
        key, _, image = item.partition("=")
        if not image:
            raise DeployError(f"--image {item!r}: write SERVICE/RESOURCE=IMAGE")
        images[key] = image
    if args.image:
        environments.save()
    builds = build_project(project, args.services, progress=_progress)
    with provider_for(environments.provider_settings(args.env)) as provider:
        declared = [resolve_config(build.manifest["resource"], {}) for build in builds]
        require_secrets(provider, declared, args.env)  # every build's, before the first endpoint
        for build in builds:
            endpoint = _send_one(provider, Target(name, args.env, build.service, build.resource), build, args)
            print(f"{endpoint.target.key if endpoint.target else build.service}: healthy at {endpoint.url}")
            print(f"  try: {_curl_example(args.env, f'{build.service}/{build.resource}', endpoint)}")


def _send_one(
    provider: Provider, target: Target, build: BuildResult, args: argparse.Namespace
) -> ActualEndpoint:
    existing = find_endpoint(provider, target)
    config = resolve_config(build.manifest["resource"], existing.overrides if existing else {})
    result = roll_out(
        provider,
        target,
        build,
        config,
        deployed_by=deployed_by(),
        progress=_rollout_progress,
        timeout_s=args.timeout,
    )
    return result.endpoint


def _curl_example(env_name: str, key: str, endpoint: ActualEndpoint) -> str:
    routes = endpoint.details.get("routes") or [{"method": "GET", "path": "/ping"}]
    route = next((r for r in routes if r["method"] == "GET" and "{" not in r["path"]), routes[0])
    auth = f'-H "Authorization: Bearer $(podroute deploy key {env_name} {key})"'
    body = "" if route["method"] == "GET" else " -H 'Content-Type: application/json' -d '{...}'"
    return f"curl -X {route['method']} {auth}{body} {endpoint.url}{route['path']}"


def _list(environments: Environments, name: str) -> None:
    for env_name, environment in environments.environments.items():
        print(f"{env_name} ({environment['provider']} {environment.get('runtime_url', 'RunPod')})")
        with provider_for(environments.provider_settings(env_name)) as provider:
            for endpoint in _endpoints_of(provider, name, env_name):
                release = endpoint.release
                detail = (
                    f"release #{release.number} build {release.build[:12]} by {release.deployed_by or '?'}"
                    if release
                    else "no release"
                )
                workers = ", ".join(f"{n} {s}" for s, n in sorted(endpoint.workers.items())) or "no workers"
                print(f"  {_key(endpoint)}: {endpoint.id} {endpoint.url} {detail}; {workers}")


def _status(args: argparse.Namespace, environments: Environments, project: Path, name: str) -> None:
    with provider_for(environments.provider_settings(args.env)) as provider:
        endpoints = _endpoints_of(provider, name, args.env)
        for listed in endpoints:
            endpoint = provider.status(listed.id)
            details = endpoint.details
            states = ", ".join(f"{n} {s}" for s, n in sorted(endpoint.workers.items())) or "no workers"
            number = endpoint.release.number if endpoint.release else "?"
            desired = details.get("desired", "?")
            print(
                f"{_key(endpoint)}: {endpoint.url}  release #{number}, desired {desired}, "
                f"{states}, {details.get('inflight', 0)} in flight"
            )
            for decision in details.get("decisions", [])[-5:]:
                print(f"    {decision['action']}: {decision['reason']}")
            print_route_tables(provider, endpoint.id)
        _print_reconciliation(reconcile_environment(project, name, args.env, endpoints), args.env)


def _print_reconciliation(result: Reconciliation, env_name: str) -> None:
    if result.in_sync:
        print(f"{env_name}: in sync (every endpoint serves its stored config)")
        return
    for drift in result.drift:
        print(f"drift: {drift.target.key} ({drift.endpoint_id})")
        for field in drift.fields:
            print(f"    {field.name}: stored {field.stored!r}, serving {field.serving!r}")
    for orphan in result.orphans:
        print(
            f"orphan: {_key(orphan)} {orphan.id} ({orphan.name}); "
            f"delete it with 'podroute deploy orphans {env_name} --delete {orphan.id}'"
        )
    for target in result.missing:
        print(f"missing: {target.key} (its endpoint is gone; deploy it again)")


def _orphans(args: argparse.Namespace, environments: Environments, project: Path, name: str) -> None:
    with provider_for(environments.provider_settings(args.env)) as provider:
        endpoints = _endpoints_of(provider, name, args.env)
        orphans = reconcile_environment(project, name, args.env, endpoints).orphans
        ids = {o.id for o in orphans}
        for endpoint_id in args.delete:
            if endpoint_id not in ids:
                raise DeployError(
                    f"{endpoint_id} is not an orphan of {name}/{args.env}; "
                    f"orphans: {', '.join(sorted(ids)) or 'none'}"
                )
            cleanup = undeploy(provider, endpoint_id)
            print(cleanup.after(f"orphan {endpoint_id} deleted"))
        if not args.delete:
            for orphan in orphans:
                print(f"{_key(orphan)}: {orphan.id} {orphan.name} {orphan.url}")
            if not orphans:
                print(f"{args.env}: no orphans")


def _rollback(args: argparse.Namespace, environments: Environments, name: str) -> None:
    with provider_for(environments.provider_settings(args.env)) as provider:
        for endpoint in _selected(_endpoints_of(provider, name, args.env), args.services):
            rolled = roll_back(provider, endpoint.id, args.release)
            release = rolled.release
            number, build = (release.number, release.build[:12]) if release else ("?", "?")
            print(f"{_key(rolled)}: rolled back to release #{number} (build {build})")


def _undeploy(args: argparse.Namespace, environments: Environments, name: str, forget: bool) -> None:
    with provider_for(environments.provider_settings(args.env)) as provider:
        for endpoint in _selected(_endpoints_of(provider, name, args.env), args.services):
            cleanup = undeploy(provider, endpoint.id)
            print(cleanup.after(f"{_key(endpoint)}: endpoint {endpoint.id} deleted"))
    if forget:
        del environments.environments[args.env]
        environments.save()


def find_named(
    environments: Environments, name: str, env_name: str | None, wanted: str
) -> tuple[str, ActualEndpoint]:
    """Resolve `service/resource`, a resource or service name, or an endpoint id to (env, endpoint)."""
    names = [env_name] if env_name else list(environments.environments)
    matches = []
    for candidate in names:
        with provider_for(environments.provider_settings(candidate)) as provider:
            for endpoint in _endpoints_of(provider, name, candidate):
                key = _key(endpoint)
                if wanted in (key, endpoint.id, *key.split("/")):
                    matches.append((candidate, endpoint))
    if len(matches) != 1:
        problem = "no endpoint" if not matches else "several endpoints"
        raise DeployError(f"{problem} named {wanted!r}; use service/resource or the endpoint id, with --env")
    return matches[0]


def run_deploy(args: argparse.Namespace) -> int:
    """`podroute deploy ACTION`."""
    project = args.project.resolve()
    environments = Environments(project)
    name = project_name(project)
    if args.action == "new":
        _new(args, environments, project)
    elif args.action == "send":
        _send(args, environments, project, name)
    elif args.action == "list":
        _list(environments, name)
    elif args.action == "status":
        _status(args, environments, project, name)
    elif args.action == "orphans":
        _orphans(args, environments, project, name)
    elif args.action == "rollback":
        _rollback(args, environments, name)
    elif args.action in ("undeploy", "delete"):
        _undeploy(args, environments, name, forget=args.action == "delete")
    elif args.action == "logs":
        env_name, endpoint = find_named(environments, name, args.env, args.endpoint)
        with provider_for(environments.provider_settings(env_name)) as provider:
            print_logs(provider, endpoint.id, args.follow)
    else:
        env_name, endpoint = find_named(environments, name, args.env, args.endpoint)
        with provider_for(environments.provider_settings(env_name)) as provider:
            print(provider.api_key(endpoint.id))
    return 0


def run_scale(args: argparse.Namespace) -> int:
    """`podroute scale ENDPOINT --max N ...`: applied at once and recorded as the desired override."""
    project = args.project.resolve()
    environments = Environments(project)
    env_name, endpoint = find_named(environments, project_name(project), args.env, args.endpoint)
    fields = ("workersMin", "workersMax", "idleTimeout", "scalerValue", "executionTimeoutMs")
    scaling = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    if not scaling:
        raise DeployError(
            "nothing to change: pass --min, --max, --idle-timeout, --scaler-value or --execution-timeout-ms"
        )
    with provider_for(environments.provider_settings(env_name)) as provider:
        scaled = apply_scaling(provider, endpoint.id, scaling)
    applied = ", ".join(f"{k}={scaled.serving[k]}" for k in fields if k in scaled.serving)
    print(f"{_key(endpoint)}: {applied}")
    return 0
