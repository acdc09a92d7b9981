"""The sweeps' tables: workers × pipeline (the seed report's Table 1) and batch size (its Table 2)."""

from __future__ import annotations

from collections.abc import Sequence

from ..bench.point import Point
from ..bench.records import ResultSet
from ..loaders import BASELINE
from ..stats.rounds import ideal_speedup, interval, median
from .grid import BEST, Grid, noise_notes, ratio, speedup_cell
from .runs import AT_CEILING, STALL_COLUMNS, STALL_NOTE, limit_line, stall_cells, step_title
from .stall import answer, answer_line


def _groups(points: Sequence[Point]) -> dict[tuple[str, str], dict[int, Point]]:
    rows: dict[tuple[str, str], dict[int, Point]] = {}
    for p in points:
        if p.loader != BASELINE:
            rows.setdefault((p.pipeline, p.loader), {})[p.workers] = p
    return rows


def sweep_workers_grids(rs: ResultSet) -> list[Grid]:
    usable = rs.machine.cpu.usable
    groups = _groups(rs.points)
    counts = sorted({w for g in groups.values() for w in g})
    many_loaders = len({loader for _, loader in groups}) > 1
    crowded = {w: oversubscribed(w, [g[w] for g in groups.values() if w in g], usable) for w in counts}
    header = [f"{w} w" + (" ⚠" if crowded[w] else "") for w in counts]
    speed = Grid(f"speedup over sequential by workers (Table 1) · {rs.machine.summary()}", ["pipeline", *header])
    rate = Grid("images/s by workers", ["pipeline", BASELINE, *header])
    verdicts = []
    for (pipe, loader), by_w in groups.items():
        label = f"{pipe} · {loader}" if many_loaders else pipe
        best = max(by_w.values(), key=lambda p: p.speedup)
        speed.rows.append([label, *(_cell(by_w.get(w), best) for w in counts)])
        base = median([t for p in by_w.values() for t in p.baseline_wall_s])
        images = next(iter(by_w.values())).images
        rate.rows.append([label, f"{images / base:.0f}", *(f"{by_w[w].images_per_s:.0f}" if w in by_w else "–" for w in counts)])
        verdicts.append(f"{label}: {quiet_line(by_w, usable)}")
    measured = any(p.ceiling for g in groups.values() for p in g.values())
    if measured:  # the measured bound per pipeline replaces the core count's
        for pipe in dict.fromkeys(pipe for pipe, _ in groups):
            by_w = {w: p for (pp, _), g in groups.items() if pp == pipe for w, p in g.items() if p.ceiling}
            speed.rows.append([f"{pipe} · ceiling", *(_ceiling_cell(by_w.get(w)) for w in counts)])
    else:
        speed.rows.append(["ideal", *(ratio(ideal_speedup(w, usable)) for w in counts)])
    reasons: dict[str, list[int]] = {}
    for w in counts:
        if crowded[w]:
            reasons.setdefault(crowded[w], []).append(w)
    why = "; ".join(f"{', '.join(map(str, ws))} w: {reason}" for reason, ws in reasons.items())
    stepped = any(p.step_ms for p in rs.points)
    if stepped:
        stall = Grid(f"stall share by workers{step_title(rs)} (wait p99 ms)", ["pipeline", *header])
        for (pipe, loader), by_w in groups.items():
            label = f"{pipe} · {loader}" if many_loaders else pipe
            stall.rows.append([label, *(_stall_cell(by_w.get(w)) for w in counts)])
        answers = [answer(list(by_w.values()), usable) for by_w in groups.values()]
        stall.notes = [STALL_NOTE.split("; 1st batch")[0], *(answer_line(a) for a in answers if a is not None)]
    speed.notes = [
        *verdicts,
        f"{BEST} best of the row; "
        + (
            f"ceiling: N copies of the sequential loop at once, N = min(workers, {usable} usable cores), measured in the "
            f"same rounds (the core count would say N×); a loader whose share's 95% interval is at {AT_CEILING:.0%} or "
            "more of it is at the machine's limit"
            if measured
            else f"ideal = min(workers, usable cores = {usable})"
        )
        + (f"; ⚠ oversubscribed: {why}" if why else ""),
        *noise_notes(rs.points),
    ]
    return [speed, rate, stall] if stepped else [speed, rate]


MAIN_COMPETES = 0.25  # of a core: a main process using more, beside workers that fill the cores, takes from them


def oversubscribed(workers: int, points: Sequence[Point], usable: int) -> str:
    """Why ``workers`` oversubscribe the cores, in words, or "": the workers alone exceed the usable cores, or
    they fill them and the main process was measured using more than ``MAIN_COMPETES`` of a core beside them (it
    mostly waits for batches, so it usually does not)."""
    if workers > usable:
        return f"the workers alone exceed the {usable} usable cores"
    if workers < usable:
        return ""
    main = max((p.cpu_main_s / median(p.wall_s) for p in points if median(p.wall_s) > 0), default=0.0)
    if main > MAIN_COMPETES:
        return f"they fill the {usable} usable cores and the main process used {main:.2f} of a core beside them (measured)"
    return ""


def _ceiling_cell(p: Point | None) -> str:
    """The measured ceiling at that worker count, with the loader's share of it: '1.86× (97%)'."""
    if p is None or not p.ceiling:
        return "–"
    return f"{ratio(p.ceiling)} ({p.of_ceiling or 0:.0%})"


def _stall_cell(p: Point | None) -> str:
    if p is None or p.stall_share is None:
        return "–"
    return f"{p.stall_share:.1%} ({p.wait_p99_ms or 0:.0f})"


def _cell(p: Point | None, best: Point) -> str:
    if p is None:
        return "–"
    return speedup_cell(p) + (f" {BEST}" if p is best else "")


def quiet_rounds(p: Point) -> tuple[float, ...]:
    """The point's per-round speedups of the rounds nothing else disturbed."""
    return tuple(r for r, ok in zip(p.speedup_rounds, p.quiet(), strict=True) if ok)


def quiet_line(by_w: dict[int, Point], usable: int) -> str:
    """``best_line`` drawn from quiet rounds only: a point whose rounds were all disturbed is left out, and said."""
    quiet = {w: p for w, p in by_w.items() if quiet_rounds(p)}
    left_out = sorted(set(by_w) - set(quiet))
    busy = f" ({', '.join(map(str, left_out))} workers: busy machine in every round, left out)" if left_out else ""
    if not quiet:
        return "no conclusion: the machine was busy in every round" + busy
    best = max(quiet.values(), key=lambda p: median(quiet_rounds(p)))
    limit = f"; {limit_line(best)}" if best.ceiling else ""
    return best_line(quiet, best, usable) + limit + busy


def best_line(by_w: dict[int, Point], best: Point, usable: int) -> str:
    """The row's conclusion, only as far as the speedups' 95% intervals (of the quiet rounds) support it: 'best' when
    the others' intervals lie wholly below the best's; 'within noise of' those that overlap it; 'slows it down' when
    every count past the best is below it."""
    w = best.workers
    bounds = {k: interval(quiet_rounds(p) or p.speedup_rounds) for k, p in by_w.items()}
    top = bounds[w]

    def lower(k: int) -> bool:
        found = bounds[k]
        return top is not None and found is not None and found[1] < top[0]

    tied = [k for k in sorted(by_w) if k != w and not lower(k)]
    if len(tied) == len(by_w) - 1 and tied:
        return (
            f"cannot tell the worker counts apart: {w} workers measured highest ({ratio(best.speedup)}), but every other "
            "count's 95% interval overlaps its (give it more --max-time, or rounds)"
        )
    line = f"best: {w} workers ({ratio(median(quiet_rounds(best) or best.speedup_rounds))})"
    if tied:
        line += f", within noise of {', '.join(map(str, tied))} workers"
    beyond = [k for k in sorted(by_w) if k > w]
    slower = [k for k in beyond if k not in tied]
    if slower == beyond and slower:
        return line + f"; adding workers past {w} slows it down (95% intervals apart)"
    if slower:
        return line + f"; {', '.join(map(str, slower))} workers are slower (95% intervals apart)"
    if w == max(by_w) and len(by_w) > 1:
        return line + (f"; the {usable} usable cores bound it" if w >= usable else "; more workers may still help")
    return line


def sweep_batch_grid(rs: ResultSet) -> Grid:
    pts = [p for p in rs.points if p.loader != BASELINE]
    pipe = pts[0].pipeline if pts else ""
    workers = pts[0].workers if pts else ""
    grid = Grid(
        f"speedup by batch size (Table 2) · {pipe} · {workers} workers{step_title(rs)} · {rs.machine.summary()}",
        ["batch size", "loader", "speedup ×", "images/s", "sequential images/s", "wait share"],
    )
    stepped = any(p.step_ms for p in pts)
    if stepped:
        grid.columns += STALL_COLUMNS
    for p in sorted(pts, key=lambda p: (p.batch_size, p.loader)):
        seq_rate = p.images / median(p.baseline_wall_s)
        grid.rows.append([
            str(p.batch_size), p.loader, speedup_cell(p), f"{p.images_per_s:.0f}", f"{seq_rate:.0f}", f"{p.wait_share:.0%}",
            *(stall_cells(p) if stepped else []),
        ])  # fmt: skip
    grid.notes = noise_notes(pts) + ([STALL_NOTE] if stepped else [])
    return grid
