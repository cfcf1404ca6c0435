"""The `podroute` command (also `python -m podroute`).

podroute serve MODULE[:RESOURCE]   serve one resource's routes as a worker (PORT, default 80)
podroute dev                       serve every service of the project on localhost:8888
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from podroute import __version__
from podroute.build import BuildError, build_project
from podroute.cli_secrets import add_secret_parser, run_secret
from podroute.deploy import DeployError, Deployments, EndpointInfo, find_endpoint, provider_for, send
from podroute.discovery import DiscoveryError, load_target
from podroute.logs import configure_logging
from podroute.registry import RouteDeclarationError
from podroute.resources import ResourceConfigError
from podroute.runpod_api import RunPodSettings
from podroute.runtime.volumes import VolumeConfigError, parse_volumes
from podroute.secret_stores import check_deploy_secrets
from podroute.secrets import SecretNameError
from podroute.server import SERVERS, ServerError, first_free_port, run_app
from podroute.settings import AppSettings, ServerSettings, SettingsError, log_level_from

_USER_ERRORS = (
    DiscoveryError,
    ServerError,
    SettingsError,
    RouteDeclarationError,
    ResourceConfigError,
    BuildError,
    DeployError,
    SecretNameError,
    VolumeConfigError,
)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podroute",
        description="Serve async Python functions as load-balanced HTTP routes.",
        epilog="Run 'podroute COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"podroute {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve one resource's routes as a worker",
        description="Serve one resource's routes, /ping, /openapi.json and /docs. Listens on HOST:PORT "
        "(default 0.0.0.0:80, RunPod's contract) and also on PORT_HEALTH when it differs. "
        "LOG_LEVEL sets the log level; HEALTH_CHECK_PATH the health path; "
        "PODROUTE_MAX_BODY_BYTES the body limit (default 30 MB).",
    )
    serve.add_argument(
        "target", metavar="MODULE[:RESOURCE]", help="module declaring the routes, e.g. services.cpu.endpoint"
    )
    serve.add_argument("--host", help="address to bind (env HOST, default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to bind (env PORT, default 80)")
    serve.add_argument(
        "--server",
        choices=SERVERS,
        default=os.environ.get("PODROUTE_SERVER", "hypercorn"),
        help="HTTP server (env PODROUTE_SERVER, default hypercorn)",
    )
    serve.add_argument("--no-access-log", action="store_true", help="do not log each request")

    dev = commands.add_parser(
        "dev",
        help="serve every service of the project, with docs and reload",
        description="Serve every service of the project under /<service> with one /docs, a home page and "
        "reload on code change. Address: FLASH_HOST:FLASH_PORT (default localhost:8888); a taken "
        "port moves to the next free one.",
    )
    dev.add_argument(
        "--host", default=os.environ.get("FLASH_HOST", "localhost"), help="address (env FLASH_HOST)"
    )
    dev.add_argument(
        "--port", type=int, default=int(os.environ.get("FLASH_PORT", "8888")), help="port (env FLASH_PORT)"
    )
    dev.add_argument(
        "--project", type=Path, default=Path.cwd(), help="project root (default: current folder)"
    )
    dev.add_argument("--no-reload", action="store_true", help="do not restart on code change")

    build = commands.add_parser(
        "build",
        help="build deployable artifacts for the project's services",
        description="For each load-balanced resource of the named services (default: all), write a "
        "manifest, a deterministic artifact and a Dockerfile under .podroute/builds/. Unchanged "
        "sources reuse the cached build.",
    )
    build.add_argument("services", nargs="*", metavar="SERVICE", help="services to build (default: all)")
    build.add_argument(
        "--project", type=Path, default=Path.cwd(), help="project root (default: current folder)"
    )

    runtime = commands.add_parser(
        "runtime",
        help="run the local runtime (RunPod-like load balancer for deployed builds)",
        description="Deploys artifacts as worker processes behind a gateway with RunPod's load-balancer "
        "semantics. Env: PODROUTE_RUNTIME_HOST/PORT (localhost:8800), PODROUTE_RUNTIME_DIR "
        "(.podroute/runtime: state, builds, worker environments, and the control token file), "
        "PODROUTE_RUNTIME_TOKEN, PODROUTE_RUNTIME_ENV_MODE (isolated|shared), PODROUTE_RUNTIME_WAIT_S (120), "
        "PODROUTE_RUNTIME_VOLUMES (VOLUME_ID=FOLDER,...). Secrets are kept encrypted in the state folder "
        "(secrets.json + secret.key).",
    )
    runtime.add_argument("--host", help="address (env PODROUTE_RUNTIME_HOST, default localhost)")
    runtime.add_argument("--port", type=int, help="port (env PODROUTE_RUNTIME_PORT, default 8800)")
    runtime.add_argument("--data-dir", type=Path, help="state folder (env PODROUTE_RUNTIME_DIR)")
    runtime.add_argument("--env-mode", choices=("isolated", "shared"), help="worker environments")
    runtime.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="VOLUME_ID=FOLDER",
        help="host folder of a network volume, seen by workers at the resource's volumeMountPath "
        "(repeatable; env PODROUTE_RUNTIME_VOLUMES)",
    )

    deploy = commands.add_parser("deploy", help="deploy builds to an environment and manage them")
    actions = deploy.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = actions.add_parser("new", help="create an environment (a target to deploy to)")
    new.add_argument("env", help="environment name, e.g. production")
    new.add_argument(
        "--provider",
        choices=("local", "runpod"),
        default="local",
        help="local runtime (default) or RunPod (needs RUNPOD_API_KEY)",
    )
    new.add_argument(
        "--runpod-api", choices=("rest", "graphql"), default="rest", help="RunPod API to use (rest)"
    )
    new.add_argument(
        "--runtime-url",
        default=os.environ.get("PODROUTE_RUNTIME_URL", "http://localhost:8800"),
        help="local runtime URL (env PODROUTE_RUNTIME_URL)",
    )
    new.add_argument(
        "--token-file",
        type=Path,
        default=Path(".podroute/runtime/token"),
        help="the runtime's token file (or set PODROUTE_RUNTIME_TOKEN)",
    )
    send = actions.add_parser("send", help="build and roll out services; succeeds once /ping is 200")
    send.add_argument("env")
    send.add_argument("services", nargs="*", metavar="SERVICE", help="services to deploy (default: all)")
    send.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for health (300)")
    send.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="SERVICE/RESOURCE=IMAGE",
        help="RunPod: the pushed image of a resource's build (repeatable)",
    )
    actions.add_parser("list", help="environments and their endpoints")
    status = actions.add_parser("status", help="workers and recent scaling decisions")
    status.add_argument("env")
    rollback = actions.add_parser("rollback", help="serve the previous release again")
    rollback.add_argument("env")
    rollback.add_argument("services", nargs="*", metavar="SERVICE", help="default: every endpoint")
    delete = actions.add_parser("delete", help="delete every endpoint of the environment")
    delete.add_argument("env")
    key = actions.add_parser("key", help="print an endpoint's API key")
    key.add_argument("env")
    key.add_argument("endpoint", help="service/resource, resource name or endpoint id")
    for action in (new, send, status, rollback, delete, key):
        action.add_argument("--project", type=Path, default=Path.cwd(), help="project root")
    deploy.add_argument("--project", type=Path, default=Path.cwd(), help="project root")

    scale = commands.add_parser("scale", help="change an endpoint's scaling; applies at once")
    scale.add_argument("endpoint", help="service/resource, resource name or endpoint id")
    scale.add_argument("--env", help="environment (default: the one holding the endpoint)")
    scale.add_argument("--min", type=int, dest="workersMin", help="workersMin")
    scale.add_argument("--max", type=int, dest="workersMax", help="workersMax")
    scale.add_argument("--idle-timeout", type=int, dest="idleTimeout", help="idleTimeout in seconds")
    scale.add_argument("--scaler-value", type=int, dest="scalerValue", help="requests per worker")
    scale.add_argument("--project", type=Path, default=Path.cwd(), help="project root")
    add_secret_parser(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    settings = ServerSettings.from_env()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides.get("port") is not None and "PORT_HEALTH" not in os.environ:
        overrides["port_health"] = overrides["port"]
    if args.no_access_log:
        overrides["access_log"] = False
    settings = dataclasses.replace(settings, **overrides)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    from podroute.app import create_app

    resource, registry = load_target(args.target)
    app = create_app(resource, registry=registry, settings=AppSettings.from_env())
    run_app(app, settings, server=args.server, target=args.target)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from podroute.dev import create_dev_app, run_with_reload

    project = args.project.resolve()
    if not args.no_reload:
        port = first_free_port(args.host, args.port)
        child = ["dev", "--no-reload", "--host", args.host, "--port", str(port), "--project", str(project)]
        print(
            f"podroute dev: http://{args.host}:{port}/ (docs at /docs), reloading on change", file=sys.stderr
        )
        return run_with_reload(child, project)
    app = create_dev_app(project)
    settings = ServerSettings(host=args.host, port=args.port, log_level=log_level_from(os.environ))
    run_app(app, settings)
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _build(args: argparse.Namespace) -> int:
    for result in build_project(args.project, args.services, progress=_progress):
        origin = "cached" if result.cached else "built"
        print(f"{result.service}/{result.resource}: {origin} {result.sha256[:12]}  {result.artifact}")
    return 0


def _runtime(args: argparse.Namespace) -> int:
    from podroute.runtime.service import RuntimeSettings, create_runtime_app

    settings = RuntimeSettings.from_env()
    overrides = {
        k: v
        for k, v in (
            ("host", args.host),
            ("port", args.port),
            ("data_dir", args.data_dir),
            ("environment_mode", args.env_mode),
        )
        if v is not None
    }
    if args.volume:
        overrides["volumes"] = {**settings.volumes, **parse_volumes(",".join(args.volume))}
    settings = dataclasses.replace(settings, **overrides)
    app = create_runtime_app(settings)
    print(
        f"podroute runtime: gateway http://{settings.host}:{settings.port}/<endpoint id>/..., "
        f"control token in {settings.data_dir / 'token'}",
        file=sys.stderr,
    )
    server = ServerSettings(host=settings.host, port=settings.port, log_level=log_level_from(os.environ))
    run_app(app, server)
    return 0


def _deploy(args: argparse.Namespace) -> int:
    project = args.project.resolve()
    deployments = Deployments(project)
    if args.action == "new":
        if args.env in deployments.environments:
            raise DeployError(
                f"environment {args.env!r} already exists; "
                f"deploy to it with 'podroute deploy send {args.env}'"
            )
        if args.provider == "runpod":
            RunPodSettings.from_env()  # fails now, not at the first deploy, when there is no key
            deployments.environments[args.env] = {
                "provider": "runpod",
                "api": args.runpod_api,
                "endpoints": {},
            }
            deployments.save()
            print(
                f"environment {args.env!r} created (RunPod, {args.runpod_api} API); "
                f"next: podroute deploy send {args.env} --image SERVICE/RESOURCE=IMAGE"
            )
            return 0
        token_file = args.token_file if args.token_file.is_absolute() else project / args.token_file
        deployments.environments[args.env] = {
            "provider": "local",
            "runtime_url": args.runtime_url,
            "token_file": str(token_file),
            "endpoints": {},
        }
        deployments.save()
        print(
            f"environment {args.env!r} created (local runtime {args.runtime_url}); "
            f"next: podroute deploy send {args.env}"
        )
    elif args.action == "send":
        images = deployments.environment(args.env).setdefault("images", {})
        for item in args.image:
            key, _, image = item.partition("=")
            if not image:
                raise DeployError(f"--image {item!r}: write SERVICE/RESOURCE=IMAGE")
            images[key] = image
        builds = build_project(project, args.services, progress=_progress)
        check_deploy_secrets(deployments.environment(args.env), args.env, builds, _progress)
        for key, info in send(deployments, args.env, builds, args.timeout, _progress):
            print(f"{key}: healthy at {info.url}")
            print(f"  try: {_curl_example(args.env, key, info)}")
    elif args.action == "list":
        for name, environment in deployments.environments.items():
            print(f"{name} ({environment['provider']} {environment.get('runtime_url', 'RunPod')})")
            for key, entry in environment.get("endpoints", {}).items():
                print(f"  {key}: {entry['id']} {entry['url']} build {entry.get('build', '?')[:12]}")
    elif args.action == "status":
        provider = provider_for(deployments.environment(args.env))
        for key, entry in deployments.environment(args.env).get("endpoints", {}).items():
            status = provider.status(entry["id"]).status
            states = ", ".join(f"{n} {s}" for s, n in sorted(status["counts"].items())) or "no workers"
            print(
                f"{key}: {entry['url']}  desired {status['desired']}, {states}, "
                f"{status['inflight']} in flight"
            )
            for decision in status["decisions"][-5:]:
                print(f"    {decision['action']}: {decision['reason']}")
    elif args.action == "rollback":
        environment = deployments.environment(args.env)
        provider = provider_for(environment)
        for key, entry in environment.get("endpoints", {}).items():
            if not args.services or key.split("/")[0] in args.services:
                info = provider.rollback(entry["id"])
                entry["build"] = info.status["build"]
                print(f"{key}: rolled back to build {info.status['build'][:12]}")
        deployments.save()
    elif args.action == "delete":
        environment = deployments.environment(args.env)
        provider = provider_for(environment)
        for key, entry in environment.get("endpoints", {}).items():
            provider.delete(entry["id"])
            print(f"{key}: endpoint {entry['id']} deleted")
        del deployments.environments[args.env]
        deployments.save()
    else:
        _, entry, _ = find_endpoint(deployments, args.env, args.endpoint)
        print(entry["api_key"])
    return 0


def _curl_example(env_name: str, key: str, info: EndpointInfo) -> str:
    routes = info.status.get("routes") or [{"method": "GET", "path": "/ping"}]
    route = next((r for r in routes if r["method"] == "GET" and "{" not in r["path"]), routes[0])
    auth = f'-H "Authorization: Bearer $(podroute deploy key {env_name} {key})"'
    body = "" if route["method"] == "GET" else " -H 'Content-Type: application/json' -d '{...}'"
    return f"curl -X {route['method']} {auth}{body} {info.url}{route['path']}"


def _scale(args: argparse.Namespace) -> int:
    deployments = Deployments(args.project.resolve())
    env_name, entry, key = find_endpoint(deployments, args.env, args.endpoint)
    scaling = {k: getattr(args, k) for k in ("workersMin", "workersMax", "idleTimeout", "scalerValue")}
    scaling = {k: v for k, v in scaling.items() if v is not None}
    if not scaling:
        raise DeployError("nothing to change: pass --min, --max, --idle-timeout or --scaler-value")
    info = provider_for(deployments.environment(env_name)).scale(entry["id"], scaling)
    applied = ", ".join(f"{k}={v}" for k, v in info.status["scaling"].items())
    print(f"{key}: {applied}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `podroute` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        configure_logging(log_level_from(os.environ))
        handler = {
            "serve": _serve,
            "dev": _dev,
            "build": _build,
            "runtime": _runtime,
            "deploy": _deploy,
            "scale": _scale,
            "secret": run_secret,
        }[args.command]
        return handler(args)
    except _USER_ERRORS as error:
        print(f"podroute {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def run_standalone(target: str) -> int:
    """Serve one module's resource on FLASH_HOST:FLASH_PORT (default localhost:8000), no prefix.

    For a service's `__main__.py`: `sys.exit(run_standalone("services.cpu.endpoint"))`.
    """
    host = os.environ.get("FLASH_HOST", "localhost")
    port = os.environ.get("FLASH_PORT", "8000")
    return main(["serve", target, "--host", host, "--port", port])
