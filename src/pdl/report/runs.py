"""`pdl run`'s tables: speed-up per loader, the stall, stages and memory."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..bench.point import Point
from ..bench.records import ResultSet
from ..loaders import BASELINE, equivalent
from ..stats.rounds import TARGET_STALL, interval, median
from .grid import Grid, noise_notes, of_ceiling_bounds, ratio, speedup_cell
from .stall import cores_needed, cpu_ms_per_image


def run_grid(rs: ResultSet) -> Grid:
    """Per loader: wall, images/s, speedup; the ratio to torch's and to pdl's process loader when they ran; CPU
    seconds per epoch (main + workers), peak memory (with --memory), time to the first batch, and whether its
    batches equalled the baseline's bit for bit."""
    pts = rs.points
    torch = next((p for p in pts if p.loader == "torch"), None)
    process = next((p for p in pts if p.loader == "process"), None)
    memory = any(p.memory_peak_mb for p in pts)
    columns = ["loader", "workers", "images", "median wall s", "images/s", "speedup ×"]
    ceiling = any(p.ceiling for p in pts if p.loader != BASELINE)
    if ceiling:
        columns.append("of ceiling")
    if torch:
        columns.append("vs torch")
    if process:
        columns.append("vs process")
    columns += ["CPU s", *(["peak MB"] if memory else []), "first batch ms", "same batches"]
    stepped = any(p.step_ms for p in pts)
    if stepped:
        columns += STALL_COLUMNS
    world, rank = whole(rs.options.get("world_size"), 1), whole(rs.options.get("rank"), 0)  # a shard of each epoch: say which
    shard = f" · rank {rank} of {world}" if world > 1 else ""
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
        if ceiling:
            row.append(ceiling_cell(p))
        if torch:
            row.append(ratio(median(torch.wall_s) / median(p.wall_s)))
        if process:
            row.append(ratio(median(process.wall_s) / median(p.wall_s)))
        row.append(f"{p.cpu_main_s + p.cpu_workers_s:.2f}")
        if memory:
            row.append(f"{max(p.memory_peak_mb):.0f}" if p.memory_peak_mb else "–")
        row += [f"{p.first_batch_s * 1e3:.0f}", same_cell(p.same_batches, equivalent(p.loader))]
        if stepped:
            row += stall_cells(p)
        grid.rows.append(row)
    grid.notes = (
        startup_notes(pts) + ceiling_notes(pts, rs.machine.cpu.usable) + peer_notes(pts) + noise_notes(pts) + skipped_notes(pts)
    )
    if stepped:
        grid.notes += [STALL_NOTE, *(need_line(p, rs.machine.cpu.usable) for p in pts if p.loader != BASELINE and p.step_ms)]
    return grid


def ceiling_cell(p: Point) -> str:
    """'97% of 1.86×': the speedup's share of the measured ceiling; '–' without one (or for the baseline)."""
    if p.loader == BASELINE or not p.ceiling or p.of_ceiling is None:
        return "–"
    return f"{p.of_ceiling:.0%} of {ratio(p.ceiling)}"


def ceiling_range(p: Point) -> str:
    """'1.91× (1.87–1.95)': the ceiling with its 95% interval (its own rounds)."""
    found = interval(p.ceiling_rounds)
    said = ratio(p.ceiling or 0)
    return said if found is None else f"{said} ({found[0]:.2f}–{found[1]:.2f})"


def ceiling_notes(pts: Sequence[Point], usable: int) -> list[str]:
    """What the ceiling is, and for each loader whether the loader or the machine is the limit."""
    measured = [p for p in pts if p.loader != BASELINE and p.ceiling]
    if not measured:
        return []
    first = measured[0]
    notes = [
        f"ceiling: {copies(first.ceiling_copies or first.workers)} of the sequential loop at once, sharing the epoch's "
        f"images as each is free, in the same rounds: {ceiling_range(first)} in {len(first.ceiling_rounds)} rounds, "
        f"where the core count says {min(first.workers, usable)}×; the most any loader reaches here for this work"
    ]
    notes += [f"{p.loader} ({n_workers(p.workers)}): {limit_line(p)}" for p in measured]
    return notes


def n_workers(n: int) -> str:
    """'1 worker', '2 workers'."""
    return f"{n} worker{'' if n == 1 else 's'}"


def copies(n: int) -> str:
    """'1 copy', '2 copies'."""
    return f"{n} {'copy' if n == 1 else 'copies'}"


AT_CEILING = 0.95  # a loader at 95% or more of the measured ceiling: the machine is the limit, not the loader


def limit_line(p: Point) -> str:
    """'1.80× of a 1.86× ceiling: 97% (95–99%): the machine is the limit', drawn from the share's 95% interval:
    the machine is the limit when the whole interval is at ``AT_CEILING`` or more; the loader leaves speed on the
    table when it is all below; above the ceiling beyond the noise is the ceiling's defect; else it cannot tell."""
    share = p.of_ceiling or 0.0
    bounds = of_ceiling_bounds(p)
    said = f"{ratio(p.speedup)} of a {ratio(p.ceiling or 0)} ceiling: {share:.0%}"
    if bounds is None:  # one round: no interval, the point estimate alone
        return said + (
            ": at the machine's limit (one round: no interval)"
            if share >= AT_CEILING
            else ": below the machine's limit (one round: no interval)"
        )
    low, high = bounds
    said += f" ({low:.0%}–{high:.0%})"
    if low > 1 + (1 - AT_CEILING):
        return (
            said
            + ": above its ceiling beyond the noise: the ceiling under-measures this machine here (pdl's defect, not a result)"
        )
    if low >= AT_CEILING:
        return said + ": the machine is the limit here, not the loader"
    if high < AT_CEILING:
        return said + f": the loader leaves about {1 - share:.0%} of what the machine gives on the table"
    return (
        said + f": within noise of {AT_CEILING:.0%} of the ceiling: more rounds would tell the loader's limit from the machine's"
    )


STALL_COLUMNS = ["stall", "1st batch", "of ideal images/s", "wait p50/p90/p99 ms"]


STALL_NOTE = (
    "stall: the epoch's wall time outside the training step / the wall time: the consumer's waits for batches, and "
    "at the epoch's end for work the loader started ahead (the sequential loop's is its whole load time); 1st batch: the part of it spent on each epoch's first batch (with --no-prefetch-epochs, and in loaders "
    "other than process and thread, prefetching does not carry across epochs: fewer batches per epoch, more of it); of ideal: images/s against the step-bound ideal, batch / step; "
    "wait: per batch, over every timed round"
)


def whole(value: object, default: int) -> int:
    """An option a results file holds, as a whole number; ``default`` when it is not one (options are not typed:
    a damaged or hand-edited file may hold "0" or null there)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


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
        f"{p.loader} ({n_workers(p.workers)}): ≈ {cpu:.1f} ms CPU per image; one step per {p.step_ms:g} ms at batch "
        f"{p.batch_size} needs ≈ {need:.1f} busy cores; this machine has {usable} usable"
    )
    ideal = p.ideal_images_per_s or 0.0
    if p.stall_share is not None and p.stall_share > TARGET_STALL and p.images_per_s > 0:
        cores = min(p.workers, usable)
        measured = cores * ideal / p.images_per_s + (1.0 if p.step_kind == "cpu" else 0.0)
        line += (
            f"; measured: {cores} busy core(s) reach {p.images_per_s / ideal:.0%} of the ideal → ≈ {measured:.1f} cores "
            f"(the estimate is {need / measured - 1:+.0%} off)"
        )
    return line


def same_cell(same: bool | None, equivalent: bool = False) -> str:
    """'yes', 'NO' (loud: the comparison is not of the same work), or '–' where it was not checked; 'equivalent'
    for a loader that runs its own operators on an equivalent pipeline (DALI): close to pdl's batches by design,
    never equal to them."""
    if equivalent and same is not True:
        return "equivalent"
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
    alike = [p.loader for p in points if equivalent(p.loader)]
    if alike:
        notes.append(
            f"equivalent: {', '.join(alike)} ran its own operators on an equivalent pipeline: batches close to pdl's, "
            "not equal (how close: docs/peers.md)"
        )
    different = [p.loader for p in points if p.same_batches is False and not equivalent(p.loader)]
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
        if p.loader != BASELINE:
            note = (
                f"{p.loader} ({n_workers(p.workers)}): start-up {p.startup_s * 1e3:.0f} ms, "
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
    base = next((mb for p, mb in measured if p.loader == BASELINE), None)
    grid = Grid(
        f"peak memory, MB: PSS of heap and shared memory, main process + workers, sampled every 20 ms in "
        f"{len(measured[0][1])} untimed epochs, each loader in a fresh process",
        ["loader", "workers", "peak per epoch", "last − first", "over sequential", "in batches", "budget"],
    )
    for p, mb in measured:
        row = [p.loader, str(p.workers), " ".join(f"{m:.0f}" for m in mb), f"{mb[-1] - mb[0]:+.0f}"]
        if base is None or p.loader == BASELINE:
            row += ["–", "–", "–"]
        else:
            over = max(mb) - max(base)
            batches = over / p.batch_mb if p.batch_mb else float("inf")
            budget = p.workers * p.prefetch + 2
            row += [f"{over:+.0f}", f"{batches:.1f}", f"{budget} {'within' if batches <= budget else 'OVER'}"]
        grid.rows.append(row)
    grid.notes = [
        f"a batch is {first.batch_mb or 0:.1f} MB; budget: workers × prefetch + 2 batches over the sequential run "
        "(the batches in flight, the one asked for, the one the loop still holds)"
    ]
    return grid
