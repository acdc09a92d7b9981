"""Exporters: what `pdl report` shows, as one string per format. The CLI picks one and prints or writes it.

Each exporter takes the same ``Shown`` and returns text; adding a format is one function and one entry in
``EXPORTERS``. The "table" format is the CLI's own: Rich, on the terminal or recorded into a file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from .gate import Verdict
from .records import ResultSet
from .report import Grid, to_markdown
from .results import to_csv, to_json


@dataclass(frozen=True)
class Shown:
    """What one `pdl report` shows: the results files, their tables, and the gate's verdicts when gating."""

    sets: tuple[ResultSet, ...]
    grids: tuple[Grid, ...]
    verdicts: tuple[Verdict, ...] | None = None  # with --baseline


def markdown(shown: Shown) -> str:
    """Ready to paste into a pull request: each table's title (machine line included), table, notes."""
    return "\n".join(to_markdown(g) for g in shown.grids)


def csv_text(shown: Shown) -> str:
    """The tidy CSV of each results file (one row per point and round), one after the other."""
    return "".join(to_csv(rs) for rs in shown.sets)


def json_text(shown: Shown) -> str:
    """Gating: the machine and one object per verdict. Otherwise the results files themselves."""
    if shown.verdicts is None:
        return "\n".join(to_json(rs) for rs in shown.sets)
    machine = shown.sets[0].machine.summary() if shown.sets else ""
    return json.dumps({"machine": machine, "verdicts": [v.to_dict() for v in shown.verdicts]}, indent=1)


EXPORTERS: dict[str, Callable[[Shown], str]] = {"markdown": markdown, "csv": csv_text, "json": json_text}
FORMATS = ("table", *EXPORTERS)
