"""No import circles in the library or the dashboard, not even behind a function-level import."""

from __future__ import annotations

from pathlib import Path

from tests.support.import_graph import import_cycles

ROOT = Path(__file__).resolve().parents[2]


def test_the_library_and_the_dashboard_have_no_import_cycle():
    assert import_cycles([(ROOT, "dashboard"), (ROOT / "shared" / "src", "podroute")]) == []


def test_a_cycle_hidden_in_a_function_is_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "views").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text(
        "import pkg.typed\n\ndef create_app():\n    from pkg.views import register\n"
    )
    (package / "views" / "__init__.py").write_text("from pkg.views import pages\n")
    (package / "views" / "pages.py").write_text("from pkg.app import create_app\n")
    (package / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.app import create_app\n"
    )
    # the type-only import back to app is no cycle: only the function-level one is
    assert import_cycles([(tmp_path, "pkg")]) == [["pkg.app", "pkg.views", "pkg.views.pages"]]


def test_relative_imports_count(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("from .a import thing\n")
    assert import_cycles([(tmp_path, "pkg")]) == [["pkg.a", "pkg.b"]]
