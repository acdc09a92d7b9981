"""Renderers: results → Grid (a plain table) → Rich table or Markdown. They return; only the CLI prints.

Every number shown is computed from the raw per-round timings stored in the results file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from .compare import CLAIM_ALPHA, NOISE_THRESHOLD, evidence, ideal_speedup, median
from .gate import Gate
from .history import History
from .records import Point, ResultSet
from .stall import answer, answer_line, cores_needed, cpu_ms_per_image

BEST = "★"
NOISY = "~"
DISTURBED = "‼"


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
    flag = (NOISY if p.noisy else "") + (DISTURBED if p.disturbed else "")
    if len(p.speedup_rounds) < 2:
        return f"{_x(p.speedup)}{flag}"
    return f"{_x(p.speedup)} ({p.speedup_min:.2f}–{p.speedup_max:.2f}){flag}"


def _noise_note(points: Sequence[Point]) -> list[str]:
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
    stepped = any(p.step_ms for p in pts)
    if stepped:
        columns += STALL_COLUMNS
    world = rs.options.get("world_size") or 1  # a shard of each epoch: say which
    shard = f" · rank {rs.options.get('rank', 0)} of {world}" if world > 1 else ""
    grid = Grid(
        f"{pts[0].pipeline if pts else ''} · batch {pts[0].batch_size if pts else ''}{shard}{step_title(rs)} · {rs.machine.summary()}",
        columns,
    )
    if pts and pts[0].cache == "cold":
        grid.title += " · cold page cache"
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
        if stepped:
            row += stall_cells(p)
        grid.rows.append(row)
    grid.notes = startup_notes(pts) + peer_notes(pts) + _noise_note(pts) + skipped_notes(pts)
    if stepped:
        grid.notes += [STALL_NOTE, *(need_line(p, rs.machine.cpu.usable) for p in pts if p.loader != "sequential" and p.step_ms)]
    return grid


STALL_COLUMNS = ["stall", "1st batch", "of ideal images/s", "wait p50/p90/p99 ms"]
STALL_NOTE = (
    "stall: the consumer's wait for batches / the epoch's wall time (the sequential loop's is its whole load "
    "time); 1st batch: the part of it spent on each epoch's first batch (without --prefetch-epochs prefetching does not carry across "
    "epochs: fewer batches per epoch, more of it); of ideal: images/s against the step-bound ideal, batch / step; "
    "wait: per batch, over every timed round"
)


def step_title(rs: ResultSet) -> str:
    """' · step 40 ms gpu' (or '0.5 ms/img'), as --step-ms was given; empty without one."""
    step = rs.options.get("step_ms")
    if not step:
        return ""
    amount, per, _ = str(step).replace("ms", "").replace(" ", "").partition("/")
    return f" · step {amount} ms{'/img' if per else ''} {rs.options.get('step_kind', 'gpu')}"


def stall_cells(p: Point) -> list[str]:
    """'12.3%', '4.1%', '980 of 1280 (77%)', '0.1/3.2/40.5'; dashes without a step."""
    ideal = p.ideal_images_per_s
    if p.stall_share is None or ideal is None:
        return ["–"] * len(STALL_COLUMNS)
    tail = "/".join(f"{v or 0:.1f}" for v in (p.wait_p50_ms, p.wait_p90_ms, p.wait_p99_ms))
    first = "–" if p.first_wait_share is None else f"{p.first_wait_share:.1%}"
    return [f"{p.stall_share:.1%}", first, f"{p.images_per_s:.0f} of {ideal:.0f} ({p.images_per_s / ideal:.0%})", tail]


def need_line(p: Point, usable: int) -> str:
    """The cores the step needs: estimated from CPU per image, and as measured where the cores run out (the
    loader's cores, all busy, reach images/s of the ideal: ideal / achieved × those cores)."""
    cpu = cpu_ms_per_image(p)
    need = cores_needed(cpu, p.batch_size, p.step_ms or 1.0, p.step_kind)
    line = (
        f"{p.loader} ({p.workers} workers): ≈ {cpu:.1f} ms CPU per image; one step per {p.step_ms:g} ms at batch "
        f"{p.batch_size} needs ≈ {need:.1f} busy cores; this machine has {usable} usable"
    )
    ideal = p.ideal_images_per_s or 0.0
    if p.stall_share is not None and p.stall_share > 0.05 and p.images_per_s > 0:
        cores = min(p.workers, usable)
        measured = cores * ideal / p.images_per_s + (1.0 if p.step_kind == "cpu" else 0.0)
        line += (
            f"; measured: {cores} busy core(s) reach {p.images_per_s / ideal:.0%} of the ideal → ≈ {measured:.1f} cores "
            f"(the estimate is {need / measured - 1:+.0%} off)"
        )
    return line


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


def mean_batch_s(p: Point) -> float:
    """The baseline's mean time per batch: its median epoch over the epoch's batch count."""
    return median(p.baseline_wall_s) / max(1, math.ceil(p.images / p.batch_size))


def startup_notes(points: Sequence[Point]) -> list[str]:
    notes = []
    baseline = points[0].loader if points else ""
    for p in points:
        if p.loader != "sequential":
            note = (
                f"{p.loader} ({p.workers} workers): start-up {p.startup_s * 1e3:.0f} ms, "
                f"first batch {p.first_batch_s * 1e3:.0f} ms (warm-up epoch, not in the wall times)"
            )
            if p.epoch_first_batch_s is not None and p.loader != baseline:
                share = p.epoch_first_batch_s / mean_batch_s(p)
                note += f"; in a timed epoch {p.epoch_first_batch_s * 1e3:.0f} ms = {share:.2f}× a {baseline} batch"
            notes.append(note)
        if p.cluster is not None:
            c = p.cluster
            ran = f"; tasks ran on {c.task_nodes}" if c.task_nodes is not None else ""
            notes.append(f"ray cluster ({c.address}): {c.nodes} node(s), {c.cpus:g} CPUs{ran}")
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
        f"{BEST} best of the row; ideal = min(workers, usable cores = {usable}); "
        f"⚠ workers + the main process exceed the {usable} usable cores (oversubscribed)",
        *_noise_note(rs.points),
    ]
    return [speed, rate, stall] if stepped else [speed, rate]


def _stall_cell(p: Point | None) -> str:
    if p is None or p.stall_share is None:
        return "–"
    return f"{p.stall_share:.1%} ({p.wait_p99_ms or 0:.0f})"


def _cell(p: Point | None, best: Point) -> str:
    if p is None:
        return "–"
    return speedup_cell(p) + (f" {BEST}" if p is best else "")


def best_line(by_w: dict[int, Point], best: Point, usable: int) -> str:
    """The row's conclusion, only as far as its rounds support it (a one-sided rank test at ``CLAIM_ALPHA``):
    'best' when the others are lower with evidence; 'slows it down' when more workers are; else it says which
    counts cannot be told apart from the best."""
    w = best.workers

    def lower(p: Point) -> bool:
        found = evidence(best.speedup_rounds, p.speedup_rounds, CLAIM_ALPHA)
        return found.significant and found.change < 0

    tied = [k for k, p in sorted(by_w.items()) if p is not best and not lower(p)]
    if len(tied) == len(by_w) - 1 and tied:
        return (
            f"cannot tell the worker counts apart: {w} workers measured highest ({_x(best.speedup)}), but no other "
            f"count's rounds are lower with evidence (need p ≤ {CLAIM_ALPHA:g}: re-run with more --repeats)"
        )
    line = f"best: {w} workers ({_x(best.speedup)})"
    if tied:
        line += f", within noise of {', '.join(map(str, tied))} workers"
    beyond = [k for k in sorted(by_w) if k > w]
    slower = [k for k in beyond if k not in tied]
    if slower == beyond and slower:
        return line + f"; adding workers past {w} slows it down (rank test, p ≤ {CLAIM_ALPHA:g})"
    if slower:
        return line + f"; {', '.join(map(str, slower))} workers are slower (rank test, p ≤ {CLAIM_ALPHA:g})"
    if w == max(by_w) and len(by_w) > 1:
        return line + (f"; the {usable} usable cores bound it" if w >= usable else "; more workers may still help")
    return line


def sweep_batch_grid(rs: ResultSet) -> Grid:
    pts = [p for p in rs.points if p.loader != "sequential"]
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
    grid.notes = _noise_note(pts) + ([STALL_NOTE] if stepped else [])
    return grid


def tune_grid(rs: ResultSet) -> Grid:
    """`pdl tune`'s trials in the order measured, then the call to use, its stall, memory and the search time."""
    pts = rs.points
    first = pts[0] if pts else None
    where = f"{first.pipeline} · {first.loader} · batch {first.batch_size}" if first else ""
    grid = Grid(
        f"pdl tune · {where}{step_title(rs)} · {rs.machine.summary()}",
        ["trial", "workers", "prefetch", "stall", "stall per round", *STALL_COLUMNS[1:]],
    )
    told = rs.options.get("tune") or {}
    for i, p in enumerate(pts, 1):
        chosen = told and (p.workers, p.prefetch) == (told.get("workers"), told.get("prefetch")) and p.memory_peak_mb
        rounds = " ".join(f"{r:.1%}" for r in p.stall_rounds)
        grid.rows.append([
            str(i), str(p.workers), str(p.prefetch), f"{p.stall_share or 0:.1%}" + (f" {BEST}" if chosen else ""),
            rounds, *stall_cells(p)[1:],
        ])  # fmt: skip
    if not told:
        grid.notes = ["the search did not finish: these are the trials measured before it stopped"]
        return grid
    memory = told.get("memory_peak_mb")
    verdict = "within" if told.get("reached") else "NOT within"
    grid.notes = [
        f"use: {told['call']}",
        f"its stall: {told['stall']:.1%} ({verdict} the target {told['target']:.0%}); "
        f"peak memory: {'not measured' if memory is None else f'{memory:.0f} MB'}; "
        f"search: {told['trials']} trial(s) in {told['search_s']:.0f} s",
        f"stopped: {told['reason']}",
        STALL_NOTE,
    ]
    if not told.get("reached"):
        a = answer(list(pts), rs.machine.cpu.usable, float(told["target"]))
        if a is not None:
            grid.notes.append(answer_line(a))
    return grid


MAD_NOTE = (
    "MAD: mean absolute difference between the pipeline's outputs from full and from reduced decoding, same "
    "per-image seeds, over the images decoded reduced only (uint8: 0–255; a float pipeline: in its own units)"
)


def decode_grid(rs: ResultSet) -> Grid:
    """`pdl decode`: per pipeline, images/s with full and with reduced decoding, the gain, who was reduced, MAD."""
    pts = rs.points
    first = pts[0] if pts else None
    workers = f" · {first.workers} workers" if first and first.workers else ""
    where = f"{first.loader}{workers} · batch {first.batch_size}" if first else ""
    grid = Grid(
        f"pdl decode: what --reduce-decode gains · {where} · {rs.machine.summary()}",
        ["pipeline", "images/s full", "images/s reduced", "gain × (min–max)", "reduced n (scales)", "full n", "MAD"],
    )
    told = {str(d["pipeline"]): d for d in rs.options.get("decode") or []}
    full = {p.pipeline: p for p in pts if not p.reduce_decode}
    reduced = [p for p in pts if p.reduce_decode]
    for p in reduced:
        d, base = told.get(p.pipeline, {}), full.get(p.pipeline)
        scales = ", ".join(f"1/{f}: {n}" for f, n in (d.get("scales") or {}).items() if n)
        dtype = d.get("output_dtype", "uint8")
        mad = "" if "mad" not in d else f"{d['mad']:.2f}" if dtype == "uint8" else f"{d['mad']:.3g} ({dtype})"
        grid.rows.append([
            p.pipeline, f"{base.images_per_s:.0f}" if base else "", f"{p.images_per_s:.0f}", speedup_cell(p),
            f"{d.get('reduced', '')}" + (f" ({scales})" if scales else ""), str(d.get("full", "")), mad,
        ])  # fmt: skip
    grid.notes = [f"{name}: no image decoded reduced ({d['why_none']})" for name, d in told.items() if d.get("why_none")]
    grid.notes += [*_noise_note(reduced), MAD_NOTE]
    if not rs.complete:
        grid.notes.append("the run did not finish: these are the pipelines measured before it stopped")
    return grid


def grids(rs: ResultSet, stages: bool = False) -> list[Grid]:
    """The tables the command that wrote ``rs`` printed."""
    if rs.kind == "decode":
        return [decode_grid(rs)]
    if rs.kind == "tune":
        return [tune_grid(rs)]
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


def verdict_grid(gate: Gate, current: ResultSet) -> Grid:
    """The gate's table: per configuration and measure (images/s, speedup), ok / improved / regressed /
    inconclusive, with baseline, current, the change and the evidence."""
    grid = Grid(
        f"regression gate ({gate.limits.describe()}) · {current.machine.summary()}",
        ["pipeline", "loader", "workers", "batch", "measure", "baseline", "current", "change", "verdict", "evidence"],
    )
    order = {"regressed": 0, "inconclusive": 1, "missing": 2, "improved": 3, "ok": 4, "new": 5}

    def value(v: float | None, measure: str) -> str:
        return "–" if v is None else f"{v:.2f}×" if measure == "speedup" else f"{v:.0f}"

    for v in sorted(gate.verdicts, key=lambda v: (order[v.status], v.key, v.measure)):
        pipeline, loader, workers, batch, _ = v.key
        grid.rows.append([
            str(pipeline), str(loader), str(workers), str(batch), v.measure,
            value(v.baseline, v.measure), value(v.current, v.measure),
            "–" if v.change is None else f"{v.change:+.1%}", v.status.upper() if v.status == "regressed" else v.status, v.reason,
        ])  # fmt: skip
    counts = {s: sum(v.status == s for v in gate.verdicts) for s in order}
    regressed = sorted({v.measure for v in gate.verdicts if v.status == "regressed"})
    grid.notes = [", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    if regressed:
        grid.notes.append(f"regressed in: {' and '.join(regressed)}")
    grid.notes += list(gate.notes)
    return grid


def history_grid(h: History) -> Grid:
    """Each configuration's images/s run after run (drift-corrected when every run was calibrated); ▼/▲ marks
    the first run where a change became significant, against the run the trend was at before it."""
    unit = "images/s at the first run's machine speed" if h.corrected else "images/s (raw: not every run calibrated)"
    machine = h.runs[-1].results.machine.summary()
    grid = Grid(
        f"history · {len(h.runs)} runs · {h.runs[0].results.kind} · {unit} · {machine}",
        ["#", "run", *(t.label for t in h.trends)],
    )
    marks = {(c.run, t.key): c for t in h.trends for c in t.changes}
    for i, run in enumerate(h.runs):
        cells = []
        for t in h.trends:
            v, change = t.values[i], marks.get((i, t.key))
            mark = "" if change is None else f" {'▼' if change.change < 0 else '▲'} {change.change:+.0%}"
            cells.append("–" if v is None else f"{v:.0f}{mark}")
        grid.rows.append([str(i + 1), run.label, *cells])
    for t in h.trends:
        for c in t.changes:
            word = "slower" if c.change < 0 else "faster"
            grid.notes.append(f"{t.label}: significantly {word} from run {c.run + 1} ({h.runs[c.run].label}): {c.reason}")
    if not any(t.changes for t in h.trends):
        grid.notes.append("no significant change in any configuration over these runs")
    machines = {run.results.machine.summary() for run in h.runs}
    if len(machines) > 1:
        grid.notes.append(f"measured on {len(machines)} machines: images/s compare only within one")
    return grid
