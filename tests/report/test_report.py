"""Renderers against literal text (Markdown, and Rich at a pinned width)."""

from __future__ import annotations

from rich.console import Console

from pdl.cli.tables import to_rich
from pdl.report.grid import to_markdown
from pdl.report.render import grids
from pdl.report.sweeps import sweep_workers_grids

from ..factories import point, results, sweep_workers


def test_sweep_workers_markdown() -> None:
    speed, rate = sweep_workers_grids(sweep_workers())
    assert to_markdown(speed) == (
        "**speedup over sequential by workers (Table 1) · Test CPU 3000 · 4 usable of 4 logical cores · testbox**\n"
        "\n"
        "| pipeline | 1 w | 2 w | 4 w | 8 w ⚠ |\n"
        "| --- | ---: | ---: | ---: | ---: |\n"
        "| light | 1.00× (1.00–1.00) | 1.90× (1.90–1.90) | 3.20× (3.20–3.20) ★ | 2.50× (2.50–2.50) |\n"
        "| heavy | 1.00× (1.00–1.00) | 2.00× (2.00–2.00) | 3.80× (3.80–3.80) | 3.90× (3.90–3.90) ★ |\n"
        "| ideal | 1.00× | 2.00× | 4.00× | 4.00× |\n"
        "\n"
        "- light: best: 4 workers (3.20×); adding workers past 4 slows it down (95% intervals apart)\n"
        "- heavy: best: 8 workers (3.90×); the 4 usable cores bound it\n"
        "- ★ best of the row; ideal = min(workers, usable cores = 4); "
        "⚠ oversubscribed: 8 w: the workers alone exceed the 4 usable cores\n"
    )
    assert rate.rows[0] == ["light", "10", "10", "19", "32", "25"]


def test_run_table_in_rich_at_a_pinned_width() -> None:
    pts = [
        point("sequential", 0, [2.0, 2.2], [2.0, 2.2]),
        point("process", 2, [2.0, 2.2], [1.0, 1.0], same_batches=True, epoch_first_batch_s=0.105),
    ]
    rs = results("run", pts)
    console = Console(width=140, record=True, file=open("/dev/null", "w"), color_system=None)
    grid = grids(rs)[0]
    console.print(to_rich(grid))
    text = console.export_text()
    assert grid.notes == [  # 80 images in batches of 8: a sequential batch is 2.1 s / 10
        "process (2 workers): start-up 50 ms, first batch 200 ms (warm-up epoch, not in the wall times); "
        "in a timed epoch 105 ms = 0.50× a sequential batch"
    ]
    assert "light · batch 8 · Test CPU 3000 · 4 usable of 4 logical cores · testbox" in text
    assert (
        "│ process    │       2 │     80 │         1.000 │       80 │ 2.10× (1.14–3.84) │      1.00× │  2.10 │            200 │          yes │"
        in text
    )
    assert (
        "│ sequential │       0 │     80 │         2.100 │       36 │ 1.00× (1.00–1.00) │      0.48× │  2.10 │            200 │            – │"
        in text
    )


def test_run_table_compares_peers_with_the_process_loader_and_flags_different_batches() -> None:
    base = [2.0, 2.0]
    pts = [
        point("sequential", 0, base, base, same_batches=True),
        point("process", 2, base, [1.0, 1.0], same_batches=True, memory_peak_mb=(300.0, 310.0)),
        point("batchup", 2, base, [1.25, 1.25], same_batches=False, loader_version="0.2.3", left_behind=1),
    ]
    grid = grids(results("run", pts))[0]
    assert grid.columns[-5:] == ["vs process", "CPU s", "peak MB", "first batch ms", "same batches"]
    assert grid.rows[2][-5:] == ["0.80×", "2.10", "–", "200", "NO"]
    assert grid.rows[1][-5:] == ["1.00×", "2.10", "310", "200", "yes"]
    assert "peer versions: batchup 0.2.3" in grid.notes
    assert "batchup: left 1 process(es) running on close; pdl stopped them" in grid.notes
    assert any(n.startswith("NO: batchup made batches that differ") for n in grid.notes)


def test_noisy_points_are_flagged_with_advice() -> None:
    pts = [point("process", 2, [2.0, 2.0, 2.0], [1.0, 1.3, 0.8])]
    md = to_markdown(grids(results("run", pts))[0])
    assert "2.00× (1.08–3.61)~" in md  # the 95% interval (Student's t on the logs of 2.0, 1.54, 2.5)
    assert (
        "~ 1 point(s) uncertain: the speedup's 95% interval is wider than the precision asked for (--precision) after "
        "up to 3 rounds; the machine's load was not recorded (a file from an older pdl); give them more time "
        "(--max-time) or rounds before trusting them" in md
    )


def test_user_text_in_a_rich_table_is_shown_verbatim_not_as_markup() -> None:
    pts = [
        point("sequential", 0, [2.0], [2.0], pipeline="[bold]my.yaml"),
        point("process", 2, [2.0], [1.0], pipeline="[bold]my.yaml"),
    ]
    console = Console(width=120, record=True, file=open("/dev/null", "w"), color_system=None)
    console.print(to_rich(grids(results("run", pts))[0]))
    assert "[bold]my.yaml · batch 8" in console.export_text()


def test_memory_table_counts_the_cost_over_sequential_in_batches() -> None:
    seq = point("sequential", 0, [2.0], [2.0], memory_peak_mb=(100.0, 101.0), batch_mb=2.0)
    par = point("process", 2, [2.0], [1.0], memory_peak_mb=(110.0, 112.0), batch_mb=2.0)
    memory = grids(results("run", [seq, par]))[-1]
    assert memory.rows == [
        ["sequential", "0", "100 101", "+1", "–", "–", "–"],
        ["process", "2", "110 112", "+2", "+11", "5.5", "6 within"],
    ]
