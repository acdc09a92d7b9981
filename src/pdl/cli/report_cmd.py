"""`pdl report`: saved results as tables, Markdown, CSV or JSON, a PNG plot, and the regression gate.

Exit codes: 0 no regression, 1 a regression, 3 inconclusive only (too few rounds or too noisy to tell),
2 a usage or input error.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..errors import ConfigError
from ..export import EXPORTERS, FORMATS, Shown
from ..gate import compare, exit_code, parse_threshold
from ..report import grids, verdict_grid
from ..results import load, newest
from .common import check_choice, err, guarded, out, show
from .tables import to_rich


@guarded
def report(
    files: Annotated[list[Path] | None, typer.Argument(help="Results files. Default: the newest in results/.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, markdown, csv or json.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write there instead of the terminal.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw a PNG (needs pdl[plot]).")] = None,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="Gate: compare against this results file.")] = None,
    max_slowdown: Annotated[
        str, typer.Option("--max-slowdown", help="Gate: slowdown that counts (A/A noise here reached 23%).")
    ] = "25%",
    allow_other_machine: Annotated[
        bool, typer.Option("--allow-other-machine", help="Gate: accept a baseline from another machine.")
    ] = False,
    stages: Annotated[bool, typer.Option("--stages", help="Also show a run's stage breakdown.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", hidden=True)] = False,
) -> None:
    """Show saved results; with --baseline, gate them: exit 0 no regression, 1 regression, 3 inconclusive, 2 bad input."""
    check_choice("--format", fmt, FORMATS)
    threshold = parse_threshold(max_slowdown)
    sets = tuple(load(p) for p in (files or [newest(Path("results"))]))
    if plot is not None:
        if len(sets) != 1:
            raise ConfigError("--plot draws one results file; name just one")
        from ..plot import plot as draw

        draw(sets[0], plot)
        err.print(f"wrote {plot}", markup=False)
    if baseline is None:
        _emit(fmt, output, Shown(sets, tuple(g for rs in sets for g in grids(rs, stages=stages))))
        return
    if len(sets) != 1:
        raise ConfigError("--baseline gates one results file; name just the current one")
    verdicts = tuple(compare(sets[0], load(baseline), threshold, allow_other_machine))
    _emit(fmt, output, Shown(sets, (verdict_grid(verdicts, sets[0], threshold),), verdicts))
    raise typer.Exit(exit_code(list(verdicts)))


def _emit(fmt: str, output: Path | None, shown: Shown) -> None:
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
        out.print(text, markup=False, highlight=False, soft_wrap=True, end="")
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
