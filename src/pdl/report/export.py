"""Exporters: what `pdl report` shows, as one string per format. The CLI picks one and prints or writes it.

Each exporter takes the same ``Shown`` and returns text; adding a format is one function and one entry in
``EXPORTERS``. The "table" format is the CLI's own: Rich, on the terminal or recorded into a file.

Two are for the CI tools that keep benchmark histories: ``github-action-benchmark`` (the JSON array that
benchmark-action/github-action-benchmark reads with ``tool: customBiggerIsBetter``: ``name``, ``unit``,
``value``, optional ``range`` and ``extra``) and ``bmf`` (Bencher Metric Format: ``{benchmark: {measure: {value,
lower_value, upper_value}}}``). Both carry each point's images/s (the median round, with the slowest and fastest)
and, for parallel loaders, its speedup.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from ..bench.files import to_csv, to_json
from ..bench.point import Point
from ..bench.records import ResultSet
from ..loaders import BASELINE
from .gate import Gate
from .grid import Grid, to_markdown


@dataclass(frozen=True)
class Shown:
    """What one `pdl report` shows: the results files, their tables, and the gate's verdicts when gating."""

    sets: tuple[ResultSet, ...]
    grids: tuple[Grid, ...]
    gate: Gate | None = None  # with --baseline


def markdown(shown: Shown) -> str:
    """Ready to paste into a pull request: each table's title (machine line included), table, notes."""
    return "\n".join(to_markdown(g) for g in shown.grids)


def csv_text(shown: Shown) -> str:
    """The tidy CSV of each results file (one row per point and round), one after the other."""
    return "".join(to_csv(rs) for rs in shown.sets)


def json_text(shown: Shown) -> str:
    """Gating: the machine and one object per verdict. Otherwise the results files themselves."""
    if shown.gate is None:
        return "\n".join(to_json(rs) for rs in shown.sets)
    machine = shown.sets[0].machine.summary() if shown.sets else ""
    body = {"machine": machine, "verdicts": [v.to_dict() for v in shown.gate.verdicts], "notes": list(shown.gate.notes)}
    return json.dumps(body, indent=1)


def benchmark_name(p: Point) -> str:
    """'medium · process · 2 workers · batch 64' (and ' · augment in main' when it was; 'head: …' for a side of
    `pdl compare`)."""
    workers = "" if p.loader == BASELINE else f" · {p.workers} workers"
    where = " · augment in main" if p.augment_in == "main" else ""
    side = f"{p.side}: " if p.side else ""
    return f"{side}{p.pipeline} · {p.loader}{workers} · batch {p.batch_size}{where}"


def _points(shown: Shown) -> list[tuple[ResultSet, Point]]:
    return [(rs, p) for rs in shown.sets for p in rs.points]


def github_action_benchmark(shown: Shown) -> str:
    """benchmark-action/github-action-benchmark, ``tool: customBiggerIsBetter``: a JSON array of
    ``{"name", "unit", "value", "range", "extra"}``; images/s for every point, the speedup for parallel ones."""
    rows: list[dict[str, object]] = []
    for rs, p in _points(shown):
        rates = p.rates()
        extra = f"{p.rounds} rounds; {rs.machine.summary()}" + (f"; commit {rs.source.commit[:12]}" if rs.source else "")
        name = benchmark_name(p)
        rows.append({
            "name": f"{name} · images/s", "unit": "images/s", "value": round(p.images_per_s, 2),
            "range": f"{min(rates):.1f}–{max(rates):.1f}", "extra": extra,
        })  # fmt: skip
        if p.loader != BASELINE:
            rows.append({
                "name": f"{name} · speedup", "unit": "×", "value": round(p.speedup, 4),
                "range": f"{p.speedup_min:.3f}–{p.speedup_max:.3f}", "extra": extra + ("; disturbed baseline" if p.disturbed else ""),
            })  # fmt: skip
    return json.dumps(rows, indent=1, ensure_ascii=False)


def bmf(shown: Shown) -> str:
    """Bencher Metric Format: ``{"<benchmark>": {"throughput": {"value", "lower_value", "upper_value"}}}``, images/s
    (median round, slowest, fastest), with ``speedup`` beside it for parallel loaders."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for _, p in _points(shown):
        rates = p.rates()
        measures = {"throughput": {"value": p.images_per_s, "lower_value": min(rates), "upper_value": max(rates)}}
        if p.loader != BASELINE:
            measures["speedup"] = {"value": p.speedup, "lower_value": p.speedup_min, "upper_value": p.speedup_max}
        out[benchmark_name(p)] = measures
    return json.dumps(out, indent=1, ensure_ascii=False)


EXPORTERS: dict[str, Callable[[Shown], str]] = {
    "markdown": markdown,
    "csv": csv_text,
    "json": json_text,
    "github-action-benchmark": github_action_benchmark,
    "bmf": bmf,
}
FORMATS = ("table", *EXPORTERS)
