"""`pdl tune`'s table."""

from __future__ import annotations

from ..bench.outcomes import Tuned
from ..bench.point import Point
from ..bench.records import ResultSet
from .grid import BEST, BUSY, Grid, noise_notes
from .runs import STALL_COLUMNS, STALL_NOTE, copies, limit_line, stall_cells, step_title
from .stall import answer, answer_line


def tune_grid(rs: ResultSet) -> Grid:
    """`pdl tune`'s trials in the order measured, then the call to use, its stall, memory and the search time."""
    pts = rs.points
    first = pts[0] if pts else None
    where = f"{first.pipeline} · {first.loader} · batch {first.batch_size}" if first else ""
    grid = Grid(
        f"pdl tune · {where}{step_title(rs)} · {rs.machine.summary()}",
        ["trial", "workers", "prefetch", "stall", "stall per round", *STALL_COLUMNS[1:]],
    )
    told = rs.tuned
    for i, p in enumerate(pts, 1):
        chosen = told and (p.workers, p.prefetch) == (told.workers, told.prefetch) and p.memory_peak_mb
        # a file whose point lost its stall rounds (damaged, or hand-edited) still shows: "–"
        rounds = " ".join(f"{r:.1%}" + ("" if ok else BUSY) for r, ok in zip(p.stall_rounds, p.quiet(), strict=False)) or "–"
        grid.rows.append([
            str(i), str(p.workers), str(p.prefetch), f"{p.stall_share or 0:.1%}" + (f" {BEST}" if chosen else ""),
            rounds, *stall_cells(p)[1:],
        ])  # fmt: skip
    if told is None:
        grid.notes = ["the search did not finish: these are the trials measured before it stopped"]
        return grid
    memory = told.memory_peak_mb
    verdict = "within" if told.reached else "NOT within"
    grid.notes = [
        f"use: {told.call}",
        f"its stall: {told.stall:.1%} ({verdict} the target {told.target:.0%}); "
        f"peak memory: {'not measured' if memory is None else f'{memory:.0f} MB'}; "
        f"search: {told.trials} trial(s) in {told.search_s:.0f} s",
        f"stopped: {told.reason}",
        *ceiling_lines(told, pts),
        STALL_NOTE,
    ]
    if not told.reached:
        a = answer(list(pts), rs.machine.cpu.usable, told.target)
        if a is not None:
            grid.notes.append(answer_line(a))
    # busy rounds (⊘) were left out of the search's comparisons; the reader is told who was busy
    grid.notes += [n for n in noise_notes(pts) if n.startswith(BUSY) or n[:1].isdigit()]
    return grid


def ceiling_lines(told: Tuned, pts: tuple[Point, ...]) -> list[str]:
    """The chosen call without the step, against the measured ceiling: whether the loader or the machine is the
    limit, and whether the ceiling itself could feed the step (when the target was not reached)."""
    check = told.ceiling_check
    if check is None or not check.ceiling or not check.speedup:
        return []
    lines = [f"without the step, beside the ceiling ({copies(told.workers)} of the sequential loop): {limit_line(check)}"]
    chosen = next((p for p in pts if (p.workers, p.prefetch) == (told.workers, told.prefetch)), None)
    takes = chosen.ideal_images_per_s if chosen is not None else None
    if told.reached or not takes:
        return lines
    gives = check.images_per_s / check.speedup * check.ceiling  # the sequential loop's images/s × the ceiling
    if gives < takes:
        lines.append(
            f"no loader can keep this step fed with {told.workers} workers here: the machine gives this pipeline about "
            f"{gives:.0f} images/s (the ceiling), the step takes {takes:.0f}; more cores or a lighter pipeline would"
        )
    else:
        lines.append(
            f"the machine gives this pipeline about {gives:.0f} images/s with {told.workers} workers (the ceiling), "
            f"the step takes {takes:.0f}: the stall is the loader's, not the machine's"
        )
    return lines
