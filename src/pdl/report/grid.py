"""The plain table every renderer returns (Grid), its cell marks, and Markdown. Renderers return; only the CLI prints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..bench.point import Point
from ..machine.contention import OTHERS_LIMIT, STEAL_LIMIT, busy_summary, throttle_summary
from ..stats.rounds import interval

BEST = "★"


NOISY = "~"


DISTURBED = "‼"


BUSY = "⊘"  # rounds another process (or the hypervisor) disturbed: kept out of every verdict


@dataclass
class Grid:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def ratio(value: float) -> str:
    return f"{value:.2f}×"


def speedup_cell(p: Point) -> str:
    """'1.85× (1.82–1.88)': median of per-round ratios with its 95% interval; '~' marks an uncertain point (its
    interval wider than the run's precision)."""
    flag = (NOISY if p.noisy else "") + (DISTURBED if p.disturbed else "") + (BUSY if p.busy_rounds() else "")
    found = interval(p.speedup_rounds)
    if found is None:
        return f"{ratio(p.speedup)}{flag}"
    return f"{ratio(p.speedup)} ({found[0]:.2f}–{found[1]:.2f}){flag}"


def of_ceiling_bounds(p: Point) -> tuple[float, float] | None:
    """The 95% interval of the loader's share of its ceiling: the two intervals' widths combined (independent
    rounds: their log half-widths add in quadrature); None without a ceiling or with fewer than two rounds of either."""
    share = p.of_ceiling
    if share is None:
        return None
    mine, bound = interval(p.speedup_rounds), interval(p.ceiling_rounds)
    if mine is None or bound is None:
        return None
    half = math.hypot(math.log(mine[1] / mine[0]) / 2, math.log(bound[1] / bound[0]) / 2)
    return share * math.exp(-half), share * math.exp(half)


def noise_notes(points: Sequence[Point]) -> list[str]:
    """What the reader must know before trusting the speedups: busy rounds (who), noisy points (and whether
    anything else was seen running), disturbed baselines, throttling."""
    notes = []
    groups = _measurements(points)
    busy = [(p, p.busy_rounds()) for p in groups if p.busy_rounds()]
    if busy:
        rounds = [i for _, b in busy for i in b]
        total = sum(p.rounds for p, _ in busy)
        notes.append(
            f"{BUSY} busy machine: {busy_summary(rounds, total)}; those rounds are marked and kept out of every verdict "
            "(pdl report --baseline, --history, the sweeps' sentences): re-run on a quiet machine, or raise --wait-quiet"
        )
    redone = [p for p in groups if p.redone]
    if redone:
        waited = sum(p.waited_s for p in groups)
        notes.append(
            f"{sum(p.redone for p in redone)} disturbed round(s) measured again after waiting for quiet "
            f"({waited:.1f} s in all); the first: {redone[0].redone_why}"
        )
    noisy = [p for p in points if p.noisy]
    if noisy:
        most = max(p.rounds for p in noisy)
        notes.append(
            f"{NOISY} {len(noisy)} point(s) uncertain: the speedup's 95% interval is wider than the precision asked for "
            f"(--precision) after up to {most} rounds; {_why_noisy(noisy)}; give them more time (--max-time) or rounds "
            "before trusting them"
        )
    disturbed = [p for p in points if p.disturbed]
    if disturbed:
        names = ", ".join(f"{p.loader} ({p.workers} workers, {p.speedup:.2f}×)" for p in disturbed)
        seen = [i for p in disturbed for i in p.interference if i.others is not None]
        why = (
            f"other processes used up to {max(i.others or 0.0 for i in seen):.2f} cores in its rounds"
            if seen
            else "something slowed the sequential loop"
        )
        notes.append(
            f"{DISTURBED} disturbed baseline: {names} above what the usable cores allow by more than the noise: "
            f"{why}; not a result: re-run on a quieter machine"
        )
    throttled = throttle_summary([i for p in groups for i in p.interference])
    if throttled:
        notes.append(f"{throttled}: its rounds ran slower than the usable cores allow (kept: the quota is the machine)")
    return notes


def _measurements(points: Sequence[Point]) -> list[Point]:
    """One point per measurement (the points of one run share its rounds and what the machine did in them)."""
    seen: dict[tuple[object, ...], Point] = {}
    for p in points:
        seen.setdefault((p.baseline_wall_s, p.interference), p)
    return list(seen.values())


def _why_noisy(noisy: Sequence[Point]) -> str:
    """Whether anything was seen competing in a noisy point's rounds: it names what, or rules the machine out."""
    rounds = [i for p in _measurements(noisy) for i in p.interference]
    if not rounds:
        return "the machine's load was not recorded (a file from an older pdl)"
    seen = [
        i
        for i in rounds
        if (i.others or 0.0) > OTHERS_LIMIT * i.usable / 2
        or (i.steal or 0.0) > STEAL_LIMIT * i.usable / 2
        or i.throttled
        or i.stalled
    ]
    if not seen:
        most, steal = max(i.others or 0.0 for i in rounds), max(i.steal or 0.0 for i in rounds)
        return (
            f"no other load seen inside this machine (others at most {most:.2f} cores, steal at most {steal:.2f}, no "
            "throttling): the host, or the work itself"
        )
    worst = max(seen, key=lambda i: (i.others or 0.0) + (i.steal or 0.0))
    parts = [f"others up to {worst.others or 0.0:.2f} cores"]
    if any(i.steal for i in seen):
        parts.append(f"steal up to {max(i.steal or 0.0 for i in seen):.2f} cores")
    if any(i.throttled for i in seen):
        parts.append("cgroup throttling")
    if any(i.stalled for i in seen):
        parts.append("a stalled worker of pdl's")
    return f"interference seen in {len(seen)} of {len(rounds)} rounds ({', '.join(parts)})"


def to_markdown(grid: Grid) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"**{grid.title}**", "", line(grid.columns), line(["---"] + ["---:"] * (len(grid.columns) - 1))]
    out += [line(r) for r in grid.rows]
    if grid.notes:
        out += [""] + [f"- {n}" for n in grid.notes]
    return "\n".join(out) + "\n"
