"""`pdl report`: saved results as tables, Markdown, CSV, JSON or the CI benchmark formats, a PNG plot, the
regression gate (--baseline), and a folder's history (--history).

Exit codes: 0 no regression, 1 a regression, 3 inconclusive only (too few rounds or too noisy to tell),
2 a usage or input error.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..bench.files import load, load_folder, newest
from ..errors import ConfigError
from ..report.export import EXPORTERS, FORMATS, Shown, markdown
from ..report.gate import Limits, compare, parse_threshold
from ..report.history import history, order
from ..report.render import grids
from ..report.verdicts import history_grid, verdict_grid
from .common import check_choice, err, guarded, out, path_value, show
from .tables import to_rich


@guarded
def report(
    files: Annotated[
        list[Path] | None, typer.Argument(parser=path_value, help="Results files. Default: the newest in results/.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"{', '.join(FORMATS)}.")] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", parser=path_value, help="Write there instead of the terminal.")
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", parser=path_value, help="Also draw a PNG (needs pdl[plot]).")] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", parser=path_value, help="Gate: compare against this results file.")
    ] = None,
    max_slowdown: Annotated[
        str, typer.Option("--max-slowdown", help="Gate and history: the smallest change of images/s that counts.")
    ] = f"{Limits.images:.0%}",
    max_speedup_drop: Annotated[
        str, typer.Option("--max-speedup-drop", help="Gate: the smallest change of speedup that counts.")
    ] = f"{Limits.speedup:.0%}",
    history_dir: Annotated[
        Path | None,
        typer.Option("--history", parser=path_value, help="Show each configuration's trend over a folder of results."),
    ] = None,
    allow_other_machine: Annotated[
        bool, typer.Option("--allow-other-machine", help="Gate: accept a baseline from another machine.")
    ] = False,
    stages: Annotated[bool, typer.Option("--stages", help="Also show a run's stage breakdown.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", hidden=True)] = False,
) -> None:
    """Show saved results; with --baseline, gate them: exit 0 no regression, 1 regression, 3 inconclusive, 2 bad input."""
    check_choice("--format", fmt, FORMATS)
    limits = Limits(parse_threshold("--max-slowdown", max_slowdown), parse_threshold("--max-speedup-drop", max_speedup_drop))
    if history_dir is not None:
        _history(history_dir, files, baseline, fmt, output, plot, limits.images)
        return
    sets = tuple(load(p) for p in (files or [newest(Path("results"))]))
    if plot is not None:
        if len(sets) != 1:
            raise ConfigError("--plot draws one results file; name just one")
        from ..report.plot import plot as draw

        draw(sets[0], plot)
        err.print(f"wrote {plot}", markup=False)
    if baseline is None:
        emit(fmt, output, Shown(sets, tuple(g for rs in sets for g in grids(rs, stages=stages))))
        return
    if len(sets) != 1:
        raise ConfigError("--baseline gates one results file; name just the current one")
    gate = compare(sets[0], load(baseline), limits, allow_other_machine)
    shown = Shown(sets, (verdict_grid(gate, sets[0]),), gate)
    emit(fmt, output, shown)
    job_summary(shown)
    raise typer.Exit(gate.exit_code)


def job_summary(shown: Shown) -> None:
    """GitHub Actions: the verdicts' table on the run's summary page (``$GITHUB_STEP_SUMMARY``), when set."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(markdown(shown) + "\n")


def _history(
    folder: Path,
    files: list[Path] | None,
    baseline: Path | None,
    fmt: str,
    output: Path | None,
    plot: Path | None,
    threshold: float,
) -> None:
    if files or baseline is not None:
        raise ConfigError("--history reads a whole folder: name no results files and no --baseline with it")
    if fmt not in ("table", "markdown"):
        raise ConfigError(f"--format '{fmt}' with --history: choose table or markdown")
    found = history(order(load_folder(folder), str(folder)), threshold)
    if plot is not None:
        from ..report.plot import plot_history

        plot_history(found, plot)
        err.print(f"wrote {plot}", markup=False)
    emit(fmt, output, Shown(tuple(r.results for r in found.runs), (history_grid(found),)))


def emit(fmt: str, output: Path | None, shown: Shown) -> None:
    if fmt == "table" and output is None:  # the terminal: Rich, in colour
        if len(shown.sets) > 1:  # several files: side by side where the terminal is wide enough
            from rich.columns import Columns

            out.print(Columns([to_rich(g) for g in shown.grids]))
        else:
            for grid in shown.grids:
                show(grid)
        return
    text = _table_text(shown) if fmt == "table" else EXPORTERS[fmt](shown)
    if output is None:
        out.print(text, markup=False, highlight=False, soft_wrap=True, end="" if text.endswith("\n") else "\n")
    else:
        output.write_text(text if text.endswith("\n") else text + "\n")
        err.print(f"wrote {output}", markup=False)


def _table_text(shown: Shown, width: int = 160) -> str:
    """The tables as the terminal shows them, without colour: for a file."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    for grid in shown.grids:
        console.print(to_rich(grid))
        for note in grid.notes:
            console.print(note, soft_wrap=True, markup=False)
    return console.export_text()
