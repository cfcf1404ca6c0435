"""The arguments of `podroute deploy ...`, `podroute scale` and `podroute secret ...` (what runs them
is `cli_deploy` and `cli_secrets`).

Kept apart so that building the command parser imports nothing of the deploy machinery: `podroute
serve` starts without it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_deploy_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `deploy` (with its actions) and `scale` to the command parser."""
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
    actions.add_parser("list", help="environments and the endpoints the provider runs (any tool's)")
    status = actions.add_parser(
        "status", help="workers, scaling decisions, and drift/orphans/missing against the record"
    )
    status.add_argument("env")
    orphans = actions.add_parser("orphans", help="endpoints marked for this project that no record knows")
    orphans.add_argument("env")
    orphans.add_argument("--delete", metavar="ENDPOINT_ID", action="append", default=[], help="delete one")
    rollback = actions.add_parser("rollback", help="serve an earlier release again, with its config")
    rollback.add_argument("env")
    rollback.add_argument("services", nargs="*", metavar="SERVICE", help="default: every endpoint")
    rollback.add_argument("--release", type=int, help="release number (default: the previous one)")
    undeploy_parser = actions.add_parser(
        "undeploy", help="delete endpoints (and the secrets made for them); the environment stays"
    )
    undeploy_parser.add_argument("env")
    undeploy_parser.add_argument("services", nargs="*", metavar="SERVICE", help="default: every endpoint")
    delete = actions.add_parser(
        "delete", help="delete every endpoint of the environment, then the environment"
    )
    delete.add_argument("env")
    delete.set_defaults(services=[])
    logs = actions.add_parser("logs", help="print (and with -f follow) an endpoint's worker logs")
    logs.add_argument("env")
    logs.add_argument("endpoint", help="service/resource, resource name or endpoint id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    key = actions.add_parser("key", help="print an endpoint's API key (read from the provider)")
    key.add_argument("env")
    key.add_argument("endpoint", help="service/resource, resource name or endpoint id")
    for action in (new, send, status, orphans, rollback, undeploy_parser, delete, logs, key):
        action.add_argument("--project", type=Path, default=Path.cwd(), help="project root")
    deploy.add_argument("--project", type=Path, default=Path.cwd(), help="project root")

    scale = commands.add_parser(
        "scale", help="change an endpoint's scaling; applies at once and is recorded as desired"
    )
    scale.add_argument("endpoint", help="service/resource, resource name or endpoint id")
    scale.add_argument("--env", help="environment (default: the one holding the endpoint)")
    scale.add_argument("--min", type=int, dest="workersMin", help="workersMin")
    scale.add_argument("--max", type=int, dest="workersMax", help="workersMax")
    scale.add_argument("--idle-timeout", type=int, dest="idleTimeout", help="idleTimeout in seconds")
    scale.add_argument("--scaler-value", type=int, dest="scalerValue", help="requests per worker")
    scale.add_argument(
        "--execution-timeout-ms", type=int, dest="executionTimeoutMs", help="executionTimeoutMs"
    )
    scale.add_argument("--project", type=Path, default=Path.cwd(), help="project root")


def add_secret_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `secret add|list|delete ENV` to the command parser."""
    secret = commands.add_parser(
        "secret",
        help="manage an environment's secrets (local runtime: encrypted; RunPod: platform secrets)",
        description="Secrets are referenced from a resource's env as Secret('name') and decrypted only "
        "when a worker boots. Names: letters, digits, '_', '.', '-'. Values are never shown.",
    )
    actions = secret.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="store a secret; the value is read from stdin (never an argument)")
    add.add_argument("env", help="environment (see 'podroute deploy list')")
    add.add_argument("name", help="secret name, e.g. hf-token")
    add.add_argument("--description", default="", help="what the secret is for")
    add.add_argument("--replace", action="store_true", help="replace the value of an existing secret")
    listing = actions.add_parser("list", help="secret names (values are never shown)")
    listing.add_argument("env")
    delete = actions.add_parser("delete", help="remove a secret")
    delete.add_argument("env")
    delete.add_argument("name")
    for action in (add, listing, delete):
        action.add_argument("--project", type=Path, default=Path.cwd(), help="project root")
