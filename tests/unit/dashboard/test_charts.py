"""Server-rendered SVG charts: correct geometry and escaping, and a 24 h chart within 100 ms."""

from __future__ import annotations

import time

from dashboard.charts import Series, render_line_chart


def test_a_24_hour_chart_of_three_series_renders_within_100_ms() -> None:
    since = 1_700_000_000.0
    minutes = [since + 60 * i for i in range(1440)]
    series = [Series(name, [(t, (i * k) % 97) for i, t in enumerate(minutes)]) for k, name in
              ((1, "p50"), (3, "p95"), (7, "p99"))]  # fmt: skip
    started = time.perf_counter()
    svg = render_line_chart("Latency (ms)", series, since, since + 86400)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.1, elapsed
    assert svg.count("<polyline") == 3 and svg.count(",") >= 3 * 1440


def test_points_map_into_the_plot_and_names_are_escaped() -> None:
    svg = str(render_line_chart("<b>", [Series("a&b", [(0.0, 0.0), (100.0, 10.0)])], 0.0, 100.0, 200, 100))
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "a&amp;b" in svg
    # x 0 -> left padding (48), x 100 -> right edge (192); y 0 -> bottom (80), y max -> top (22)
    assert 'points="48.0,80.0 192.0,22.0"' in svg
    assert 'data-total="10"' in svg
