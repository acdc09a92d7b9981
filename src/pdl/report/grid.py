"""The plain table every renderer returns (Grid), its cell marks, and Markdown. Renderers return; only the CLI prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..bench.records import Point
from ..stats import NOISE_THRESHOLD

BEST = "★"


NOISY = "~"


DISTURBED = "‼"


@dataclass
class Grid:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def ratio(value: float) -> str:
    return f"{value:.2f}×"


def speedup_cell(p: Point) -> str:
    """'1.85× (1.80–1.90)': median of per-round ratios with their min–max; '~' marks a noisy point."""
    flag = (NOISY if p.noisy else "") + (DISTURBED if p.disturbed else "")
    if len(p.speedup_rounds) < 2:
        return f"{ratio(p.speedup)}{flag}"
    return f"{ratio(p.speedup)} ({p.speedup_min:.2f}–{p.speedup_max:.2f}){flag}"


def noise_notes(points: Sequence[Point]) -> list[str]:
    notes = []
    noisy = [p for p in points if p.noisy]
    if noisy:
        notes.append(
            f"{NOISY} {len(noisy)} point(s) noisy: their rounds disagree by more than {NOISE_THRESHOLD:.0%}; re-run with "
            "more --repeats (and a quieter machine) before trusting them"
        )
    disturbed = [p for p in points if p.disturbed]
    if disturbed:
        names = ", ".join(f"{p.loader} ({p.workers} workers, {p.speedup:.2f}×)" for p in disturbed)
        notes.append(
            f"{DISTURBED} disturbed baseline: {names} above what the usable cores allow by more than the noise: "
            "something slowed the sequential loop; not a result: re-run on a quieter machine"
        )
    return notes


def to_markdown(grid: Grid) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"**{grid.title}**", "", line(grid.columns), line(["---"] + ["---:"] * (len(grid.columns) - 1))]
    out += [line(r) for r in grid.rows]
    if grid.notes:
        out += [""] + [f"- {n}" for n in grid.notes]
    return "\n".join(out) + "\n"
