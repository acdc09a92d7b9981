"""`pdl tune`'s search: the fewest workers (and the prefetch) that keep a training step fed.

Worker counts go from few to many at one prefetch; the search stops at the first count whose stall is within
the target, or once one more worker no longer lowers the stall measurably: with the gate's evidence, at least
``MIN_ROUNDS`` rounds on each side and the per-round stalls lower by a rank test at ``stats.CLAIM_ALPHA`` (with 3
rounds a side: the two ranges apart), and by at least ``MIN_DROP``. Then, at the chosen count, a smaller prefetch
is tried when the target was met (less memory for the same stall), a larger one when it was not.

Measuring is injected (``Measure``), so a test scripts the stall figures and checks where the search stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ..errors import ConfigError
from ..loaders import BASELINE, loader_class
from ..stats.rounds import CLAIM_ALPHA, TARGET_STALL, evidence, median, parse_share, rounds_needed
from .experiment import Experiment
from .memory import peak_memory
from .outcomes import Tuned
from .point import Point
from .records import ResultSet
from .runner import Plan, start_results, watch_for
from .timing import Progress, Workload, measure

MIN_DROP = 0.01  # one percentage point of stall: less is not worth a worker
MIN_ROUNDS = rounds_needed(CLAIM_ALPHA)  # rounds a trial needs for its stall to be told apart from another's


@dataclass(frozen=True)
class Trial:
    """One configuration measured: its per-round stall shares, and the point they came from (None in tests)."""

    workers: int
    prefetch: int
    stall_rounds: tuple[float, ...]
    point: Point | None = None
    seconds: float = 0.0  # how long measuring it took

    @property
    def stall(self) -> float:
        return float(median(self.stall_rounds))


Measure = Callable[[int, int], Trial]  # (workers, prefetch) → the trial


@dataclass(frozen=True)
class Tuning:
    """The search's outcome: every trial in order, the chosen one, whether it met the target, and why it stopped."""

    trials: tuple[Trial, ...]
    chosen: Trial
    target: float
    reason: str
    seconds: float  # the whole search

    @property
    def reached(self) -> bool:
        return self.chosen.stall <= self.target


def lowered(before: Sequence[float], after: Sequence[float], min_drop: float = MIN_DROP) -> bool:
    """Whether ``after``'s rounds show a lower stall than ``before``'s: enough rounds, ranges apart, a real drop."""
    found = evidence(before, after, CLAIM_ALPHA)
    return found.significant and found.change < 0 and median(before) - median(after) >= min_drop


def search(
    measure: Measure,
    max_workers: int,
    target: float = TARGET_STALL,
    prefetch: int = 2,
    budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Tuning:
    """Search worker counts 1..max_workers at ``prefetch``, then a smaller or larger prefetch at the chosen count.

    The budget is checked before each trial: one that would probably end past it (it takes as long as the last
    one did) is not started.
    """
    start = clock()
    trials: list[Trial] = []

    def run(workers: int, pf: int) -> Trial:
        t0 = clock()
        trial = measure(workers, pf)
        trial = replace(trial, seconds=clock() - t0)
        trials.append(trial)
        return trial

    def affordable() -> bool:
        return budget_s is None or clock() - start + (trials[-1].seconds if trials else 0.0) <= budget_s

    chosen: Trial | None = None
    reason = ""
    for workers in range(1, max_workers + 1):
        previous = trials[-1] if trials else None
        trial = run(workers, prefetch)
        if trial.stall <= target:
            chosen, reason = trial, f"{workers} worker(s) met the target"
            break
        if previous is not None and not lowered(previous.stall_rounds, trial.stall_rounds):
            chosen = previous
            reason = f"{workers} workers did not lower the stall measurably below {previous.workers}'s"
            break
        if workers == max_workers:
            chosen, reason = trial, f"--max-workers {max_workers} reached"
            break
        if not affordable():
            chosen, reason = trial, "--budget-s reached"
            break
    assert chosen is not None  # max_workers >= 1: the loop ran and chose
    if affordable():
        if chosen.stall <= target and prefetch > 1:  # the same stall with fewer batches in flight: less memory
            fewer = run(chosen.workers, 1)
            if fewer.stall <= target:
                chosen = fewer
        elif chosen.stall > target:  # more batches in flight may ride out the slow ones
            more = run(chosen.workers, prefetch * 2)
            if lowered(chosen.stall_rounds, more.stall_rounds):
                chosen = more
    return Tuning(tuple(trials), chosen, target, reason, clock() - start)


def parse_target(text: str) -> float:
    """``--target-stall``: ``5%`` or ``0.05``, strictly between 0 and 100%."""
    return parse_share("--target-stall", text, "give a share between 0 and 100%, e.g. 5% or 0.05")


def check_tune(exp: Experiment, max_workers: int, budget_s: float | None) -> None:
    """Everything tune needs beyond a valid experiment: a step, bounds, enough rounds."""
    if exp.step is None:
        raise ConfigError("pdl tune needs a training step to keep fed: add --step-ms, e.g. --step-ms 200 or 0.5/img")
    check_search(max_workers, budget_s, exp.rounds)


def check_search(max_workers: int, budget_s: float | None, repeats: int) -> None:
    if max_workers < 1:
        raise ConfigError(f"--max-workers {max_workers}: give a whole number >= 1, e.g. 4")
    if budget_s is not None and not budget_s > 0:
        raise ConfigError(f"--budget-s {budget_s:g}: give a positive number of seconds, e.g. 150")
    if repeats < MIN_ROUNDS:
        raise ConfigError(
            f"--repeats {repeats}: tune needs at least {MIN_ROUNDS} rounds per trial to tell whether a worker "
            f"lowers the stall; pass --repeats {MIN_ROUNDS} or more"
        )


def loader_call(class_name: str, batch_size: int, workers: int, prefetch: int, prefetch_epochs: bool = True) -> str:
    """The call to use: 'ParallelLoader(ds, pipe, batch_size=64, num_workers=3, prefetch=2)'; with
    ``prefetch_epochs`` off (not the default), it says so."""
    across = "" if prefetch_epochs else ", prefetch_epochs=False"
    return f"{class_name}(ds, pipe, batch_size={batch_size}, num_workers={workers}, prefetch={prefetch}{across})"


def summary(tuning: Tuning, class_name: str, batch_size: int, prefetch_epochs: bool = True) -> Tuned:
    """What a results file keeps of the search (``ResultSet.tuned``) and the report reads back."""
    c = tuning.chosen
    memory = c.point.memory_peak_mb if c.point is not None else None
    return Tuned(
        call=loader_call(class_name, batch_size, c.workers, c.prefetch, prefetch_epochs),
        workers=c.workers,
        prefetch=c.prefetch,
        stall=c.stall,
        target=tuning.target,
        reached=tuning.reached,
        reason=tuning.reason,
        memory_peak_mb=max(memory) if memory else None,
        search_s=tuning.seconds,
        trials=len(tuning.trials),
    )


def tune(
    plan: Plan,
    max_workers: int,
    target: float,
    budget_s: float | None,
    on_save: Callable[[ResultSet], None],
    progress: Progress | None = None,
    status: Callable[[str], None] | None = None,
) -> tuple[ResultSet, Tuning]:
    """Measure ``plan``'s first pipeline and batch size with its first parallel loader, searching workers and
    prefetch; then the chosen configuration's peak memory (one untimed epoch in a fresh process) and, with
    ``exp.ceiling``, the chosen configuration again without the step, beside the sequential loop and the ceiling in
    the same rounds (a trial's stall cannot say whether the loader or the machine is the limit; this can). Every
    trial is saved as a point as soon as it is measured."""
    exp = plan.exp
    check_tune(exp, max_workers, budget_s)
    kind, pipeline, batch_size = exp.loaders[1], plan.pipelines[0], exp.batch_sizes[0]
    tick = progress or (lambda _msg: None)
    results = start_results(plan, "tune")
    watch = watch_for(exp, status)
    options = {**results.options, "max_workers": max_workers, "target_stall": target, "budget_s": budget_s}
    results = replace(results, options=options)

    def measure_one(workers: int, prefetch: int) -> Trial:
        nonlocal results
        spec = replace(exp.spec(batch_size, workers), prefetch=prefetch)
        work = Workload(plan.dataset, pipeline, spec, (kind,), exp.rounds, 0, exp.step, watch=watch)
        [point] = measure(work, progress=lambda msg: tick(f"{workers} workers, prefetch {prefetch}: {msg}"))
        results = replace(results, points=(*results.points, point))
        on_save(results)
        # only the rounds nothing else disturbed are evidence: a busy round's stall is the neighbour's
        quiet = tuple(s for s, ok in zip(point.stall_rounds, point.quiet(), strict=True) if ok)
        return Trial(workers, prefetch, quiet or point.stall_rounds, point)

    tuning = search(measure_one, max_workers, target, exp.prefetch, budget_s)
    at = next(i for i, t in enumerate(tuning.trials) if t is tuning.chosen)  # trial i is point i
    chosen = tuning.chosen
    assert chosen.point is not None
    spec = replace(exp.spec(batch_size, chosen.workers), prefetch=chosen.prefetch)
    memory = peak_memory(kind, plan.dataset, pipeline, spec, 1, lambda: tick("memory of the chosen loader"))
    peaks = tuple(float(m) for m in memory["memory_peak_mb"])
    chosen = replace(chosen, point=replace(chosen.point, memory_peak_mb=peaks, batch_mb=float(memory["batch_mb"])))
    trials = tuple(chosen if i == at else t for i, t in enumerate(tuning.trials))
    tuning = replace(tuning, trials=trials, chosen=chosen)
    points = tuple(chosen.point if i == at and chosen.point else p for i, p in enumerate(results.points))
    cls = loader_class(kind)
    # a loader that does not prefetch across epochs takes no such argument: nothing to say in its call
    told = summary(tuning, cls.__name__, batch_size, exp.prefetch_epochs or not cls.prefetches_epochs)
    if exp.ceiling:
        precision = exp.precision if exp.auto else None
        work = Workload(
            plan.dataset, pipeline, spec, (BASELINE, kind), exp.rounds, watch=watch, ceiling=True, precision=precision
        )
        _, unstepped = measure(work, progress=lambda msg: tick(f"ceiling at {chosen.workers} workers: {msg}"))
        told = replace(told, ceiling_check=unstepped)
    results = replace(results, points=points, tuned=told, complete=True)
    on_save(results)
    return results, tuning
