"""The dashboard's vendored front-end files: served from node_modules, checked against package.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dashboard import PACKAGE_DIR

NODE_MODULES = PACKAGE_DIR / "node_modules"
PACKAGE_JSON = PACKAGE_DIR / "package.json"


class AssetsMissingError(RuntimeError):
    """The pinned front-end packages are not installed; the message says how to install them."""


@dataclass(frozen=True)
class VendorAsset:
    """A front-end file served from node_modules under a versioned name."""

    url_name: str
    path: Path


def htmx_asset(node_modules: Path = NODE_MODULES, package_json: Path = PACKAGE_JSON) -> VendorAsset:
    """The installed htmx, checked against the version `package.json` pins."""
    pinned = json.loads(package_json.read_text())["dependencies"]["htmx.org"]
    installed_json = node_modules / "htmx.org" / "package.json"
    fix = f"run `npm ci --prefix {package_json.parent}` (it installs the pinned htmx.org {pinned})"
    if not installed_json.is_file():
        raise AssetsMissingError(f"htmx is not installed: {fix}")
    installed = json.loads(installed_json.read_text())["version"]
    if installed != pinned:
        raise AssetsMissingError(f"htmx {installed} is installed but package.json pins {pinned}: {fix}")
    return VendorAsset(f"htmx-{installed}.min.js", node_modules / "htmx.org" / "dist" / "htmx.min.js")
