"""Desired vs actual, pure: drift field by field, orphans, missing; unmarked endpoints never appear."""

from __future__ import annotations

from podroute.deploy.model import (
    ActualEndpoint,
    RecordedDeployment,
    ReleaseInfo,
    Target,
    endpoint_name,
    target_labels,
)
from podroute.deploy.reconcile import reconcile, records_from_provider, stored_fields

CPU = Target("shop", "staging", "cpu", "cpu")
GPU = Target("shop", "staging", "gpu", "gpu")
CONFIG = {"workersMin": 0, "workersMax": 3, "idleTimeout": 60, "env": {"MODE": "fast"}}


def endpoint(endpoint_id: str, target: Target | None, **serving: object) -> ActualEndpoint:
    values = {"workersMin": 0, "workersMax": 3, "idleTimeout": 60, "env_keys": ["MODE"], "build": "b1"}
    values.update(serving)
    return ActualEndpoint(
        id=endpoint_id,
        name=endpoint_name(target) if target else "someone-elses",
        url=f"http://rt/{endpoint_id}",
        labels=target_labels(target) if target else {},
        serving=values,
    )


def record(target: Target, endpoint_id: str, **config: object) -> RecordedDeployment:
    return RecordedDeployment(target=target, endpoint_id=endpoint_id, config={**CONFIG, **config}, build="b1")


def test_in_sync_when_everything_serves_the_record() -> None:
    result = reconcile("shop", "staging", [record(CPU, "e1")], [endpoint("e1", CPU)])
    assert result.in_sync and not result.drift and not result.orphans and not result.missing


def test_drift_is_reported_field_by_field() -> None:
    actual = [endpoint("e1", CPU, workersMax=5, env_keys=["MODE", "DEBUG"], build="b2")]
    result = reconcile("shop", "staging", [record(CPU, "e1")], actual)
    [drift] = result.drift
    assert drift.target == CPU and drift.endpoint_id == "e1"
    assert [(f.name, f.stored, f.serving) for f in drift.fields] == [
        ("workersMax", 3, 5),
        ("env_keys", ["MODE"], ["MODE", "DEBUG"]),
        ("build", "b1", "b2"),
    ]
    assert not result.in_sync


def test_fields_only_one_side_knows_are_not_drift() -> None:
    actual = [endpoint("e1", CPU, image="ghcr.io/x:1")]
    result = reconcile("shop", "staging", [record(CPU, "e1", gpus=["ANY"])], actual)
    assert result.in_sync


def test_orphans_are_marked_for_this_project_and_environment_only() -> None:
    other_project = endpoint("e3", Target("elsewhere", "staging", "cpu", "cpu"))
    other_env = endpoint("e4", Target("shop", "production", "cpu", "cpu"))
    unmarked = endpoint("e5", None)
    actual = [endpoint("e1", CPU), endpoint("e2", GPU), other_project, other_env, unmarked]
    result = reconcile("shop", "staging", [record(CPU, "e1")], actual)
    assert [o.id for o in result.orphans] == ["e2"]
    assert not result.drift and not result.missing


def test_missing_when_the_recorded_endpoint_is_gone() -> None:
    never_deployed = RecordedDeployment(target=GPU, endpoint_id="", config=CONFIG)
    result = reconcile("shop", "staging", [record(CPU, "gone"), never_deployed], [])
    assert result.missing == [CPU] and not result.orphans


def test_an_unmarked_endpoint_with_a_recorded_id_counts_as_missing_not_ours() -> None:
    result = reconcile("shop", "staging", [record(CPU, "e5")], [endpoint("e5", None)])
    assert result.missing == [CPU] and result.orphans == []


def test_records_from_provider_put_overrides_on_the_release_config() -> None:
    served = endpoint("e1", CPU, workersMax=5)
    served.release = ReleaseInfo(number=2, build="b1", config={"workersMax": 3, "env_keys": ["MODE"]})
    served.overrides = {"workersMax": 5}
    [recorded] = records_from_provider([served, endpoint("e9", None)])
    assert recorded.endpoint_id == "e1" and recorded.config["workersMax"] == 5
    assert stored_fields(recorded) == {"workersMax": 5, "env_keys": ["MODE"], "build": "b1"}
    assert reconcile("shop", "staging", [recorded], [served]).in_sync
