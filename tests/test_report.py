"""Renderers against literal text (Markdown, and Rich at a pinned width)."""

from __future__ import annotations

from rich.console import Console

from pdl.report import grids, sweep_workers_grids, to_markdown, to_rich
from pdl.results import ResultSet

from .factories import SYSTEM, point, sweep_workers


def test_sweep_workers_markdown() -> None:
    speed, rate = sweep_workers_grids(sweep_workers())
    assert to_markdown(speed) == (
        "**speedup over sequential by workers (Table 1) · Test CPU 3000 · 4 usable of 4 logical cores · testbox**\n"
        "\n"
        "| pipeline | 1 w | 2 w | 4 w ⚠ | 8 w ⚠ |\n"
        "| --- | ---: | ---: | ---: | ---: |\n"
        "| light | 1.00× (1.00–1.00) | 1.90× (1.90–1.90) | 3.20× (3.20–3.20) ★ | 2.50× (2.50–2.50) |\n"
        "| heavy | 1.00× (1.00–1.00) | 2.00× (2.00–2.00) | 3.80× (3.80–3.80) | 3.90× (3.90–3.90) ★ |\n"
        "| ideal | 1.00× | 2.00× | 4.00× | 4.00× |\n"
        "\n"
        "- light: best: 4 workers (3.20×); adding workers past 4 slows it down\n"
        "- heavy: best: 8 workers (3.90×); the 4 usable cores bound it\n"
        "- ★ best of the row; ideal = min(workers, usable cores = 4); "
        "⚠ workers + the main process exceed the 4 usable cores (oversubscribed)\n"
    )
    assert rate.rows[0] == ["light", "10", "10", "19", "32", "25"]


def test_run_table_in_rich_at_a_pinned_width() -> None:
    pts = [point("sequential", 0, [2.0, 2.2], [2.0, 2.2]), point("process", 2, [2.0, 2.2], [1.0, 1.0])]
    rs = ResultSet("run", {}, SYSTEM, pts, command=["pdl"], created="x")
    console = Console(width=100, record=True, file=open("/dev/null", "w"), color_system=None)
    grid = grids(rs)[0]
    console.print(to_rich(grid))
    text = console.export_text()
    assert grid.notes == ["process (2 workers): start-up 50 ms, first batch 200 ms (not in the wall times)"]
    assert "light · batch 8 · Test CPU 3000 · 4 usable of 4 logical cores · testbox" in text
    assert "│ process    │       2 │     80 │         1.000 │       80 │ 2.10× (2.00–2.20) │" in text


def test_noisy_points_are_flagged_with_advice() -> None:
    pts = [point("process", 2, [2.0, 2.0, 2.0], [1.0, 1.3, 0.8])]
    md = to_markdown(grids(ResultSet("run", {}, SYSTEM, pts, command=[], created="x"))[0])
    assert "2.00× (1.54–2.50)~" in md
    assert "~ 1 point(s) noisy: their rounds disagree by more than 10%; re-run with more --repeats" in md
