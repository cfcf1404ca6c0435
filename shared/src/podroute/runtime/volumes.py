"""Network volumes on the local runtime: a host folder per volume id, seen by workers at the mount path.

RunPod mounts an endpoint's network volume at `/runpod-volume`; so does the runtime, so code that
reads `/runpod-volume/models` runs unchanged. Each worker is a local process, so:

- as root on Linux, the worker starts in a private mount namespace (`unshare --mount`) where the
  host folder is bind-mounted at the mount path; nothing changes for other processes, except that
  an empty mount point folder (e.g. `/runpod-volume`) is created once if missing;
- elsewhere (not root, not Linux, no `unshare`, or a container without the mount capability) the
  path cannot be made to exist, and workers get `RUNPOD_VOLUME_PATH=<host folder>` instead.

Either way `RUNPOD_VOLUME_PATH` holds where the volume is, so `os.environ.get("RUNPOD_VOLUME_PATH",
"/runpod-volume")` works on RunPod, with a mount and without one.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VOLUME_PATH_ENV = "RUNPOD_VOLUME_PATH"
"""The env variable that tells a worker where its network volume is."""

_MOUNT_SCRIPT = 'mkdir -p "$1" && mount --bind "$2" "$1" && shift 2 && exec "$@"'


class VolumeConfigError(ValueError):
    """A volume setting is malformed or names a folder that does not exist."""


@dataclass(frozen=True)
class VolumeMount:
    """A worker's network volume: the host folder and where the worker expects it."""

    host_dir: Path
    mount_path: str


def parse_volumes(text: str) -> dict[str, Path]:
    """`vol-id=/host/folder,other=/folder2` (PODROUTE_RUNTIME_VOLUMES, --volume) -> id -> folder."""
    volumes: dict[str, Path] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        volume_id, _, folder = item.partition("=")
        if not volume_id.strip() or not folder.strip():
            raise VolumeConfigError(f"volume {item!r}: write VOLUME_ID=/host/folder")
        volumes[volume_id.strip()] = Path(folder.strip()).expanduser().resolve()
    return volumes


@functools.cache
def can_mount() -> bool:
    """Whether workers can get a private mount namespace with a bind mount (probed once)."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "mount", "--bind", "/", "/"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def volume_mount_for(volumes: dict[str, Path], volume_id: str, mount_path: str) -> VolumeMount | None:
    """The mount a resource with `networkVolumeId=volume_id` needs (None without a volume).

    VolumeConfigError when the runtime has no folder for that volume id, or the folder is missing.
    """
    if not volume_id:
        return None
    host_dir = volumes.get(volume_id)
    if host_dir is None:
        known = ", ".join(sorted(volumes)) or "none"
        raise VolumeConfigError(
            f"network volume {volume_id!r} has no host folder on this runtime (known: {known}); start "
            f"'podroute runtime --volume {volume_id}=/path/to/folder' or set PODROUTE_RUNTIME_VOLUMES"
        )
    if not host_dir.is_dir():
        raise VolumeConfigError(f"the folder {host_dir} of network volume {volume_id!r} does not exist")
    return VolumeMount(host_dir, mount_path)


def with_volume(command: list[str], mount: VolumeMount | None) -> tuple[list[str], dict[str, str]]:
    """The command that starts a worker with its volume in place, and the env it adds."""
    if mount is None:
        return command, {}
    if can_mount():
        wrapped = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT_SCRIPT]
        wrapped += ["podroute-volume", mount.mount_path, str(mount.host_dir), *command]
        return wrapped, {VOLUME_PATH_ENV: mount.mount_path}
    return command, {VOLUME_PATH_ENV: str(mount.host_dir)}
