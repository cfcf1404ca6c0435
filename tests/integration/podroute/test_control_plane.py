"""One control plane through the real runtime and the CLI: the provider is the record; drift,
orphans and rollback are seen and fixed with `podroute deploy`; a deploy made elsewhere (the
dashboard's tasks call the same engine) lands on the same endpoint and shows in `deploy list`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from podroute.build import build_project
from podroute.deploy.model import Target, endpoint_name, env_secret_name, resolve_config, target_labels
from podroute.deploy.preflight import SecretEnv
from podroute.deploy.rollout import find_endpoint, roll_out
from podroute.project import project_name
from podroute.providers.base import DeployError
from podroute.secrets import Secret
from tests.runtime_support import Runtime, deploy, gateway_ping, make_lab_project, run_cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_lab_project(tmp_path / "shop")


def control(runtime: Runtime, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {runtime.token}"}
    return httpx.request(method, f"{runtime.url}/control{path}", headers=headers, timeout=30, **kwargs)


def cli(project: Path, *args: str) -> str:
    result = run_cli(list(args), project)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_drift_scale_redeploy_orphans_rollback_undeploy(project: Path, runtime: Runtime) -> None:
    entry = deploy(project, runtime, "staging")
    target = Target(project_name(project), "staging", "lab", "lab")
    endpoint = runtime.provider().status(entry["id"])
    assert endpoint.name == endpoint_name(target) and endpoint.labels == target_labels(target)
    saved = (project / ".podroute" / "deployments.json").read_text()
    assert entry["api_key"] not in saved and "endpoints" not in json.loads(saved)["environments"]["staging"]

    listed = cli(project, "deploy", "list")
    assert f"lab/lab: {entry['id']} {entry['url']} release #1" in listed and "by cli:" in listed
    assert "in sync" in cli(project, "deploy", "status", "staging")
    assert cli(project, "deploy", "key", "staging", "lab").strip() == entry["api_key"]

    # out of band, through the runtime's control API: not recorded, so it is drift
    assert control(runtime, "PATCH", f"/endpoints/{entry['id']}", json={"workersMax": 1}).status_code == 200
    status = cli(project, "deploy", "status", "staging")
    assert f"drift: lab/lab ({entry['id']})" in status and "workersMax: stored 3, serving 1" in status

    # `podroute scale` records the override: desired and actual agree again
    assert "workersMax=2" in cli(project, "scale", "lab", "--max", "2")
    assert "in sync" in cli(project, "deploy", "status", "staging")
    assert runtime.provider().status(entry["id"]).overrides == {"workersMax": 2}

    # a redeploy lands on the same endpoint as release 2 and keeps the recorded override
    source = project / "services" / "lab" / "endpoint.py"
    source.write_text(source.read_text().replace("VERSION = 1", "VERSION = 2"))
    assert deploy(project, runtime, "staging")["id"] == entry["id"]
    endpoint = runtime.provider().status(entry["id"])
    assert endpoint.release is not None and endpoint.release.number == 2
    assert endpoint.serving["workersMax"] == 2 and len(runtime.provider().list_endpoints()) == 1

    # an endpoint marked for this project that no record knows is an orphan; unmarked ones never show
    build = endpoint.release.build
    ghost_labels = target_labels(Target(target.project, "staging", "ghost", "ghost"))
    ghost = control(
        runtime, "POST", "/endpoints", json={"build": build, "name": "ghost", "labels": ghost_labels}
    )
    foreign = control(runtime, "POST", "/endpoints", json={"build": build, "name": "not-ours"})
    ghost_id, foreign_id = ghost.json()["id"], foreign.json()["id"]
    orphans = cli(project, "deploy", "orphans", "staging")
    assert ghost_id in orphans and foreign_id not in orphans and entry["id"] not in orphans
    assert f"orphan: ghost/ghost {ghost_id}" in cli(project, "deploy", "status", "staging")
    refused = run_cli(["deploy", "orphans", "staging", "--delete", foreign_id], project)
    assert refused.returncode == 2 and "is not an orphan" in refused.stderr
    assert f"orphan {ghost_id} deleted" in cli(project, "deploy", "orphans", "staging", "--delete", ghost_id)
    assert control(runtime, "GET", f"/endpoints/{ghost_id}").status_code == 404
    assert control(runtime, "GET", f"/endpoints/{foreign_id}").status_code == 200

    # rollback serves release 1 with release 1's config; the override is cleared
    assert "rolled back to release #1" in cli(project, "deploy", "rollback", "staging")
    endpoint = runtime.provider().status(entry["id"])
    assert endpoint.release is not None and endpoint.release.number == 1
    assert endpoint.serving["workersMax"] == 3 and endpoint.overrides == {}
    assert "in sync" in cli(project, "deploy", "status", "staging")

    # undeploy removes the endpoint; the environment stays, the unmarked endpoint is untouched
    assert f"lab/lab: endpoint {entry['id']} deleted" in cli(project, "deploy", "undeploy", "staging")
    assert control(runtime, "GET", f"/endpoints/{entry['id']}").status_code == 404
    assert control(runtime, "GET", f"/endpoints/{foreign_id}").status_code == 200
    assert "lab/lab" not in cli(project, "deploy", "list")


def test_a_deploy_from_another_tool_updates_the_same_endpoint(project: Path, runtime: Runtime) -> None:
    entry = deploy(project, runtime, "staging")
    [build] = build_project(project, ["lab"], progress=lambda line: None)
    target = Target(project_name(project), "staging", "lab", "lab")
    with runtime.provider() as provider:
        existing = find_endpoint(provider, target)
        assert existing is not None
        config = resolve_config(build.manifest["resource"], {"env": {"LAB_STARTUP_S": "0.1"}})
        result = roll_out(provider, target, build, config, deployed_by="dashboard:ann", timeout_s=60)
        assert result.endpoint.id == entry["id"] and not result.created and result.release == 2
        again = roll_out(provider, target, build, config, deployed_by="dashboard:ann", timeout_s=60)
        assert again.release == 2  # a retried rollout reuses the release it made
        assert [e.id for e in provider.list_endpoints(target.project)] == [entry["id"]]
        releases = provider.status(entry["id"]).releases
        assert [(r.number, r.deployed_by.split(":")[0]) for r in releases] == [(1, "cli"), (2, "dashboard")]
        assert releases[1].config["env_keys"] == ["LAB_STARTUP_S"] and "0.1" not in repr(releases[1].config)
    listed = cli(project, "deploy", "list")
    assert f"lab/lab: {entry['id']}" in listed and "release #2" in listed and "by dashboard:ann" in listed
    assert gateway_ping(entry["url"], entry["api_key"]) == 200


def test_new_endpoint_that_never_gets_healthy_is_deleted(project: Path, runtime: Runtime) -> None:
    source = project / "services" / "lab" / "endpoint.py"
    source.write_text(
        source.read_text().replace(
            "def warm_up() -> None:\n", "def warm_up() -> None:\n    raise RuntimeError('no weights')\n"
        )
    )
    created = run_cli(
        [
            "deploy",
            "new",
            "staging",
            "--runtime-url",
            runtime.url,
            "--token-file",
            str(runtime.data_dir / "token"),
        ],
        project,
    )
    assert created.returncode == 0, created.stderr
    failed = run_cli(["deploy", "send", "staging", "--timeout", "30"], project)
    assert failed.returncode == 2 and "the new endpoint was deleted" in failed.stderr
    assert "no weights" in failed.stderr
    assert control(runtime, "GET", "/endpoints").json()["endpoints"] == []


def test_undeploy_removes_the_secrets_stored_for_the_endpoint_and_no_others(
    project: Path, runtime: Runtime
) -> None:
    """The dashboard's secret env values become provider secrets (through the engine); deleting the
    endpoint from the CLI removes them, and a rollout that never got healthy removes the ones it
    made. The user's own secrets stay, also one that looks like ours for a variable no release set."""
    entry = deploy(project, runtime, "staging")
    [build] = build_project(project, ["lab"], progress=lambda line: None)
    target = Target(project_name(project), "staging", "lab", "lab")
    secret_env = SecretEnv({"LAB_TOKEN": "value-" + "x" * 20}, fingerprint_key=b"k" * 32)
    as_dashboard: dict[str, Any] = {"deployed_by": "dashboard:ann", "secret_env": secret_env}
    [ours] = secret_env.names(target).values()
    lookalike = env_secret_name(target, "NOT_SET", ours[-12:])
    with runtime.provider() as provider:
        provider.add_secret("hf-token", "the user's own", "")
        provider.add_secret(lookalike, "also the user's", "")
        env = {"HF_TOKEN": Secret("hf-token")}
        config = resolve_config(build.manifest["resource"], {"env": env})
        roll_out(provider, target, build, config, timeout_s=60, **as_dashboard)
        assert sorted(s.name for s in provider.list_secrets()) == sorted(["hf-token", lookalike, ours])

    out = cli(project, "deploy", "undeploy", "staging")
    assert f"lab/lab: endpoint {entry['id']} deleted; removed 1 provider secret(s)" in out
    with runtime.provider() as provider:
        assert sorted(s.name for s in provider.list_secrets()) == sorted(["hf-token", lookalike])

    source = project / "services" / "lab" / "endpoint.py"
    source.write_text(
        source.read_text().replace(
            "def warm_up() -> None:\n", "def warm_up() -> None:\n    raise RuntimeError('no weights')\n"
        )
    )
    [broken] = build_project(project, ["lab"], progress=lambda line: None)
    with runtime.provider() as provider, pytest.raises(DeployError) as failed:
        roll_out(provider, target, broken, config, timeout_s=30, **as_dashboard)
    assert "the new endpoint was deleted; removed 1 provider secret(s)" in str(failed.value)
    with runtime.provider() as provider:
        assert provider.list_endpoints(target.project) == []
        assert sorted(s.name for s in provider.list_secrets()) == sorted(["hf-token", lookalike])
