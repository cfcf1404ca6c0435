"""Fixtures shared by every test: a fresh route registry per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from podroute import Registry, use_registry


@pytest.fixture
def registry() -> Iterator[Registry]:
    """A fresh registry that `@remote` records into for the duration of the test."""
    with use_registry(Registry()) as fresh:
        yield fresh
