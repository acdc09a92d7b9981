"""Grids (the renderers' plain tables) as Rich tables: the one place the CLI turns them into terminal output."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..report.grid import BEST, Grid


def to_rich(grid: Grid) -> Table:
    """A Rich table; its notes are for the caller to print below it, unwrapped (paths and commands stay whole).

    Cells and title are ``Text``, never markup: a pipeline path or a value with brackets shows as it is.
    """
    table = Table(title=Text(grid.title), title_justify="left")
    for i, col in enumerate(grid.columns):
        table.add_column(Text(col), justify="left" if i == 0 else "right", no_wrap=i == 0 or "speedup" in col)
    for row in grid.rows:
        table.add_row(*(Text(c, style="bold green" if c.endswith(BEST) else "") for c in row))
    return table
