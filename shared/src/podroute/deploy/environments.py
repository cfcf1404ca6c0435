"""The CLI's environments: `.podroute/deployments.json` maps each environment to its provider
settings, and nothing else. What is deployed is read from the provider (the source of truth), and
no endpoint key is stored: the local runtime hands keys out to its token holders, RunPod endpoints
take the account key. A file written by an older version (with `endpoints` and their keys) loses
them on the next save.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from podroute.providers.base import DeployError
from podroute.providers.factory import ProviderSettings


class Environments:
    """The project's environments (`.podroute/deployments.json`, mode 0600)."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.path = project / ".podroute" / "deployments.json"
        data: dict[str, Any] = {"environments": {}}
        if self.path.is_file():
            data = json.loads(self.path.read_text())
        self.environments: dict[str, dict[str, Any]] = {
            name: {k: v for k, v in settings.items() if k != "endpoints"}
            for name, settings in data.get("environments", {}).items()
        }

    def environment(self, name: str) -> dict[str, Any]:
        """One environment's settings; DeployError naming the known ones when it does not exist."""
        if name not in self.environments:
            known = ", ".join(self.environments) or "none yet"
            raise DeployError(
                f"no environment {name!r} (known: {known}); create it with 'podroute deploy new {name}'"
            )
        return self.environments[name]

    def provider_settings(self, name: str) -> ProviderSettings:
        """The provider settings of environment `name`."""
        return ProviderSettings.from_environment(self.environment(name))

    def save(self) -> None:
        """Write the file, readable by the owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"environments": self.environments}, handle, indent=2, sort_keys=True)
        os.replace(temporary, self.path)
