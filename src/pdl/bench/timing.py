"""Timing loaders on one workload: warm-up, start-up apart, interleaved rounds, CPU per run; memory apart.

The clock is injected so the statistics are tested with exact numbers. The core never prints: progress is a
callback.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import psutil

from ..data.cache import ColdCache
from ..data.decoders import DEFAULT as DEFAULT_DECODER
from ..data.pipeline import Pipeline
from ..data.protocol import Dataset
from ..errors import NoProgressError
from ..loaders import CEILING, Loader, LoaderSpec, make_loader
from ..loaders.batching import STAGES
from ..loaders.chunks import chunk_size
from ..machine.contention import Interference, Watch
from ..machine.cpu import cpu_info
from ..stats.rounds import PRECISION, impossible, median, percentile, speedup, stall_share, wait_share, within
from .calibrate import calibration_s
from .memory import peak_memory
from .point import Point
from .records import cluster_from_info
from .step import Clock, Sleep, Step, take_step

Progress = Callable[[str], None]  # called after each timed or warm-up epoch, with what was just run


@dataclass
class EpochTiming:
    wall_s: float
    images: int
    wait_s: float
    cpu_main_s: float
    cpu_workers_s: float
    stages: dict[str, float]
    handoff_s: list[float] = field(default_factory=list)
    worker_busy_s: dict[int, float] = field(default_factory=dict)
    tail_idle_s: float = 0.0
    copied_batches: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    waits_s: list[float] = field(default_factory=list)  # per batch, as the consumer saw it: asking → holding
    step_s: float = 0.0  # in the simulated training step
    calibration_s: float | None = None  # the calibration workload in this epoch's round (calibrate.py)


def _cpu(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def time_epoch(
    loader: Loader, clock: Clock = time.perf_counter, step: Step | None = None, sleep: Sleep = time.sleep
) -> EpochTiming:
    """One full epoch of ``loader``, as a training loop would consume it: with a ``step``, the consumer holds
    each batch for a simulated training step before asking for the next."""
    me = os.getpid()
    workers = loader.worker_pids
    cpu0_main, cpu0_workers = _cpu([me]), _cpu(workers)
    images, waits, step_s = 0, [], 0.0
    t0 = clock()
    batches = iter(loader)
    while True:
        asked = clock()
        batch = next(batches, None)
        if batch is None:
            break
        waits.append(clock() - asked)
        images += len(batch)
        if step is not None:
            stepping = clock()
            take_step(step, len(batch), clock, sleep)
            step_s += clock() - stepping
        del batch  # hand the shared-memory slot back before the next batch, as a real loop does
    loader.settle()  # work it started ahead for its next epoch is done inside this epoch's window, not in another's
    wall = clock() - t0
    stats = loader.stats
    return EpochTiming(
        wall_s=wall,
        images=images,
        wait_s=sum(stats.wait_s),
        cpu_main_s=_cpu([me]) - cpu0_main,
        cpu_workers_s=_cpu(workers) - cpu0_workers,
        stages={s: sum(getattr(t, s) for t in stats.stages) for s in STAGES},
        handoff_s=list(stats.handoff_s),
        worker_busy_s=dict(stats.worker_busy_s),
        tail_idle_s=stats.tail_idle_s(),
        copied_batches=stats.copied_batches,
        skipped=list(stats.skipped),
        waits_s=waits,
        step_s=step_s,
    )


MAX_ROUNDS = 20  # auto: the most rounds a side gets, however noisy its rounds are


@dataclass(frozen=True)
class RoundPlan:
    """How many rounds: exactly ``least`` (a fixed count), or, with a ``precision``, at least ``least`` and then more
    until every side's speedup interval is within it (each side leaves the rounds once it is), ``most`` rounds are
    done, or the ``deadline`` (``time.monotonic()``) has passed."""

    least: int
    most: int
    precision: float | None = None
    deadline: float | None = None

    @classmethod
    def fixed(cls, rounds: int) -> RoundPlan:
        return cls(rounds, rounds)

    def more(self, done: int, now: float) -> bool:
        """Whether another round may start after ``done`` kept rounds (the sides still uncertain decide if it must)."""
        if done < self.least:
            return True
        if self.precision is None or done >= self.most:
            return False
        return self.deadline is None or now < self.deadline

    def precise(self, ratios: Sequence[float]) -> bool:
        """Whether these per-round ratios' interval is within the precision (never, below ``least`` rounds)."""
        if self.precision is None or len(ratios) < self.least:
            return False
        return within(ratios, self.precision)


@dataclass(frozen=True)
class Workload:
    """One point's configuration: the same images, pipeline and loader arguments for every loader."""

    dataset: Dataset
    pipeline: Pipeline
    spec: LoaderSpec
    loaders: tuple[str, ...]  # the first is the baseline
    repeats: int = 3  # the rounds; with a precision, the fewest
    memory_epochs: int = 0  # epochs per loader, after the timed rounds, with memory sampled
    step: Step | None = None  # the consumer's simulated training step per batch (timed rounds only)
    cache: str = "warm"  # cold: the dataset's files evicted from the page cache before every timed epoch
    watch: Watch | None = None  # reads what else competes for the CPUs in each round (machine/contention.py); None: nothing
    ceiling: bool = False  # also time copies of the sequential loop in the same rounds: the measured bound
    precision: float | None = None  # rounds until each speedup's 95% interval is within ±this (None: exactly repeats)
    deadline: float | None = None  # with a precision: no round starts after this time.monotonic()

    def plan(self) -> RoundPlan:
        if self.precision is None:
            return RoundPlan.fixed(self.repeats)
        return RoundPlan(self.repeats, max(self.repeats, MAX_ROUNDS), self.precision, self.deadline)


def measure(
    work: Workload | Sequence[Workload],
    clock: Clock = time.perf_counter,
    progress: Progress | None = None,
    sleep: Sleep = time.sleep,
) -> list[Point]:
    """Warm up every loader (start-up and first batch timed apart), then interleaved rounds (``RoundPlan``).

    Within a round every loader runs one epoch; the order flips each round so drift hits all sides alike. Several
    workloads (the worker counts of one pipeline and batch size: the same images, the same sequential loop) are
    measured together: the baseline once, every workload's other loaders beside it. Then, with ``memory_epochs``,
    each loader runs that many more epochs in a fresh process of its own with its memory sampled
    (``memory.peak_memory``): sampling costs CPU, so it never runs during a timed epoch.
    Returns one point per loader of each workload, the baseline first (once).
    """
    works = [work] if isinstance(work, Workload) else list(work)
    tick = progress or (lambda _msg: None)
    points = _timed(works, clock, tick, sleep)
    if works[0].memory_epochs:
        kinds = [(works[0], works[0].loaders[0])] + [(w, k) for w in works for k in w.loaders[1:]]
        points = [_with_memory(w, kind, point, tick) for (w, kind), point in zip(kinds, points, strict=True)]
    return points


def _with_memory(work: Workload, kind: str, point: Point, tick: Progress) -> Point:
    run = (kind, work.dataset, work.pipeline, work.spec, work.memory_epochs)
    memory = peak_memory(*run, partial(tick, f"memory {kind}"))
    return replace(point, memory_peak_mb=tuple(float(m) for m in memory["memory_peak_mb"]), batch_mb=float(memory["batch_mb"]))


def ceiling_copies(workers: int) -> int:
    """The ceiling a point of ``workers`` is read against: as many copies of the sequential loop as it has workers,
    never more than the usable cores (more copies only take turns on the same cores, and the most a loader can
    reach is what the cores give)."""
    return max(1, min(workers, cpu_info().usable))


def _timed(works: Sequence[Workload], clock: Clock, tick: Progress, sleep: Sleep = time.sleep) -> list[Point]:
    first = works[0]
    cold = ColdCache(first.dataset) if first.cache == "cold" else None
    sides = [(first, first.loaders[0])] + [(w, k) for w in works for k in w.loaders[1:] if k != CEILING]
    names = [k if len(works) == 1 else f"{k} {w.spec.num_workers}w" for w, k in sides]
    names[0] = first.loaders[0]
    # with a step, the bound is the step's (the "of ideal images/s" column): the copies take no step, so their
    # ratio to a sequential loop that does would read past the cores (2.71× on 2)
    bounds: dict[int, int] = {}  # copies → its side
    if first.ceiling and first.step is None:
        for n in sorted({ceiling_copies(w.spec.num_workers) for w in works if w.spec.num_workers > 0}):
            bounds[n] = len(sides)
            sides.append((replace(first, spec=replace(first.spec, num_workers=n)), CEILING))
            names.append(f"{CEILING} {n}" if len(works) > 1 else CEILING)
    points = side_by_side(sides, names, clock, tick, sleep, cold.evict if cold is not None else None)
    found = {n: points[i] for n, i in bounds.items()}
    points = points[: len(points) - len(bounds)]
    if found:  # not a loader's point: the bound every other point is read against
        points = [
            p if p.workers == 0 else _bounded(p, found[ceiling_copies(p.workers)])
            for p in points
        ]  # fmt: skip
    if cold is not None:
        points = [replace(p, cache="cold", cache_resident=cold.resident) for p in points]
    return points


def _bounded(p: Point, bound: Point) -> Point:
    return replace(p, ceiling=bound.speedup, ceiling_rounds=bound.speedup_rounds, ceiling_copies=bound.workers)


def side_by_side(
    sides: Sequence[tuple[Workload, str]],
    names: Sequence[str],
    clock: Clock = time.perf_counter,
    tick: Progress = lambda _msg: None,
    sleep: Sleep = time.sleep,
    before_epoch: Callable[[], object] | None = None,
) -> list[Point]:
    """One loader per (workload, loader kind), timed in the same interleaved rounds (``interleaved``), each point's
    speed-up against the first side's in the rounds it ran in. The loaders are made and closed here (on error and
    Ctrl-C too); what a peer loader left running is stopped by ``close`` and counted in its point's ``left_behind``."""
    first = sides[0][0]
    with ExitStack() as stack:
        loaders = []
        for work, kind in sides:
            loader = make_loader(kind, work.dataset, work.pipeline, work.spec)
            stack.callback(loader.close)
            loaders.append(loader)
        warm, runs, rounds = interleaved(
            loaders, names, first.plan(), clock, tick, first.step, sleep, before_epoch, calibration_s, first.watch
        )
        points = []
        for i, (work, _) in enumerate(sides):
            kept = sorted(runs[i])
            point = make_point(work, loaders[i], warm[i], [runs[i][r] for r in kept], [runs[0][r] for r in kept], warm[0].digest)
            points.append(replace(point, left_behind=int(getattr(loaders[i], "left_behind", 0)), **rounds.fields(kept)))
    if rounds.stopped is not None:  # the loaders are closed: raise with what the finished rounds measured
        rounds.stopped.points = points  # type: ignore[attr-defined]
        raise rounds.stopped
    return points


@dataclass
class Rounds:
    """What the machine did in each kept round (``interference``, one per round), how many disturbed rounds were
    measured again, and the seconds spent waiting for quiet."""

    interference: list[Interference] = field(default_factory=list)
    redone: int = 0
    waited_s: float = 0.0
    redone_why: str = ""  # what disturbed the first round measured again
    stopped: NoProgressError | None = None  # a loader hung after some rounds: their points are made, then this raised

    def fields(self, kept: Sequence[int] | None = None) -> dict[str, Any]:
        """A point's fields of these rounds; ``kept``: the round numbers it ran in (default: all)."""
        seen = self.interference if kept is None or not self.interference else [self.interference[r] for r in kept]
        return {
            "interference": tuple(seen),
            "redone": self.redone,
            "waited_s": self.waited_s,
            "redone_why": self.redone_why,
        }


def interleaved(
    loaders: Sequence[Loader],
    names: Sequence[str],
    plan: RoundPlan | int,
    clock: Clock = time.perf_counter,
    tick: Progress = lambda _msg: None,
    step: Step | None = None,
    sleep: Sleep = time.sleep,
    before_epoch: Callable[[], object] | None = None,
    calibrate: Callable[[], float] | None = None,
    watch: Watch | None = None,
    now: Callable[[], float] = time.monotonic,
) -> tuple[list[WarmUp], list[dict[int, EpochTiming]], Rounds]:
    """Warm every loader up, then rounds of one timed epoch each, the order flipping every round so drift hits all
    sides alike. ``plan``: a fixed count, or rounds until every side's speedup over the first (the baseline, in every
    round) is precise (``RoundPlan``): a side whose interval is within the precision leaves the rounds. Returns the
    warm-ups and each loader's epochs by round number, in ``loaders``' order. The caller owns (and closes) the
    loaders; ``before_epoch`` runs before every warm-up and timed epoch (cache eviction). ``calibrate`` is timed
    before and after every round; each epoch of the round records the mean of the two.

    With a ``watch`` (``contention.Watch``), the machine is read around the warm-ups and every round. A busy
    warm-up is followed by a wait for quiet (within the watch's budget); a disturbed round is measured again after
    one (at most ``plan.least`` times in all), so the rounds kept are quiet ones wherever quiet could be had; the
    returned ``Rounds`` says what each kept round saw."""
    plan = RoundPlan.fixed(plan) if isinstance(plan, int) else plan
    rounds = Rounds()
    waited0 = watch.waited_s if watch is not None else 0.0
    before = watch.reading() if watch is not None else None
    warm = warm_all(loaders, names, clock, tick, before_epoch)
    if watch is not None and before is not None:
        watch.follow(pid for loader in loaders for pid in loader.worker_pids)
        seen = watch.between(before, watch.reading())  # the warm-ups were the first look: no wait when quiet
        watch.wait_quiet(seen)
    runs: list[dict[int, EpochTiming]] = [{} for _ in loaders]
    active = list(range(len(loaders)))
    r = 0
    while plan.more(r, now()) and (r < plan.least or len(active) > 1):
        start = watch.reading() if watch is not None else None
        opened = calibrate() if calibrate is not None else None
        try:
            epochs = one_round(
                [loaders[i] for i in active], [names[i] for i in active], r, clock, tick, step, sleep, before_epoch
            )
        except NoProgressError as exc:  # a hang: the rounds finished before it are kept, the hung one is not
            if r == 0:
                raise
            rounds.stopped = exc
            break
        for i, epoch in zip(active, epochs, strict=True):
            runs[i][r] = epoch
        if calibrate is not None and opened is not None:
            mean = (opened + calibrate()) / 2
            for i in active:
                runs[i][r].calibration_s = mean
        if watch is not None and start is not None:
            seen = watch.between(start, watch.reading())
            stalled = tuple(said for loader in loaders for said in loader.stalls())
            if stalled:  # a worker of pdl's own that stopped: the round says nothing about the loader
                seen = replace(seen, stalled=stalled)
            # a stalled worker of pdl's own was replaced already: its round is redone whatever the quiet budget says
            own = bool(seen.stalled) and not (seen.crowded or seen.stolen)
            if seen.disturbed and rounds.redone < plan.least and (own or watch.wait_quiet(seen)):
                for i in active:
                    del runs[i][r]
                rounds.redone += 1
                rounds.redone_why = rounds.redone_why or seen.describe()
                continue
            if seen.disturbed:
                watch.refuse(seen)  # --if-busy fail: a disturbed round is never kept
            rounds.interference.append(seen)
        r += 1
        base = runs[0]
        active = [0] + [
            i for i in active[1:]
            if not plan.precise([base[k].wall_s / e.wall_s for k, e in runs[i].items() if e.wall_s > 0])
        ]  # fmt: skip
    rounds.waited_s = (watch.waited_s - waited0) if watch is not None else 0.0
    return warm, runs, rounds


def warm_all(
    loaders: Sequence[Loader],
    names: Sequence[str],
    clock: Clock = time.perf_counter,
    tick: Progress = lambda _msg: None,
    before_epoch: Callable[[], object] | None = None,
) -> list[WarmUp]:
    """Start every loader and run its untimed warm-up epoch, in ``loaders``' order. The loaders that fork start
    first, before any other has started threads (Ray's, SPDL's event loop, torchdata's readers, a thread pool): a
    child forked from a process with threads can hang."""
    early = {i: _started(loader, clock) for i, loader in enumerate(loaders) if loader.start_method == "fork"}
    warm = []
    for i, (name, loader) in enumerate(zip(names, loaders, strict=True)):
        if before_epoch is not None:
            before_epoch()
        warm.append(warm_up(loader, clock, early.get(i)))
        tick(f"warm-up {name}")
    return warm


def one_round(
    loaders: Sequence[Loader],
    names: Sequence[str],
    number: int,
    clock: Clock = time.perf_counter,
    tick: Progress = lambda _msg: None,
    step: Step | None = None,
    sleep: Sleep = time.sleep,
    before_epoch: Callable[[], object] | None = None,
) -> list[EpochTiming]:
    """Round ``number`` (0-based): one timed epoch of every loader, in ``loaders``' order when ``number`` is even
    and in reverse when odd, so drift hits all sides alike. Returns the epochs in ``loaders``' order."""
    order = range(len(loaders)) if number % 2 == 0 else reversed(range(len(loaders)))
    found: dict[int, EpochTiming] = {}
    for i in order:
        if before_epoch is not None:
            before_epoch()
        found[i] = time_epoch(loaders[i], clock, step, sleep)
        tick(f"round {number + 1} {names[i]}")
    return [found[i] for i in range(len(loaders))]


@dataclass(frozen=True)
class WarmUp:
    startup_s: float
    first_batch_s: float
    warmup_epoch_s: float
    digest: str = ""  # of the epoch's batches (indices and images, in order): equal digests, equal batches


def _started(loader: Loader, clock: Clock) -> float:
    """Start ``loader``; the seconds it took."""
    t0 = clock()
    loader.start()
    return clock() - t0


def warm_up(loader: Loader, clock: Clock, startup_s: float | None = None) -> WarmUp:
    """The untimed first epoch: start-up and first batch timed, every batch digested (the warm-up epoch's time
    includes the hashing, about 1 ms per 1 MB of images; no timed epoch does)."""
    t0 = clock()
    loader.start()  # a no-op if it was started already, in ``startup_s``
    t1 = clock()
    startup_s = t1 - t0 if startup_s is None else startup_s
    first = None
    digest = hashlib.blake2b(digest_size=16)
    for batch in loader:
        if first is None:
            first = clock() - t1
        images = batch.images
        for part in (batch.indices.astype("<i8"), images):
            digest.update(f"{part.dtype.str}{part.shape}".encode())
            digest.update(part.tobytes())
        del batch, images  # hand a shared-memory slot back before the next batch
    loader.settle()
    return WarmUp(startup_s=startup_s, first_batch_s=first or 0.0, warmup_epoch_s=clock() - t1, digest=digest.hexdigest())


def make_point(
    work: Workload,
    loader: Loader,
    warm: WarmUp,
    runs: Sequence[EpochTiming],
    base: Sequence[EpochTiming],
    base_digest: str = "",
) -> Point:
    spec = work.spec
    walls = [r.wall_s for r in runs]
    sp = speedup([b.wall_s for b in base], walls)
    med = median
    handoff = [h for r in runs for h in r.handoff_s]
    calibrated = all(r.calibration_s is not None for r in runs)
    return Point(
        pipeline=work.pipeline.name,
        loader=loader.name,
        workers=loader.num_workers,
        batch_size=spec.batch_size,
        prefetch=spec.prefetch,
        augment_in=spec.augment_in,
        images=runs[0].images,
        wall_s=tuple(walls),
        baseline_wall_s=tuple(b.wall_s for b in base),
        speedup=sp.median,
        speedup_min=sp.low,
        speedup_max=sp.high,
        speedup_rounds=sp.rounds,
        noisy=len(sp.rounds) > 1 and not within(sp.rounds, work.precision or PRECISION),
        images_per_s=runs[0].images / med(walls) if med(walls) > 0 else 0.0,
        startup_s=warm.startup_s,
        first_batch_s=warm.first_batch_s,
        warmup_epoch_s=warm.warmup_epoch_s,
        wait_share=med([r.wait_s / r.wall_s if r.wall_s > 0 else 0.0 for r in runs]),
        cpu_main_s=med([r.cpu_main_s for r in runs]),
        cpu_workers_s=med([r.cpu_workers_s for r in runs]),
        stages_s={s: med([r.stages[s] for r in runs]) for s in STAGES},
        handoff_ms=med(handoff) * 1e3 if handoff else None,
        copied_batches=sum(r.copied_batches for r in runs),
        worker_busy_s=tuple(med([r.worker_busy_s.get(w, 0.0) for r in runs]) for w in sorted(runs[0].worker_busy_s)),
        tail_idle_s=med([r.tail_idle_s for r in runs]) if runs[0].worker_busy_s else None,
        chunk_size=chunk_size(spec.batch_size, spec.num_workers, spec.chunk_size) if loader.splits_batches else None,
        skipped=tuple(sorted({(str(path), str(reason)) for r in runs for path, reason in r.skipped})),
        start_method=loader.start_method,
        cluster=cluster_from_info(loader.cluster_info()),  # Ray: nodes and CPUs
        **_stall_fields(work.step, spec.batch_size, runs),
        loader_version=getattr(loader, "version", None),
        same_batches=warm.digest == base_digest if warm.digest and base_digest else None,
        epoch_first_batch_s=med([r.waits_s[0] for r in runs]) if all(r.waits_s for r in runs) else None,
        reduce_decode=bool(getattr(work.dataset, "reduce_decode", False)),
        decoder=str(getattr(work.dataset, "decoder", DEFAULT_DECODER)),
        calibration_s=tuple(r.calibration_s or 0.0 for r in runs) if calibrated else (),
        # with a step the loop's step and the workers' loading overlap, so a speedup past the workers is real
        disturbed=work.step is None and loader.num_workers > 0 and impossible(sp.median, loader.num_workers, cpu_info().usable),
    )


def _stall_fields(step: Step | None, batch_size: int, runs: Sequence[EpochTiming]) -> dict[str, Any]:
    """With a step: the stall share (the wall time outside the step / the wall, median over rounds) and the
    per-batch wait's tail."""
    if step is None:
        return {}
    waits = [w for r in runs for w in r.waits_s]
    shares = tuple(stall_share(r.wall_s, r.step_s) for r in runs)
    return {
        "stall_share": median(shares),
        "stall_rounds": shares,
        "first_wait_share": median([wait_share(r.waits_s[:1], r.wall_s) for r in runs]),
        "wait_p50_ms": percentile(waits, 50) * 1e3,
        "wait_p90_ms": percentile(waits, 90) * 1e3,
        "wait_p99_ms": percentile(waits, 99) * 1e3,
        "step_ms": step.batch_ms(batch_size),
        "step_kind": step.kind,
        "step_s": median([r.step_s for r in runs]),
    }
