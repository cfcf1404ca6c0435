"""Config <-> resource mapping and secret-free change descriptions."""

from __future__ import annotations

from dashboard.configs import (
    ConfigState,
    EndpointDraft,
    apply_draft,
    describe_changes,
    desired_config,
    resource_of,
    state_of,
)
from dashboard.models import Endpoint
from podroute.resources import CpuLoadBalancerSlsResource, LoadBalancerSlsResource


def endpoint_from(draft: EndpointDraft) -> Endpoint:
    endpoint = Endpoint(compute=draft.compute)
    endpoint.env_vars = []
    apply_draft(endpoint, draft)
    return endpoint


def test_apply_then_rebuild_gives_the_same_resource():
    resource = LoadBalancerSlsResource(
        name="api",
        gpus=["ADA_24", "AMPERE_48"],
        gpuCount=2,
        workersMax=4,
        env={"B": "2", "A": "1"},
        locations=["US-CA-2"],
        flashboot=False,
    )
    endpoint = endpoint_from(EndpointDraft(resource, "svc", "api", {"A"}))
    assert resource_of(endpoint) == resource
    assert [(v.key, v.secret) for v in endpoint.env_vars] == [("A", True), ("B", False)]
    cpu = CpuLoadBalancerSlsResource(name="c", instanceIds=["cpu5c-4-8"])
    assert resource_of(endpoint_from(EndpointDraft(cpu, "svc", "c"))) == cpu


def test_changes_mask_secret_values():
    before = ConfigState(
        {"workersMax": 1}, {"TOKEN": ("old", True), "MODE": ("a", False), "GONE": ("s", True)}
    )
    after = ConfigState({"workersMax": 2}, {"TOKEN": ("new", True), "MODE": ("b", False), "NEW": ("n", True)})
    assert describe_changes(before, after) == {
        "workersMax": [1, 2],
        "env.MODE": ["a", "b"],
        "env.TOKEN": ["***", "*** (changed)"],
        "env.GONE": ["***", None],
        "env.NEW": [None, "***"],
    }


def test_unchanged_secret_is_not_a_change_and_creation_lists_everything():
    state = ConfigState({"name": "x"}, {"TOKEN": ("same", True)})
    assert describe_changes(state, state) == {}
    assert describe_changes(None, state) == {"name": [None, "x"], "env.TOKEN": [None, "***"]}


def test_state_of_reads_the_columns_by_flash_name():
    endpoint = endpoint_from(EndpointDraft(LoadBalancerSlsResource(name="api", idleTimeout=9), "svc", "api"))
    state = state_of(endpoint)
    assert (
        state.fields["idleTimeout"] == 9
        and state.fields["gpus"] == ["ANY"]
        and "instanceIds" not in state.fields
    )


def test_a_volume_mount_path_survives_the_config_and_reaches_the_deployed_config():
    declared = CpuLoadBalancerSlsResource(name="m", networkVolumeId="vol-models", volumeMountPath="/models")
    endpoint = endpoint_from(EndpointDraft(declared, "svc", "m"))
    assert endpoint.volume_mount_path == "/models" and resource_of(endpoint) == declared
    state = state_of(endpoint)
    snapshot = {"fields": state.fields, "env": {}}
    values = desired_config(snapshot, declared.to_config()).values
    assert (values["networkVolumeId"], values["volumeMountPath"]) == ("vol-models", "/models")
