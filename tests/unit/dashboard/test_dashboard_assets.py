"""htmx comes from the pinned npm package; templates load nothing from elsewhere and run no inline script."""

from __future__ import annotations

import json
import re

import pytest

from dashboard import PACKAGE_DIR
from dashboard.assets import AssetsMissingError, htmx_asset

TEMPLATES = sorted((PACKAGE_DIR / "templates").rglob("*.html"))


def test_htmx_is_pinned_exactly_and_locked():
    pinned = json.loads((PACKAGE_DIR / "package.json").read_text())["dependencies"]["htmx.org"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned)
    lock = json.loads((PACKAGE_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/htmx.org"]["version"] == pinned
    assert lock["packages"]["node_modules/htmx.org"]["integrity"].startswith("sha512-")


def test_the_installed_htmx_is_served_under_its_version():
    asset = htmx_asset()
    pinned = json.loads((PACKAGE_DIR / "package.json").read_text())["dependencies"]["htmx.org"]
    assert asset.url_name == f"htmx-{pinned}.min.js" and asset.path.is_file()
    assert (
        "url_for('assets.vendor', filename=htmx_file)"
        in (PACKAGE_DIR / "templates" / "base.html").read_text()
    )


def test_missing_or_mismatched_htmx_is_refused_with_the_fix(tmp_path):
    package_json = tmp_path / "package.json"
    package_json.write_text(json.dumps({"dependencies": {"htmx.org": "2.0.11"}}))
    with pytest.raises(AssetsMissingError, match="npm ci --prefix"):
        htmx_asset(tmp_path / "node_modules", package_json)
    installed = tmp_path / "node_modules" / "htmx.org"
    installed.mkdir(parents=True)
    (installed / "package.json").write_text(json.dumps({"version": "1.9.0"}))
    expected = re.escape("1.9.0 is installed but package.json pins 2.0.11")
    with pytest.raises(AssetsMissingError, match=expected):
        htmx_asset(tmp_path / "node_modules", package_json)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_templates_reference_no_external_url_and_no_inline_code(template):
    text = template.read_text()
    assert not re.search(r"(src|href|action)=\"(https?:)?//", text)
    assert not re.search(r"<script(?![^>]*\bsrc=)", text), "inline <script>"
    assert "<style" not in text and " style=" not in text
    assert not re.search(r"\son[a-z]+=", text), "inline event handler"
    assert "hx-on" not in text and "js:" not in text


def test_stylesheet_imports_nothing_from_elsewhere():
    css = (PACKAGE_DIR / "static" / "style.css").read_text()
    assert "@import" not in css and "url(" not in css
