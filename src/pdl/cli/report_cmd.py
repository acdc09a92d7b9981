"""`pdl report`: render saved results as the tables their command printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..report import grids, to_markdown, to_rich
from ..results import load, newest
from .common import guarded, out


@guarded
def report(
    files: Annotated[list[Path] | None, typer.Argument(help="Results files. Default: the newest in results/.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or markdown.")] = "table",
    stages: Annotated[bool, typer.Option("--stages", help="Also show the stage breakdown of a run.")] = False,
) -> None:
    """Show saved results."""
    paths = files or [newest(Path("results"))]
    for path in paths:
        results = load(path)
        for grid in grids(results, stages=stages):
            out.print(to_markdown(grid) if fmt == "markdown" else to_rich(grid))
