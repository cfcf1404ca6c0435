"""`Secret` references, the pre-deploy checks and the local runtime's encrypted store."""

from __future__ import annotations

import json
import pickle
import stat
from pathlib import Path

import pytest

from podroute import CpuLoadBalancerSlsResource, Secret
from podroute.resources import ResourceConfigError, resource_from_config
from podroute.runtime.secret_store import EncryptedSecretStore, SecretValueError
from podroute.secrets import (
    SecretExistsError,
    SecretInfo,
    SecretNameError,
    SecretNotFoundError,
    check_secrets,
    credential_warnings,
    secret_references,
)

VALUE = "hf_" + "Q" * 34


@pytest.mark.parametrize("name", ["hf-token", "HF_TOKEN", "a.b-c_d", "x", "9lives"])
def test_valid_names_render_as_runpod_references(name: str) -> None:
    secret = Secret(name)
    assert secret == f"{{{{ RUNPOD_SECRET_{name} }}}}"
    assert secret.name == name
    assert repr(secret) == f"Secret({name!r})"
    assert pickle.loads(pickle.dumps(secret)).name == name


@pytest.mark.parametrize("name", ["", "has space", "slash/no", "dollar$", "ü", "x" * 129])
def test_invalid_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(SecretNameError, match="letters, digits, '_', '.' or '-'"):
        Secret(name)


def test_resource_config_records_only_the_reference() -> None:
    resource = CpuLoadBalancerSlsResource(name="llm", env={"HF_TOKEN": Secret("hf-token"), "MODE": "fast"})
    config = resource.to_config()
    assert json.loads(json.dumps(config))["env"] == {
        "HF_TOKEN": "{{ RUNPOD_SECRET_hf-token }}",
        "MODE": "fast",
    }
    rebuilt = resource_from_config(config)
    assert rebuilt == resource
    assert isinstance(rebuilt.env["HF_TOKEN"], Secret) and rebuilt.env["HF_TOKEN"].name == "hf-token"
    assert not isinstance(rebuilt.env["MODE"], Secret)
    assert secret_references(rebuilt.env) == {"HF_TOKEN": "hf-token"}


def test_volume_mount_path_defaults_to_runpods_and_must_be_absolute() -> None:
    assert CpuLoadBalancerSlsResource(name="v").volumeMountPath == "/runpod-volume"
    assert CpuLoadBalancerSlsResource(name="v", volumeMountPath="/data/").volumeMountPath == "/data"
    for bad in ("data", "/", "/a/../etc", "/a b"):
        with pytest.raises(ResourceConfigError, match="volumeMountPath"):
            CpuLoadBalancerSlsResource(name="v", volumeMountPath=bad)


class CountingStore:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.calls = 0

    def list_secrets(self) -> list[SecretInfo]:
        self.calls += 1
        return [SecretInfo(name) for name in self.names]

    def add_secret(self, name: str, value: str, description: str = "") -> SecretInfo:
        raise AssertionError("a check never adds")

    def delete_secret(self, name: str) -> None:
        raise AssertionError("a check never deletes")


def test_check_secrets_names_the_missing_ones_and_asks_only_when_needed() -> None:
    store = CountingStore(["b"])
    env = {"A": Secret("a"), "B": Secret("b"), "C": Secret("c"), "PLAIN": "1"}
    assert check_secrets({"env": env}, store) == ["a", "c"]
    assert check_secrets({"env": {"PLAIN": "1"}}, store) == []
    assert store.calls == 1


def test_credential_warnings_point_to_secret_without_quoting_the_value() -> None:
    env = {
        "HF": VALUE,  # the value's shape
        "SERVICE_TOKEN": "x1",  # *_TOKEN
        "AWS_SECRET_ACCESS_KEY": "y2",  # *_KEY
        "DB_PASSWORD": "z3",  # PASSWORD
        "HF_TOKEN": Secret("hf-token"),  # already a secret
        "EMPTY_KEY": "",
        "MODE": "fast",
    }
    warnings = credential_warnings(env)
    flagged = [w.split()[1] for w in warnings]
    assert flagged == ["HF", "SERVICE_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD"]
    assert all("Secret(" in w and "podroute secret add" in w for w in warnings)
    assert not any(value in w for w in warnings for value in (VALUE, "x1", "y2", "z3"))


def test_encrypted_store_keeps_values_encrypted_in_owner_only_files(tmp_path: Path) -> None:
    store = EncryptedSecretStore(tmp_path)
    info = store.add_secret("hf-token", VALUE, "model downloads")
    assert (info.name, info.description) == ("hf-token", "model downloads") and info.id
    for path in (tmp_path / "secrets.json", tmp_path / "secret.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert VALUE.encode() not in (tmp_path / "secrets.json").read_bytes()
    assert [s.name for s in EncryptedSecretStore(tmp_path).list_secrets()] == ["hf-token"]
    env = {"HF_TOKEN": Secret("hf-token"), "MODE": "fast"}
    assert EncryptedSecretStore(tmp_path).resolve_env(env) == {"HF_TOKEN": VALUE, "MODE": "fast"}
    with pytest.raises(SecretExistsError, match="already exists"):
        store.add_secret("hf-token", "other")
    with pytest.raises(SecretNotFoundError, match="'nope'"):
        store.resolve_env({"X": Secret("nope")})
    store.delete_secret("hf-token")
    with pytest.raises(SecretNotFoundError):
        store.delete_secret("hf-token")
    assert store.list_secrets() == []


def test_encrypted_store_refuses_bad_input_and_a_changed_key(tmp_path: Path) -> None:
    store = EncryptedSecretStore(tmp_path)
    with pytest.raises(SecretValueError, match="non-empty"):
        store.add_secret("a", "")
    with pytest.raises(SecretNameError):
        store.add_secret("a b", "v")
    store.add_secret("a", "v")
    (tmp_path / "secret.key").write_bytes(b"x" * 43 + b"=")
    with pytest.raises(SecretValueError, match="does not decrypt"):
        EncryptedSecretStore(tmp_path).resolve_env({"A": Secret("a")})
