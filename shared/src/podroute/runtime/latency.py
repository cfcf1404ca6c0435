"""A small mergeable latency sketch: log-spaced buckets (about 4 % relative error) as {index: count}.

Per-minute rollups keep one sketch per route/release/worker; merging sketches (adding counts) gives
percentiles of any window without keeping every request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

_GROWTH = 1.08
_LOG_GROWTH = math.log(_GROWTH)
_FLOOR_S = 0.0005
"""Durations below 0.5 ms all land in bucket 0."""
MAX_INDEX = 200
"""Buckets above this (about 2.4 hours) are clamped: the sketch stays bounded."""


def bucket_of(seconds: float) -> int:
    """The bucket index of a duration."""
    if seconds <= _FLOOR_S:
        return 0
    return min(MAX_INDEX, 1 + int(math.log(seconds / _FLOOR_S) / _LOG_GROWTH))


def value_of(index: int) -> float:
    """A representative duration of a bucket (its geometric middle)."""
    if index <= 0:
        return _FLOOR_S
    return float(_FLOOR_S * _GROWTH ** (index - 0.5))


def merge_sketches(sketches: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """Add sketches bucket by bucket."""
    merged: dict[int, int] = {}
    for sketch in sketches:
        for index, count in sketch.items():
            merged[int(index)] = merged.get(int(index), 0) + count
    return merged


def quantile(sketch: Mapping[int, int], q: float) -> float | None:
    """The `q` quantile (0..1) of a sketch in seconds; None for an empty sketch."""
    total = sum(sketch.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(sketch):
        seen += sketch[index]
        if seen >= rank:
            return value_of(index)
    return value_of(max(sketch))
