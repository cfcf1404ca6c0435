"""The control plane on the fake RunPod (REST and GraphQL, with 429s and 5xx): the undo rule,
drift from an out-of-band change, orphans, and endpoints without the marker left alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from podroute.deploy.model import Target
from podroute.deploy.reconcile import apply_stored, reconcile, records_from_provider
from podroute.deploy.rollout import apply_scaling, roll_out, undeploy
from podroute.providers.base import DeployError
from podroute.providers.runpod.provider import RunPodProvider
from tests.fake_runpod import API_KEY, FakeRunPod, fake_runpod_server
from tests.integration.podroute.test_runpod_provider import APIS, TARGET, config_of, make_build, settings_for


@pytest.fixture
def fake() -> Iterator[tuple[FakeRunPod, str]]:
    with fake_runpod_server(FakeRunPod(cold_start_s=0.05, no_worker_timeout_s=0.5)) as served:
        yield served


@pytest.mark.parametrize("api", APIS)
def test_undo_rule_on_runpod(fake: tuple[FakeRunPod, str], tmp_path: Path, api: str) -> None:
    state, base = fake
    provider = RunPodProvider(settings_for(base, api))
    broken = make_build(tmp_path, "ghcr.io/acme/broken:1", tag="x")
    state.broken_images.add("ghcr.io/acme/broken:1")
    with pytest.raises(DeployError, match="the new endpoint was deleted"):
        roll_out(provider, TARGET, broken, config_of(broken), deployed_by="cli:t", timeout_s=1.5)
    assert state.endpoints == {} and state.templates == {}

    good = make_build(tmp_path, "ghcr.io/acme/api:1", tag="a")
    first = roll_out(provider, TARGET, good, config_of(good), deployed_by="cli:t", timeout_s=10)
    state.inject("429", "saveEndpoint" if api == "graphql" else "PATCH /v2/serverless", retry_after="0")
    state.inject("500", "endpoints" if api == "graphql" else "GET /v2/serverless")
    with pytest.raises(DeployError, match=r"rolled back: the previous release \(#1\) keeps serving"):
        roll_out(provider, TARGET, broken, config_of(broken), deployed_by="cli:t", timeout_s=1.5)
    endpoint = provider.status(first.endpoint.id)
    assert endpoint.release is not None and endpoint.release.number == 1
    assert len(state.endpoints) == 1 and endpoint.serving["image"] == "ghcr.io/acme/api:1"
    undeploy(provider, first.endpoint.id)
    undeploy(provider, first.endpoint.id)  # already gone
    assert state.endpoints == {} and state.templates == {}


@pytest.mark.parametrize("api", APIS)
def test_drift_orphans_and_unmarked_endpoints_on_runpod(
    fake: tuple[FakeRunPod, str], tmp_path: Path, api: str
) -> None:
    state, base = fake
    provider = RunPodProvider(settings_for(base, api))
    build = make_build(tmp_path)
    deployed = roll_out(provider, TARGET, build, config_of(build), deployed_by="cli:t", timeout_s=10).endpoint
    ghost_target = Target(TARGET.project, TARGET.environment, "ghost", "api")
    ghost = provider.create(ghost_target, build, config_of(build), deployed_by="cli:t")
    unmarked = {
        "name": "someone-elses",
        "type": "LOAD_BALANCER",
        "image": "someone/else:1",
        "cpu": [{"id": "cpu3c", "vcpuCount": 2}],
        "scaling": {"type": "REQUEST_COUNT", "requestCount": 1},
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    foreign_id = httpx.post(f"{base}/v2/serverless", json=unmarked, headers=headers).json()["id"]

    # scaled out of band (not recorded): drift on workersMax only
    provider.scale(deployed.id, {"workersMax": 3}, record=False)
    state.inject("429", "endpoints" if api == "graphql" else "GET /v2/serverless", retry_after="0")
    actual = provider.list_endpoints(TARGET.project)
    assert foreign_id not in {e.id for e in actual}
    records = records_from_provider([e for e in actual if e.id == deployed.id])
    result = reconcile(TARGET.project, TARGET.environment, records, actual)
    [drift] = result.drift
    assert [(f.name, f.stored, f.serving) for f in drift.fields] == [("workersMax", 2, 3)]
    assert [o.id for o in result.orphans] == [ghost.id] and result.missing == []

    apply_stored(provider, drift)
    actual = provider.list_endpoints(TARGET.project)
    records = records_from_provider([e for e in actual if e.id == deployed.id])
    assert reconcile(TARGET.project, TARGET.environment, records, actual).drift == []

    # a recorded scaling change is desired state: no drift, and it survives the listing
    apply_scaling(provider, deployed.id, {"workersMax": 4})
    actual = provider.list_endpoints(TARGET.project)
    [recorded] = [e for e in actual if e.id == deployed.id]
    assert recorded.overrides == {"workersMax": 4} and recorded.serving["workersMax"] == 4
    assert (
        reconcile(TARGET.project, TARGET.environment, records_from_provider([recorded]), actual).drift == []
    )

    undeploy(provider, ghost.id)
    undeploy(provider, deployed.id)
    assert list(state.endpoints) == [foreign_id]  # the unmarked endpoint and its template are untouched
    assert [t.get("boundEndpointId") for t in state.templates.values()] == [foreign_id]
