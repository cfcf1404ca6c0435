"""Python environments for workers: one virtualenv per dependency set, cached by its hash.

`isolated` (the default) gives each distinct dependency list its own virtualenv, installed once
with pip; `shared` runs workers with the runtime's own interpreter (fast, for development and tests,
when the runtime's environment already has what the services need).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import sys
from pathlib import Path

logger = logging.getLogger("podroute.runtime.environments")

MODES = ("isolated", "shared")


class WorkerEnvironmentError(Exception):
    """A worker environment could not be created; the message carries pip's last lines."""


class Environments:
    """Creates and caches worker environments under `<data_dir>/envs/`."""

    def __init__(self, root: Path, mode: str = "isolated") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown environment mode {mode!r}; choose one of {', '.join(MODES)}")
        self.root = root
        self.mode = mode
        self._locks: dict[str, asyncio.Lock] = {}

    @staticmethod
    def key(requirements: list[str]) -> str:
        """Hash of a dependency list and the Python version."""
        payload = f"{sys.version_info[:2]}\n" + "\n".join(sorted(requirements))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    async def python_for(self, requirements: list[str]) -> str:
        """The interpreter a worker with these requirements runs (creating its env if needed)."""
        if self.mode == "shared":
            return sys.executable
        key = self.key(requirements)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            directory = self.root / key
            python = directory / "bin" / "python"
            if (directory / ".ready").is_file():
                return str(python)
            shutil.rmtree(directory, ignore_errors=True)
            logger.info("creating worker environment %s (%d requirements)", key, len(requirements))
            await _run([sys.executable, "-m", "venv", str(directory)], "create the virtualenv")
            requirements_file = directory / "requirements.txt"
            requirements_file.write_text("\n".join(requirements) + "\n")
            await _run(
                [str(python), "-m", "pip", "install", "-q", "-r", str(requirements_file)],
                "install the dependencies",
            )
            (directory / ".ready").write_text("ok")
            return str(python)


async def _run(command: list[str], what: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        tail = "\n".join(output.decode(errors="replace").strip().splitlines()[-15:])
        raise WorkerEnvironmentError(f"could not {what}:\n{tail}")
