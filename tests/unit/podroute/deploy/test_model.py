"""The control plane's vocabulary: one naming rule, the marker, and the one desired-config rule."""

from __future__ import annotations

from pathlib import Path

from podroute.deploy.model import (
    NAME_MAX,
    Target,
    endpoint_name,
    release_config,
    resolve_config,
    target_from_labels,
    target_labels,
)
from podroute.project import project_name, service_module, service_names

TARGET = Target("Acme Shop", "staging", "cpu", "cpu")


def test_endpoint_name_is_one_rule_for_every_tool() -> None:
    assert endpoint_name(TARGET) == "pr-acme-shop-staging-cpu"
    assert endpoint_name(Target("acme", "prod", "gpu", "infer")) == "pr-acme-prod-gpu-infer"
    assert endpoint_name(TARGET) == endpoint_name(Target("Acme Shop", "staging", "cpu", "cpu"))


def test_long_names_are_cut_and_stay_unique() -> None:
    first = Target("p" * 40, "production", "service-" + "a" * 20, "r")
    second = Target("p" * 40, "production", "service-" + "a" * 20, "s")
    names = {endpoint_name(first), endpoint_name(second)}
    assert len(names) == 2 and all(len(name) <= NAME_MAX for name in names)


def test_labels_round_trip_and_partial_markers_are_not_ours() -> None:
    labels = target_labels(TARGET)
    assert target_from_labels(labels) == TARGET
    assert target_from_labels({"podroute.project": "Acme Shop"}) is None
    assert target_from_labels({}) is None


def test_resolve_config_puts_overrides_on_the_code_and_says_where_each_value_comes_from() -> None:
    declared = {"workersMax": 3, "workersMin": 0, "env": {"MODE": "fast", "LEVEL": "1"}}
    config = resolve_config(declared, {"workersMax": 5, "workersMin": 0, "env": {"LEVEL": "2"}})
    assert config.values == {"workersMax": 5, "workersMin": 0, "env": {"MODE": "fast", "LEVEL": "2"}}
    assert config.sources == {"workersMax": "override", "workersMin": "code", "env": "override"}
    assert config.scaling() == {"workersMin": 0, "workersMax": 5}
    untouched = resolve_config(declared, {})
    assert untouched.sources == {"workersMax": "code", "workersMin": "code", "env": "code"}


def test_resolve_config_says_where_each_env_value_comes_from() -> None:
    declared = {"env": {"MODE": "fast", "LEVEL": "1"}}
    config = resolve_config(declared, {"env": {"LEVEL": "2", "EXTRA": "x", "MODE": "fast"}})
    assert config.env_sources == {"MODE": "code", "LEVEL": "override", "EXTRA": "override"}
    assert resolve_config(declared, {}).env_sources == {"MODE": "code", "LEVEL": "code"}


def test_release_config_keeps_env_keys_never_values() -> None:
    config = resolve_config({"workersMax": 2, "env": {"TOKEN": "s3cret"}}, {})
    kept = release_config(config)
    assert kept == {"workersMax": 2, "env_keys": ["TOKEN"]} and "s3cret" not in repr(kept)


def test_one_rule_for_services_and_the_project_name(tmp_path: Path) -> None:
    (tmp_path / "apps" / "one").mkdir(parents=True)
    (tmp_path / "apps" / "one" / "__init__.py").write_text("")
    (tmp_path / "apps" / "one" / "endpoint.py").write_text("")
    (tmp_path / "apps" / "two").mkdir()
    (tmp_path / "apps" / "two" / "__init__.py").write_text("")
    (tmp_path / "apps" / "notes").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "shop"\n[tool.podroute]\nservices = "apps"\n')
    assert service_names(tmp_path) == ["one", "two"]
    assert service_module(tmp_path, "one") == "apps.one.endpoint"
    assert service_module(tmp_path, "two") == "apps.two"
    assert project_name(tmp_path) == "shop"
    (tmp_path / "pyproject.toml").write_text('[tool.podroute]\nservices = "apps"\nname = "shop-api"\n')
    assert project_name(tmp_path) == "shop-api"
    (tmp_path / "pyproject.toml").unlink()
    assert project_name(tmp_path) == tmp_path.name and service_names(tmp_path) == []
