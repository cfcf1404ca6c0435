"""`podroute secret add|list|delete ENV ...`: an environment's secrets, in its provider's store.

The value of `add` is read from standard input (a pipe, or typed without echo), never from the
command line, where shell history and `ps` would keep it.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from podroute.deploy import DeployError, Deployments
from podroute.secret_stores import secret_store_for, where_secrets_live
from podroute.secrets import check_secret_name


def add_secret_parser(commands: Any) -> None:
    """Add the `secret` command to the CLI's subcommands."""
    secret = commands.add_parser(
        "secret",
        help="manage an environment's secrets (local runtime: encrypted; RunPod: platform secrets)",
        description="Secrets are referenced from a resource's env as Secret('name') and decrypted only "
        "when a worker boots. Names: letters, digits, '_', '.', '-'.",
    )
    actions = secret.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="store a secret; the value is read from stdin")
    add.add_argument("env", help="environment (see 'podroute deploy list')")
    add.add_argument("name", help="secret name, e.g. hf-token")
    add.add_argument("--description", default="", help="what the secret is for")
    listing = actions.add_parser("list", help="secret names (values are never shown)")
    listing.add_argument("env")
    delete = actions.add_parser("delete", help="remove a secret")
    delete.add_argument("env")
    delete.add_argument("name")
    for action in (add, listing, delete):
        action.add_argument("--project", type=Path, default=Path.cwd(), help="project root")


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of secret {name} (not echoed): ")
    else:
        value = sys.stdin.read()
    value = value.rstrip("\r\n")
    if not value:
        raise DeployError("no value given: pipe it in (e.g. 'printenv HF_TOKEN | podroute secret add ...')")
    return value


def run_secret(args: argparse.Namespace) -> int:
    """Carry out `podroute secret ...`; returns the exit status."""
    environment = Deployments(args.project.resolve()).environment(args.env)
    where = where_secrets_live(environment)
    if args.action == "add":
        check_secret_name(args.name)
        value = _read_value(args.name)
        secret_store_for(environment).add_secret(args.name, value, args.description)
        print(
            f"secret {args.name!r} stored in {where}; refer to it with env={{'VAR': Secret({args.name!r})}}"
        )
    elif args.action == "list":
        secrets = secret_store_for(environment).list_secrets()
        if not secrets:
            print(f"no secrets in {where}")
        for info in secrets:
            print(f"{info.name}\t{info.created_at}\t{info.description}".rstrip())
    else:
        secret_store_for(environment).delete_secret(args.name)
        print(f"secret {args.name!r} deleted from {where}")
    return 0
