"""Fixtures shared by every test: a fresh route registry, and a real local runtime on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from podroute import Registry, use_registry
from tests.runtime_support import Runtime, runtime_process


@pytest.fixture
def registry() -> Iterator[Registry]:
    """A fresh registry that `@remote` records into for the duration of the test."""
    with use_registry(Registry()) as fresh:
        yield fresh


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A real `podroute runtime` process with its state in the test's temporary folder."""
    with runtime_process(tmp_path / "runtime") as running:
        yield running
