"""Start-up hooks the test services share: a model load that waits until told, or fails."""

from __future__ import annotations

import os
import time
from pathlib import Path

from podroute import on_startup
from podroute.resources import Resource

RELEASE_FILE_ENV = "PODROUTE_TEST_RELEASE_FILE"
"""The file whose creation lets a waiting `load_model` hook finish (its path, in the environment)."""


def wait_for_release(timeout: float = 10.0) -> None:
    """Block until the file named by `PODROUTE_TEST_RELEASE_FILE` exists (at most `timeout` s)."""
    release = Path(os.environ[RELEASE_FILE_ENV])
    deadline = time.monotonic() + timeout
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def add_model_loader(resource: Resource, *, wait: bool, fail: bool) -> None:
    """Give `resource` a `load_model` start-up hook that waits for the release file and/or fails."""

    @on_startup(resource)
    def load_model() -> None:
        if wait:
            wait_for_release()
        if fail:
            raise FileNotFoundError("weights.bin")
