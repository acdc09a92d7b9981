"""Renderers: results → Grid (a plain table) → Rich table or Markdown. They return; only the CLI prints.

Every number shown is computed from the raw per-round timings stored in the results file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .compare import ideal_speedup, median
from .gate import Verdict
from .records import Point, ResultSet

BEST = "★"
NOISY = "~"


@dataclass
class Grid:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _x(value: float) -> str:
    return f"{value:.2f}×"


def speedup_cell(p: Point) -> str:
    """'1.85× (1.80–1.90)': median of per-round ratios with their min–max; '~' marks a noisy point."""
    flag = NOISY if p.noisy else ""
    if len(p.speedup_rounds) < 2:
        return f"{_x(p.speedup)}{flag}"
    return f"{_x(p.speedup)} ({p.speedup_min:.2f}–{p.speedup_max:.2f}){flag}"


def _noise_note(points: Sequence[Point]) -> list[str]:
    noisy = [p for p in points if p.noisy]
    if not noisy:
        return []
    return [
        f"{NOISY} {len(noisy)} point(s) noisy: their rounds disagree by more than 10%; re-run with more --repeats "
        "(and a quieter machine) before trusting them"
    ]


def run_grid(rs: ResultSet) -> Grid:
    """Per loader: wall, images/s, speedup; the ratio to torch's and to pdl's process loader when they ran; CPU
    seconds per epoch (main + workers), peak memory (with --memory), time to the first batch, and whether its
    batches equalled the baseline's bit for bit."""
    pts = rs.points
    torch = next((p for p in pts if p.loader == "torch"), None)
    process = next((p for p in pts if p.loader == "process"), None)
    memory = any(p.memory_peak_mb for p in pts)
    columns = ["loader", "workers", "images", "median wall s", "images/s", "speedup ×"]
    if torch:
        columns.append("vs torch")
    if process:
        columns.append("vs process")
    columns += ["CPU s", *(["peak MB"] if memory else []), "first batch ms", "same batches"]
    grid = Grid(f"{pts[0].pipeline if pts else ''} · batch {pts[0].batch_size if pts else ''} · {rs.machine.summary()}", columns)
    for p in pts:
        row = [
            p.loader,
            str(p.workers),
            str(p.images),
            f"{median(p.wall_s):.3f}",
            f"{p.images_per_s:.0f}",
            speedup_cell(p),
        ]
        if torch:
            row.append(_x(median(torch.wall_s) / median(p.wall_s)))
        if process:
            row.append(_x(median(process.wall_s) / median(p.wall_s)))
        row.append(f"{p.cpu_main_s + p.cpu_workers_s:.2f}")
        if memory:
            row.append(f"{max(p.memory_peak_mb):.0f}" if p.memory_peak_mb else "–")
        row += [f"{p.first_batch_s * 1e3:.0f}", same_cell(p.same_batches)]
        grid.rows.append(row)
    grid.notes = startup_notes(pts) + peer_notes(pts) + _noise_note(pts) + skipped_notes(pts)
    return grid


def same_cell(same: bool | None) -> str:
    """'yes', 'NO' (loud: the comparison is not of the same work), or '–' where it was not checked."""
    return "–" if same is None else "yes" if same else "NO"


def peer_notes(points: Sequence[Point]) -> list[str]:
    """The peer loaders' versions, what pdl had to stop after them, and a warning if batches differed."""
    notes = []
    versions = [f"{p.loader} {p.loader_version}" for p in points if p.loader_version]
    if versions:
        notes.append("peer versions: " + ", ".join(dict.fromkeys(versions)))
    for p in points:
        if p.left_behind:
            notes.append(f"{p.loader}: left {p.left_behind} process(es) running on close; pdl stopped them")
    different = [p.loader for p in points if p.same_batches is False]
    if different:
        notes.append(
            f"NO: {', '.join(different)} made batches that differ from the baseline's: their speed is not for the same work"
        )
    return notes


def startup_notes(points: Sequence[Point]) -> list[str]:
    notes = []
    for p in points:
        if p.loader != "sequential":
            notes.append(
                f"{p.loader} ({p.workers} workers): start-up {p.startup_s * 1e3:.0f} ms, "
                f"first batch {p.first_batch_s * 1e3:.0f} ms (not in the wall times)"
            )
        if p.cluster is not None:
            c = p.cluster
            notes.append(f"ray cluster ({c.address}): {c.nodes} node(s), {c.cpus:g} CPUs")
    return notes


def skipped_notes(points: Sequence[Point]) -> list[str]:
    skipped = sorted({s for p in points for s in p.skipped})
    if not skipped:
        return []
    lines = [f"skipped {len(skipped)} unreadable image(s) (--on-error skip), the same for every loader:"]
    lines += [f"  {path}: {reason}" for path, reason in skipped[:20]]
    if len(skipped) > 20:
        lines.append(f"  … and {len(skipped) - 20} more (all listed in the results file)")
    return lines


def stages_grid(rs: ResultSet) -> Grid:
    """Where the time goes, per epoch: seconds summed over batches in the process that did the work."""
    grid = Grid(
        "where the time goes (seconds per epoch, summed over the processes doing each stage)",
        [
            "loader",
            "read",
            "decode",
            "augment",
            "collate",
            "hand-off ms",
            "wait share",
            "CPU main s",
            "CPU workers s",
            "busy s per worker",
            "tail idle s",
            "copied",
        ],
    )
    for p in rs.points:
        st = p.stages_s
        handoff = "–" if p.handoff_ms is None else f"{p.handoff_ms:.2f}"
        grid.rows.append([
            p.loader, *(f"{st[s]:.2f}" for s in ("read", "decode", "augment", "collate")), handoff,
            f"{p.wait_share:.0%}", f"{p.cpu_main_s:.2f}", f"{p.cpu_workers_s:.2f}",
            " ".join(f"{b:.2f}" for b in p.worker_busy_s) or "–", "–" if p.tail_idle_s is None else f"{p.tail_idle_s:.3f}",
            str(p.copied_batches),
        ])  # fmt: skip
    grid.notes = [
        "hand-off: from a worker finishing a batch to the consumer holding it (batches it waited for); "
        "wait share: time the consumer spent waiting for batches / wall time; busy: seconds each worker spent on its "
        "tasks; tail idle: worker-seconds idle at the epoch's end, each worker from its last task to the last one; "
        "copied: batches pickled, not shared"
    ]
    return grid


def memory_grid(rs: ResultSet) -> Grid | None:
    """Peak memory per untimed epoch, and what the parallel loaders cost over the sequential one, in batches."""
    measured = [(p, p.memory_peak_mb) for p in rs.points if p.memory_peak_mb]  # (point, peaks): peaks known not None
    if not measured:
        return None
    first = measured[0][0]
    base = next((mb for p, mb in measured if p.loader == "sequential"), None)
    grid = Grid(
        f"peak memory, MB: PSS of heap and shared memory, main process + workers, sampled every 20 ms in "
        f"{len(measured[0][1])} untimed epochs, each loader in a fresh process",
        ["loader", "workers", "peak per epoch", "last − first", "over sequential", "in batches", "budget"],
    )
    for p, mb in measured:
        row = [p.loader, str(p.workers), " ".join(f"{m:.0f}" for m in mb), f"{mb[-1] - mb[0]:+.0f}"]
        if base is None or p.loader == "sequential":
            row += ["–", "–", "–"]
        else:
            over = max(mb) - max(base)
            batches = over / p.batch_mb if p.batch_mb else float("inf")
            budget = p.workers * p.prefetch + 2
            row += [f"{over:+.0f}", f"{batches:.1f}", f"{budget} {'within' if batches <= budget else 'OVER'}"]
        grid.rows.append(row)
    grid.notes = [
        f"a batch is {first.batch_mb or 0:.1f} MB; budget: workers × prefetch + 2 batches over the sequential run "
        "(the batches in flight, the one being consumed, one spare)"
    ]
    return grid


def _groups(points: Sequence[Point]) -> dict[tuple[str, str], dict[int, Point]]:
    rows: dict[tuple[str, str], dict[int, Point]] = {}
    for p in points:
        if p.loader != "sequential":
            rows.setdefault((p.pipeline, p.loader), {})[p.workers] = p
    return rows


def sweep_workers_grids(rs: ResultSet) -> list[Grid]:
    usable = rs.machine.cpu.usable
    groups = _groups(rs.points)
    counts = sorted({w for g in groups.values() for w in g})
    many_loaders = len({loader for _, loader in groups}) > 1
    header = [f"{w} w" + (" ⚠" if w + 1 > usable else "") for w in counts]
    speed = Grid(f"speedup over sequential by workers (Table 1) · {rs.machine.summary()}", ["pipeline", *header])
    rate = Grid("images/s by workers", ["pipeline", "sequential", *header])
    verdicts = []
    for (pipe, loader), by_w in groups.items():
        label = f"{pipe} · {loader}" if many_loaders else pipe
        best = max(by_w.values(), key=lambda p: p.speedup)
        speed.rows.append([label, *(_cell(by_w.get(w), best) for w in counts)])
        base = median([t for p in by_w.values() for t in p.baseline_wall_s])
        images = next(iter(by_w.values())).images
        rate.rows.append([label, f"{images / base:.0f}", *(f"{by_w[w].images_per_s:.0f}" if w in by_w else "–" for w in counts)])
        verdicts.append(f"{label}: {best_line(by_w, best, usable)}")
    speed.rows.append(["ideal", *(_x(ideal_speedup(w, usable)) for w in counts)])
    speed.notes = [
        *verdicts,
        f"{BEST} best of the row; ideal = min(workers, usable cores = {usable}); "
        f"⚠ workers + the main process exceed the {usable} usable cores (oversubscribed)",
        *_noise_note(rs.points),
    ]
    return [speed, rate]


def _cell(p: Point | None, best: Point) -> str:
    if p is None:
        return "–"
    return speedup_cell(p) + (f" {BEST}" if p is best else "")


def best_line(by_w: dict[int, Point], best: Point, usable: int) -> str:
    w = best.workers
    line = f"best: {w} workers ({_x(best.speedup)})"
    beyond = [p for k, p in sorted(by_w.items()) if k > w]
    if beyond:
        return line + f"; adding workers past {w} slows it down"
    if w == max(by_w) and len(by_w) > 1:
        return line + (f"; the {usable} usable cores bound it" if w >= usable else "; more workers may still help")
    return line


def sweep_batch_grid(rs: ResultSet) -> Grid:
    pts = [p for p in rs.points if p.loader != "sequential"]
    pipe = pts[0].pipeline if pts else ""
    workers = pts[0].workers if pts else ""
    grid = Grid(
        f"speedup by batch size (Table 2) · {pipe} · {workers} workers · {rs.machine.summary()}",
        ["batch size", "loader", "speedup ×", "images/s", "sequential images/s", "wait share"],
    )
    for p in sorted(pts, key=lambda p: (p.batch_size, p.loader)):
        seq_rate = p.images / median(p.baseline_wall_s)
        grid.rows.append([
            str(p.batch_size), p.loader, speedup_cell(p), f"{p.images_per_s:.0f}", f"{seq_rate:.0f}", f"{p.wait_share:.0%}",
        ])  # fmt: skip
    grid.notes = _noise_note(pts)
    return grid


def grids(rs: ResultSet, stages: bool = False) -> list[Grid]:
    """The tables the command that wrote ``rs`` printed."""
    if rs.kind == "sweep-workers":
        return sweep_workers_grids(rs)
    if rs.kind == "sweep-batch":
        return [sweep_batch_grid(rs)]
    memory = memory_grid(rs)
    return [run_grid(rs), *([stages_grid(rs)] if stages else []), *([memory] if memory else [])]


def to_markdown(grid: Grid) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"**{grid.title}**", "", line(grid.columns), line(["---"] + ["---:"] * (len(grid.columns) - 1))]
    out += [line(r) for r in grid.rows]
    if grid.notes:
        out += [""] + [f"- {n}" for n in grid.notes]
    return "\n".join(out) + "\n"


def verdict_grid(verdicts: Sequence[Verdict], current: ResultSet, threshold: float) -> Grid:
    """The gate's table: per point ok / improved / regressed / inconclusive, with baseline, current, change."""
    grid = Grid(
        f"regression gate (max slowdown {threshold:.0%}) · {current.machine.summary()}",
        ["pipeline", "loader", "workers", "batch", "baseline ×", "current ×", "change", "verdict", "why"],
    )
    order = {"regressed": 0, "inconclusive": 1, "missing": 2, "improved": 3, "ok": 4, "new": 5}
    for v in sorted(verdicts, key=lambda v: (order[v.status], v.key)):
        pipeline, loader, workers, batch, _ = v.key
        grid.rows.append([
            str(pipeline), str(loader), str(workers), str(batch),
            "–" if v.baseline is None else f"{v.baseline:.2f}", "–" if v.current is None else f"{v.current:.2f}",
            "–" if v.change is None else f"{v.change:+.1%}", v.status.upper() if v.status == "regressed" else v.status, v.reason,
        ])  # fmt: skip
    counts = {s: sum(v.status == s for v in verdicts) for s in order}
    grid.notes = [", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    return grid
