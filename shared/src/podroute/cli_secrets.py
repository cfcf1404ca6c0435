"""`podroute secret add|list|delete ENV ...`: an environment's secrets, in its provider's store.

The provider is the environment's (`provider_for`), and every provider is a secret store: the local
runtime keeps secrets encrypted (0600 files in its state folder), RunPod keeps platform secrets.
The value of `add` is read from standard input (a pipe, or typed without echo), never from the
command line, where shell history and `ps` would keep it.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from podroute.deploy.environments import Environments
from podroute.providers.base import DeployError
from podroute.providers.factory import provider_for
from podroute.secrets import check_secret_name


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
    environments = Environments(args.project.resolve())
    settings = environments.provider_settings(args.env)
    where = f"environment {args.env!r} ({settings.kind})"
    if args.action != "list":
        check_secret_name(args.name)
    value = _read_value(args.name) if args.action == "add" else ""
    with provider_for(settings) as provider:
        if args.action == "add":
            provider.add_secret(args.name, value, args.description, replace=args.replace)
            print(
                f"secret {args.name!r} stored in {where}; refer to it with "
                f"env={{'VAR': Secret({args.name!r})}}"
            )
        elif args.action == "list":
            secrets = provider.list_secrets()
            if not secrets:
                print(f"no secrets in {where}")
            for info in secrets:
                print(f"{info.name}\t{info.created_at}\t{info.description}".rstrip())
        else:
            provider.delete_secret(args.name)
            print(f"secret {args.name!r} deleted from {where}")
    return 0
