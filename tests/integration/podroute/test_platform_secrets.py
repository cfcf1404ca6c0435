"""Platform secrets end to end through the CLI: the local runtime (a real `podroute runtime`) and
RunPod (the fake, over both APIs). A deploy that refers to a missing secret creates nothing, whether
the CLI or the dashboard's worker runs the one rollout engine; once added, workers get the value
while artifacts, manifests, records, logs and status never hold it."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podroute.build import BuildResult, build_project
from podroute.deploy.model import DesiredConfig, Target, resolve_config
from podroute.deploy.preflight import SecretEnv
from podroute.deploy.rollout import RolloutEvent, RolloutStep, roll_out
from podroute.project import project_name
from podroute.providers.base import DeployError
from podroute.providers.runpod.http import RunPodSettings
from podroute.providers.runpod.provider import RunPodProvider
from tests.fake_runpod import API_KEY, FakeRunPod, fake_runpod_server
from tests.runtime_support import endpoint_entry, run_cli, runtime_process

SERVICE = """\
import hashlib
import os

from podroute import {resource_class}, Secret, remote

api = {resource_class}(
    name="vault",
    workersMax=1,
    instanceIds=["cpu3c-2-4"],
    env={{"API_TOKEN": Secret("api-token"), "SERVICE_TOKEN": "plain-named-like-a-credential"}},
)


@remote(api, method="GET", path="/token")
async def token() -> dict:
    value = os.environ["API_TOKEN"]
    return {{"sha256": hashlib.sha256(value.encode()).hexdigest(), "length": len(value)}}
"""


def make_vault_project(root: Path, resource_class: str) -> Path:
    (root / "services" / "vault").mkdir(parents=True)
    (root / "services" / "__init__.py").write_text("")
    (root / "services" / "vault" / "__init__.py").write_text("")
    (root / "services" / "vault" / "endpoint.py").write_text(SERVICE.format(resource_class=resource_class))
    (root / "pyproject.toml").write_text('[tool.podroute]\nservices = "services"\n')
    return root


def add_secret(
    project: Path, env_name: str, name: str, value: str, replace: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    flags = ["--replace"] if replace else []
    return subprocess.run(
        [sys.executable, "-m", "podroute", "secret", "add", env_name, name, "--description", "test", *flags],
        cwd=project,
        input=value + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def declared(build: BuildResult) -> DesiredConfig:
    return resolve_config(build.manifest["resource"], {})


def files_holding(folder: Path, value: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]


def test_local_runtime_secrets(tmp_path: Path) -> None:
    project = make_vault_project(tmp_path / "project", "CpuLiveLoadBalancer")
    value = "tok-" + secrets.token_hex(20)
    outputs: list[str] = []
    data_dir = project / ".podroute" / "runtime"
    with runtime_process(data_dir) as runtime:
        token_file = str(data_dir / "token")
        created = run_cli(
            ["deploy", "new", "test", "--runtime-url", runtime.url, "--token-file", token_file], project
        )
        assert created.returncode == 0, created.stderr

        refused = run_cli(["deploy", "send", "test", "--timeout", "60"], project)
        outputs += [refused.stdout, refused.stderr]
        assert refused.returncode == 2
        assert "'api-token'" in refused.stderr and "nothing was created" in refused.stderr
        assert "the local provider of environment 'test'" in refused.stderr
        assert "podroute secret add test NAME" in refused.stderr
        assert runtime.provider().list_endpoints() == []
        assert httpx.get(
            f"{runtime.url}/control/endpoints", headers={"Authorization": f"Bearer {runtime.token}"}
        ).json() == {"endpoints": []}

        # the engine the dashboard's worker calls warns and refuses the same way, before its upload
        provider = runtime.provider()
        [build] = build_project(project, [])
        target = Target(project_name(project), "test", "vault", "vault")
        events: list[RolloutEvent] = []
        with pytest.raises(DeployError, match=r"'api-token' .* nothing was created"):
            roll_out(
                provider, target, build, declared(build), deployed_by="dashboard:x", progress=events.append
            )
        lines = [event.line for event in events]
        assert {event.step for event in events} == {RolloutStep.PREFLIGHT}
        assert any("warning: vault/vault: env SERVICE_TOKEN is a plain value" in line for line in lines)
        assert any("Secret('service-token')" in line for line in lines)
        assert not any("uploading" in line for line in lines) and provider.list_endpoints() == []

        # the runtime itself refuses too (a tool that skips the engine still creates nothing)
        provider.upload(build)
        with pytest.raises(
            DeployError, match=r"422: secret\(s\) 'api-token' .* local runtime; nothing was created"
        ):
            provider.create(target, build, declared(build), deployed_by="cli:test")
        assert provider.list_endpoints() == []

        added = add_secret(project, "test", "api-token", value)
        assert added.returncode == 0, added.stderr
        again = add_secret(project, "test", "api-token", "other")
        assert again.returncode == 2 and "already exists" in again.stderr
        bad = add_secret(project, "test", "bad name", "v")
        assert bad.returncode == 2 and "not a valid secret name" in bad.stderr
        listed = run_cli(["secret", "list", "test"], project)
        assert listed.returncode == 0 and listed.stdout.startswith("api-token\t") and "test" in listed.stdout

        sent = run_cli(["deploy", "send", "test", "--timeout", "60"], project)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "warning: vault/vault: env SERVICE_TOKEN is a plain value" in sent.stderr
        entry = endpoint_entry(project, runtime, "test", "vault/vault")
        answer = httpx.get(
            f"{entry['url']}/token", headers={"Authorization": f"Bearer {entry['api_key']}"}, timeout=30
        )
        assert answer.json() == {"sha256": hashlib.sha256(value.encode()).hexdigest(), "length": len(value)}

        status = run_cli(["deploy", "status", "test"], project)
        described = httpx.get(
            f"{runtime.url}/control/endpoints/{entry['id']}",
            headers={"Authorization": f"Bearer {runtime.token}"},
        )
        assert "API_TOKEN" in described.json()["env_keys"]
        secrets_listed = httpx.get(
            f"{runtime.url}/control/secrets", headers={"Authorization": f"Bearer {runtime.token}"}
        )
        assert [s["name"] for s in secrets_listed.json()["secrets"]] == ["api-token"]
        assert httpx.get(f"{runtime.url}/control/secrets").status_code == 401
        outputs += [added.stdout, added.stderr, listed.stdout, sent.stdout, sent.stderr, status.stdout]
        outputs += [status.stderr, described.text, secrets_listed.text]

        # --replace stores a new value under the same name (RunPod has no update: delete + create)
        newer = "tok-" + secrets.token_hex(20)
        replaced = add_secret(project, "test", "api-token", newer, replace="1")
        assert replaced.returncode == 0, replaced.stderr
        listed_again = run_cli(["secret", "list", "test"], project)
        assert listed_again.stdout.count("api-token") == 1
        outputs += [replaced.stdout, replaced.stderr, listed_again.stdout]

        deleted = run_cli(["secret", "delete", "test", "api-token"], project)
        assert deleted.returncode == 0 and "deleted" in deleted.stdout
        missing = run_cli(["secret", "delete", "test", "api-token"], project)
        assert missing.returncode == 2 and "no secret 'api-token'" in missing.stderr
        run_cli(["deploy", "delete", "test"], project)
    for name in ("secrets.json", "secret.key"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600
    assert (data_dir / "runtime.log").is_file()  # the runtime's whole output: checked with the rest
    for held in (value, newer):
        assert files_holding(project / ".podroute", held) == []
        assert not any(held in text for text in outputs)


@pytest.fixture
def fake() -> Iterator[tuple[FakeRunPod, str]]:
    with fake_runpod_server(FakeRunPod(cold_start_s=0.1, no_worker_timeout_s=0.5)) as served:
        yield served


def runpod_env(base: str) -> dict[str, str]:
    return {
        "RUNPOD_API_KEY": API_KEY,
        "RUNPOD_API_BASE_URL": base,
        "RUNPOD_REST_V2_API_URL": f"{base}/v2",
        "RUNPOD_SERVERLESS_API_URL": f"{base}/dataplane/v2",
        "RUNPOD_ENDPOINT_BASE_URL": f"{base}/lb/{{id}}",
    }


@pytest.mark.parametrize("api", ["rest", "graphql"])
def test_runpod_platform_secrets(fake: tuple[FakeRunPod, str], tmp_path: Path, api: str) -> None:
    state, base = fake
    env = runpod_env(base)
    project = make_vault_project(tmp_path / "project", "CpuLoadBalancerSlsResource")
    value = "rps-" + secrets.token_hex(20)
    image = ["--image", "vault/vault=ghcr.io/acme/vault:1"]
    outputs: list[str] = []
    assert (
        run_cli(
            ["deploy", "new", "prod", "--provider", "runpod", "--runpod-api", api], project, **env
        ).returncode
        == 0
    )

    refused = run_cli(["deploy", "send", "prod", *image, "--timeout", "20"], project, **env)
    outputs += [refused.stdout, refused.stderr]
    assert refused.returncode == 2
    assert "'api-token'" in refused.stderr and "nothing was created" in refused.stderr
    assert "the runpod provider of environment 'prod'" in refused.stderr
    assert state.endpoints == {} and state.templates == {}
    assert state.count("saveTemplate") == state.count("POST /v2/templates") == 0

    # the one engine refuses the same way when the dashboard's worker calls it
    [build] = build_project(project, [])
    target = Target(project_name(project), "prod", "vault", "vault")
    settings = RunPodSettings.from_env(environ=env, api=api)
    provider = RunPodProvider(settings, images={"vault/vault": "ghcr.io/acme/vault:1"})
    with provider, pytest.raises(DeployError, match=r"'api-token' .* nothing was created"):
        roll_out(provider, target, build, declared(build), deployed_by="dashboard:x")
    assert state.endpoints == {} and state.templates == {}

    added = add_secret(project, "prod", "api-token", value, **env)
    assert added.returncode == 0, added.stderr
    [stored] = state.secrets.values()
    assert stored["name"] == "api-token" and stored["description"] == "test"
    assert state.secret_values[stored["id"]] == value
    again = add_secret(project, "prod", "api-token", "other", **env)
    assert again.returncode == 2 and "already has a secret 'api-token'" in again.stderr
    listed = run_cli(["secret", "list", "prod"], project, **env)
    assert listed.returncode == 0 and listed.stdout.startswith("api-token\t")

    sent = run_cli(["deploy", "send", "prod", *image, "--timeout", "20"], project, **env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    [endpoint] = state.endpoints.values()
    [template] = state.templates.values()
    assert template["env"]["API_TOKEN"] == "{{ RUNPOD_SECRET_api-token }}"
    assert value not in json.dumps([template, endpoint.env, endpoint.config])
    with_value = [body for body in state.request_bodies if value.encode() in body]
    assert len(with_value) == 1 and b"secretCreate" in with_value[0]
    status = run_cli(["deploy", "status", "prod"], project, **env)
    assert status.returncode == 0, status.stderr
    outputs += [
        added.stdout,
        added.stderr,
        listed.stdout,
        sent.stdout,
        sent.stderr,
        status.stdout,
        status.stderr,
    ]

    # a dashboard deploy keeps its secret env value as a secret made for this endpoint; deleting
    # the endpoint from the CLI removes that secret with it, and leaves the user's own
    pin = "pin-" + secrets.token_hex(12)
    secret_env = SecretEnv({"VAULT_PIN": pin}, fingerprint_key=b"k" * 32)
    with RunPodProvider(settings, images={"vault/vault": "ghcr.io/acme/vault:1"}) as provider:
        roll_out(provider, target, build, declared(build), deployed_by="dashboard:x", secret_env=secret_env)
    [made] = secret_env.names(target).values()
    assert sorted(s["name"] for s in state.secrets.values()) == sorted(["api-token", made])
    undeployed = run_cli(["deploy", "undeploy", "prod"], project, **env)
    assert undeployed.returncode == 0, undeployed.stderr
    assert "deleted; removed 1 provider secret(s) of its secret env values" in undeployed.stdout
    assert state.endpoints == {} and state.templates == {}
    assert [s["name"] for s in state.secrets.values()] == ["api-token"]
    outputs += [undeployed.stdout, undeployed.stderr]

    deleted = run_cli(["secret", "delete", "prod", "api-token"], project, **env)
    assert deleted.returncode == 0 and state.secrets == {} and state.secret_values == {}
    missing = run_cli(["secret", "delete", "prod", "api-token"], project, **env)
    assert missing.returncode == 2 and "RunPod has no secret 'api-token'" in missing.stderr
    assert run_cli(["deploy", "delete", "prod"], project, **env).returncode == 0
    assert files_holding(project / ".podroute", value) == []
    assert not any(value in text or pin in text for text in outputs)
