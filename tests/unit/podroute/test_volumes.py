"""Network volume settings of the local runtime and how a worker's command gets its volume."""

from __future__ import annotations

from pathlib import Path

import pytest

from podroute.runtime import volumes
from podroute.runtime.volumes import (
    VolumeConfigError,
    VolumeMount,
    parse_volumes,
    volume_mount_for,
    with_volume,
)


def test_parse_volumes(tmp_path: Path) -> None:
    text = f"vol-a={tmp_path}/a, vol-b = {tmp_path}/b ,"
    assert parse_volumes(text) == {"vol-a": tmp_path / "a", "vol-b": tmp_path / "b"}
    assert parse_volumes("") == {}
    with pytest.raises(VolumeConfigError, match="VOLUME_ID=/host/folder"):
        parse_volumes("just-an-id")


def test_volume_mount_for_names_what_is_missing(tmp_path: Path) -> None:
    assert volume_mount_for({}, "", "/runpod-volume") is None
    with pytest.raises(VolumeConfigError, match=r"'vol-x' has no host folder .*--volume vol-x="):
        volume_mount_for({"vol-a": tmp_path}, "vol-x", "/runpod-volume")
    with pytest.raises(VolumeConfigError, match="does not exist"):
        volume_mount_for({"vol-a": tmp_path / "gone"}, "vol-a", "/runpod-volume")
    assert volume_mount_for({"vol-a": tmp_path}, "vol-a", "/data") == VolumeMount(tmp_path, "/data")


def test_with_volume_mounts_when_possible_else_points_the_env_at_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = ["python", "-m", "podroute", "serve", "svc:api"]
    assert with_volume(command, None) == (command, {})
    mount = VolumeMount(tmp_path, "/runpod-volume")
    monkeypatch.setattr(volumes, "can_mount", lambda: True)
    wrapped, env = with_volume(command, mount)
    assert wrapped[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert wrapped[-7:] == ["/runpod-volume", str(tmp_path), *command]
    assert env == {"RUNPOD_VOLUME_PATH": "/runpod-volume"}
    monkeypatch.setattr(volumes, "can_mount", lambda: False)
    assert with_volume(command, mount) == (command, {"RUNPOD_VOLUME_PATH": str(tmp_path)})
