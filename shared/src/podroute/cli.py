"""The `podroute` command (also `python -m podroute`).

podroute serve MODULE[:RESOURCE]   serve one resource's routes as a worker (PORT, default 80)
podroute dev                       serve every service of the project on localhost:8888
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from podroute import __version__
from podroute.cli_deploy_args import add_deploy_commands, add_secret_commands
from podroute.discovery import DiscoveryError, load_target
from podroute.logs import configure_logging
from podroute.registry import RouteDeclarationError
from podroute.resources import ResourceConfigError
from podroute.secrets import SecretNameError
from podroute.server import SERVERS, ServerError, default_worker_server, first_free_port, run_app
from podroute.settings import AppSettings, ServerSettings, SettingsError, log_level_from

if TYPE_CHECKING:
    from podroute.build import BuildResult

_USER_ERRORS: tuple[type[Exception], ...] = (
    DiscoveryError,
    ServerError,
    SettingsError,
    RouteDeclarationError,
    ResourceConfigError,
    SecretNameError,
)
_BUILDING_COMMANDS = frozenset({"build", "deploy"})
_DEPLOYING_COMMANDS = frozenset({"deploy", "scale", "secret"})


_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_serve(commands: _Commands) -> None:
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
        default=os.environ.get("PODROUTE_SERVER") or default_worker_server(),
        help="HTTP server (env PODROUTE_SERVER, default uvicorn, the benchmark's pick; "
        "hypercorn where uvicorn is not installed)",
    )
    serve.add_argument("--no-access-log", action="store_true", help="do not log each request")


def _add_dev(commands: _Commands) -> None:
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


def _add_build(commands: _Commands) -> None:
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
    build.add_argument(
        "--json", action="store_true", help="print one JSON object per build (for tools) instead of text"
    )


def _add_runtime(commands: _Commands) -> None:
    runtime = commands.add_parser(
        "runtime",
        help="run the local runtime (RunPod-like load balancer for deployed builds)",
        description="Deploys artifacts as worker processes behind a gateway with RunPod's load-balancer "
        "semantics. Env: PODROUTE_RUNTIME_HOST/PORT (localhost:8800), PODROUTE_RUNTIME_DIR "
        "(.podroute/runtime: state, builds, worker environments, and the control token file), "
        "PODROUTE_RUNTIME_TOKEN, PODROUTE_RUNTIME_ENV_MODE (isolated|shared), PODROUTE_RUNTIME_WAIT_S (120), "
        "PODROUTE_RUNTIME_VOLUMES (VOLUME_ID=FOLDER,...). Secrets are kept encrypted in the state folder "
        "(secrets.json + secret.key, both 0600).",
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


_COMMAND_PARSERS: dict[str, Callable[[_Commands], None]] = {
    "serve": _add_serve,
    "dev": _add_dev,
    "build": _add_build,
    "runtime": _add_runtime,
    "deploy": add_deploy_commands,
    "scale": add_deploy_commands,
    "secret": add_secret_commands,
}
"""Each command's parser maker (`add_deploy_commands` makes both `deploy` and `scale`)."""


def _build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone (argparse takes milliseconds a command)."""
    parser = argparse.ArgumentParser(
        prog="podroute",
        description="Serve async Python functions as load-balanced HTTP routes.",
        epilog="Run 'podroute COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"podroute {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    makers = [_COMMAND_PARSERS[command]] if command in _COMMAND_PARSERS else _COMMAND_PARSERS.values()
    for make in dict.fromkeys(makers):
        make(commands)
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
    from podroute.worker_app import worker_app

    resource, registry = load_target(args.target)
    app = worker_app(resource, registry, AppSettings.from_env())
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


def _user_errors(command: str) -> tuple[type[Exception], ...]:
    """The errors `command` reports as a message (exit 2) rather than a traceback.

    The build and deploy modules (httpx among their imports) load only for the commands that use
    them, so that `podroute serve` starts without them.
    """
    errors = _USER_ERRORS
    if command in _BUILDING_COMMANDS:
        from podroute.build import BuildError

        errors += (BuildError,)
    if command in _DEPLOYING_COMMANDS:
        from podroute.providers.base import DeployError

        errors += (DeployError,)
    if command == "runtime":
        from podroute.runtime.volumes import VolumeConfigError

        errors += (VolumeConfigError,)
    return errors


def _build(args: argparse.Namespace) -> int:
    from podroute.build import build_project

    results = build_project(args.project, args.services, progress=_progress)
    if args.json:
        print(json.dumps({"builds": [build_record(result) for result in results]}, indent=2))
        return 0
    for result in results:
        origin = "cached" if result.cached else "built"
        print(f"{result.service}/{result.resource}: {origin} {result.sha256[:12]}  {result.artifact}")
    return 0


def build_record(result: BuildResult) -> dict[str, Any]:
    """What `podroute build --json` prints for one build: everything a tool needs, no parsing."""
    return {
        "service": result.service,
        "resource": result.resource,
        "sha256": result.sha256,
        "cached": result.cached,
        "artifact": str(result.artifact),
        "directory": str(result.directory),
        "compute": result.manifest.get("compute"),
        "target": result.manifest.get("target"),
        "resource_config": result.manifest.get("resource"),
    }


def _runtime(args: argparse.Namespace) -> int:
    from podroute.runtime.app import create_runtime_app
    from podroute.runtime.listener import serve_runtime
    from podroute.runtime.settings import RuntimeSettings
    from podroute.runtime.volumes import parse_volumes

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
    serve_runtime(app, settings.listen, stopping=app.extensions["podroute_gateway"].go_away)
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from podroute.cli_deploy import run_deploy

    return run_deploy(args)


def _scale(args: argparse.Namespace) -> int:
    from podroute.cli_deploy import run_scale

    return run_scale(args)


def _secret(args: argparse.Namespace) -> int:
    from podroute.cli_secrets import run_secret

    return run_secret(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `podroute` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _build_parser(argv[0] if argv else None).parse_args(argv)
    user_errors = _user_errors(args.command)
    try:
        configure_logging(log_level_from(os.environ))
        handler = {
            "serve": _serve,
            "dev": _dev,
            "build": _build,
            "runtime": _runtime,
            "deploy": _deploy,
            "scale": _scale,
            "secret": _secret,
        }[args.command]
        return handler(args)
    except user_errors as error:
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
