"""Before a rollout creates anything: secret env values become versioned references, missing
secrets are named, credential-like plain values are warned about (never quoted)."""

from __future__ import annotations

import pytest

from podroute.deploy.model import SECRET_NAME_MAX, Target, endpoint_name, env_secret_name, resolve_config
from podroute.deploy.preflight import (
    SecretEnv,
    credential_lines,
    require_secrets,
    store_secret_env,
    with_secret_env,
)
from podroute.providers.base import DeployError
from podroute.secrets import SECRET_NAME_PATTERN, Secret, SecretInfo, secret_name_of

TARGET = Target("shop", "prod", "cpu", "api")
KEY = b"k" * 32


class MemoryStore:
    """The secret part of a provider, in memory."""

    kind = "memory"

    def __init__(self, *names: str) -> None:
        self.values = dict.fromkeys(names, "x")
        self.lists = 0

    def list_secrets(self) -> list[SecretInfo]:
        self.lists += 1
        return [SecretInfo(name) for name in sorted(self.values)]

    def add_secret(
        self, name: str, value: str, description: str = "", *, replace: bool = False
    ) -> SecretInfo:
        assert replace or name not in self.values
        self.values[name] = value
        return SecretInfo(name, description=description)


def test_secret_names_follow_the_value_not_reveal_it() -> None:
    first = SecretEnv({"HF_TOKEN": "hf_value_one"}, KEY).names(TARGET)["HF_TOKEN"]
    assert first == SecretEnv({"HF_TOKEN": "hf_value_one"}, KEY).names(TARGET)["HF_TOKEN"]
    assert first.startswith(f"{endpoint_name(TARGET)}-HF_TOKEN-") and "value" not in first
    assert SecretEnv({"HF_TOKEN": "hf_value_two"}, KEY).names(TARGET)["HF_TOKEN"] != first
    assert SecretEnv({"HF_TOKEN": "hf_value_one"}, b"other").names(TARGET)["HF_TOKEN"] != first
    assert "hf_value_one" not in repr(SecretEnv({"HF_TOKEN": "hf_value_one"}, KEY))


def test_long_names_are_cut_within_the_rule_and_stay_distinct() -> None:
    long_target = Target("p" * 60, "staging", "service" * 5, "resource" * 5)
    names = {env_secret_name(long_target, "K" * 100 + str(n), "abcdef012345") for n in range(3)}
    assert len(names) == 3
    assert all(len(n) <= SECRET_NAME_MAX and SECRET_NAME_PATTERN.match(n) for n in names)
    assert all(n.endswith("-abcdef012345") for n in names)


def test_the_config_refers_to_the_secrets_and_holds_no_value() -> None:
    config = resolve_config({"name": "api", "env": {"MODE": "fast", "TOKEN": "plain-secret"}}, {})
    secret_env = SecretEnv({"TOKEN": "plain-secret"}, KEY)
    released = with_secret_env(TARGET, config, secret_env)
    assert released.values["env"]["MODE"] == "fast"
    assert secret_name_of(released.values["env"]["TOKEN"]) == secret_env.names(TARGET)["TOKEN"]
    assert "plain-secret" not in repr(released.values)
    assert with_secret_env(TARGET, config, None) is config


def test_missing_secrets_are_named_and_provided_ones_count() -> None:
    config = resolve_config({"env": {"A": Secret("a"), "B": Secret("b"), "C": Secret("c")}}, {})
    store = MemoryStore("a")
    with pytest.raises(DeployError) as raised:
        require_secrets(store, [config], "prod")  # type: ignore[arg-type]
    message = str(raised.value)
    assert "'b', 'c'" in message and "nothing was created" in message and "'prod'" in message
    assert "podroute secret add prod NAME" in message
    require_secrets(store, [config], "prod", provided=["b", "c"])  # type: ignore[arg-type]
    plain = MemoryStore()
    require_secrets(plain, [resolve_config({"env": {"A": "1"}}, {})], "prod")  # type: ignore[arg-type]
    assert plain.lists == 0  # no reference, no call to the provider


def test_only_new_versions_are_stored() -> None:
    store = MemoryStore()
    secret_env = SecretEnv({"TOKEN": "v1", "OTHER": "v2"}, KEY)
    created = store_secret_env(store, TARGET, secret_env)  # type: ignore[arg-type]
    assert sorted(created) == sorted(secret_env.names(TARGET).values())
    assert store.values[secret_env.names(TARGET)["TOKEN"]] == "v1"
    assert store_secret_env(store, TARGET, secret_env) == []  # type: ignore[arg-type]


def test_credential_warnings_name_the_target_without_the_value() -> None:
    config = resolve_config({"env": {"OPENAI_KEY": "sk-" + "a" * 30, "MODE": "fast"}}, {})
    [line] = credential_lines(TARGET, config)
    assert line.startswith("warning: cpu/api: env OPENAI_KEY") and "sk-aaa" not in line
    assert "Secret('openai-key')" in line and "mark it secret" in line
