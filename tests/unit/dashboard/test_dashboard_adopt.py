"""What "adopt serving config" takes from a drift, and what it leaves with the reason."""

from __future__ import annotations

from dashboard.drift import plan_adoption

CONFIG = {
    "fields": {"service": "lab", "workersMax": 2, "idleTimeout": 5, "flashboot": True, "locations": []},
    "env": {"MODE": "fast", "TOKEN": "s3cret", "OLD": "x"},
    "secrets": ["TOKEN"],
}


def drift(name: str, stored: object, serving: object) -> dict[str, object]:
    return {"name": name, "stored": stored, "serving": serving}


def test_scaling_and_compute_fields_take_the_serving_values():
    plan = plan_adoption(
        CONFIG,
        [drift("workersMax", 2, 4), drift("flashboot", True, False), drift("locations", [], ["EU-RO-1"])],
        None,
    )
    assert plan.config["fields"]["workersMax"] == 4 and plan.config["fields"]["flashboot"] is False
    assert plan.config["fields"]["locations"] == ["EU-RO-1"]
    assert plan.changes == {"workersMax": [2, 4], "flashboot": [True, False], "locations": [[], ["EU-RO-1"]]}
    assert plan.kept == {} and plan.release is None
    assert CONFIG["fields"]["workersMax"] == 2  # the serving row's snapshot never changes


def test_env_keys_no_longer_served_are_removed_and_new_ones_are_not_adopted():
    plan = plan_adoption(
        CONFIG, [drift("env_keys", ["MODE", "OLD", "TOKEN"], ["MODE", "NEW", "TOKEN"])], None
    )
    assert plan.env_removed == ["OLD"] and sorted(plan.config["env"]) == ["MODE", "TOKEN"]
    assert plan.config["secrets"] == ["TOKEN"]
    assert "NEW" in plan.kept["env_keys"] and "never their values" in plan.kept["env_keys"]


def test_a_build_drift_takes_over_the_serving_release_when_the_sync_saw_it():
    release = {"number": 3, "build": "c" * 64, "deployed_by": "cli:bob"}
    plan = plan_adoption(CONFIG, [drift("build", "a" * 64, "c" * 64)], release)
    assert plan.release == release and plan.changes == {"release": [None, 3]}
    unknown = plan_adoption(CONFIG, [drift("build", "a" * 64, "c" * 64)], None)
    assert unknown.changes == {} and "only a release changes it" in unknown.kept["build"]
