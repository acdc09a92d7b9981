"""The experiments: which points to measure for `run`, `sweep-workers` and `sweep-batch`, saved point by point."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .._env import keep_freed_memory, limit_threads
from ..data.folder import ImageFolder
from ..data.pipeline import Pipeline, load_pipeline
from ..errors import NoProgressError
from ..loaders.batching import make_batch
from ..loaders.spec import LoaderSpec
from ..machine.contention import Watch
from ..machine.host import default_start_method, git_source, system_info
from .calibrate import CALIBRATION
from .experiment import Experiment
from .point import Point
from .records import ResultSet, machine_from_info, source_from_info
from .timing import Progress, Workload, measure


@dataclass(frozen=True)
class Plan:
    """An experiment with its inputs resolved and checked: everything that can fail on bad input has."""

    exp: Experiment
    dataset: ImageFolder  # of a folder, or of a list file (.csv/.tsv/.txt)
    pipelines: tuple[Pipeline, ...]


def prepare(exp: Experiment, make_inputs: Callable[[], object] | None = None) -> Plan:
    """Load the pipelines, then (``make_inputs``: the default images generated if missing) read the inputs: every
    pipeline is checked before any image is made or read."""
    pipelines = tuple(load_pipeline(name) for name in exp.pipelines)
    if make_inputs is not None:
        make_inputs()
    dataset = ImageFolder(exp.inputs, limit=exp.limit, reduce_decode=exp.reduce_decode, decoder=exp.decoder)
    return Plan(exp, dataset, pipelines)


DEFAULT_MAX_TIME = {"run": 60.0, "sweep-workers": 180.0, "sweep-batch": 180.0}  # --repeats auto's budget, seconds
PROBE_IMAGES = 8  # images each pipeline is timed on before measuring: how the budget is shared between them
Points = Callable[[int, int, int], None]  # (points measured, of how many, how many of them uncertain)


def execute(
    plan: Plan,
    on_save: Callable[[ResultSet], None],
    progress: Progress | None = None,
    status: Callable[[str], None] | None = None,
    on_points: Points | None = None,
    now: Callable[[], float] = time.monotonic,
) -> ResultSet:
    """Measure every point of the plan and call ``on_save`` after each group, so an interruption keeps what was
    done. The worker counts of one pipeline and batch size are one group: one sequential loop, every count's
    loaders beside it, in the same rounds. With --repeats auto, each group's rounds end by its share of the
    budget (--max-time; shared by the pipelines' cost, timed up front): the uncertain points of a group get the
    time its certain ones did not need. ``status`` hears why measuring waits (a busy machine)."""
    exp, dataset = plan.exp, plan.dataset
    results = start_results(plan)
    watch = watch_for(exp, status)
    budget = budget_of(exp)
    started = now()
    groups = [(pipeline, b) for pipeline in plan.pipelines for b in exp.batch_sizes]
    costs = [probe_cost(dataset, pipeline, exp.spec(b, 1)) for pipeline, b in groups] if exp.auto and budget else []
    for g, (pipeline, batch_size) in enumerate(groups):
        deadline = None
        if costs and budget is not None:
            at = now()
            deadline = at + max(0.0, budget - (at - started)) * costs[g] / sum(costs[g:])
        works = [
            Workload(
                dataset, pipeline, exp.spec(batch_size, workers), exp.loaders, exp.rounds, exp.memory_epochs, exp.step,
                exp.cache, watch, exp.ceiling, exp.precision if exp.auto else None, deadline,
            )
            for workers in exp.workers
        ]  # fmt: skip
        try:
            points = measure(works, progress=progress)
        except NoProgressError as exc:  # a loader hung: the rounds finished before it are saved, then the error
            done = getattr(exc, "points", [])
            if done:
                on_save(replace(results, points=results.points + tuple(_kept(exp, done))))
            raise
        results = replace(results, points=results.points + tuple(_kept(exp, points)))
        on_save(results)
        if on_points is not None:
            measured = [p for p in results.points if p.workers > 0]
            on_points(len(measured), exp.points * len(exp.loaders[1:]), sum(p.noisy for p in measured))
    results = replace(results, complete=True)
    on_save(results)
    return results


def _kept(exp: Experiment, points: list[Point]) -> list[Point]:
    """What a results file keeps of a group's points: a run its baseline too, a sweep only the others."""
    return points if exp.kind == "run" else points[1:]


def budget_of(exp: Experiment) -> float | None:
    """The command's budget in seconds: --max-time, else its default (None: none)."""
    return exp.max_time if exp.max_time is not None else DEFAULT_MAX_TIME.get(exp.kind)


def probe_cost(dataset: ImageFolder, pipeline: Pipeline, spec: LoaderSpec) -> float:
    """Seconds the sequential loop takes for the first few images: a pipeline's cost relative to the others."""
    indices = np.arange(min(PROBE_IMAGES, len(dataset)))
    t0 = time.perf_counter()
    make_batch(dataset, pipeline, indices, 0, spec)
    return max(time.perf_counter() - t0, 1e-6)


def watch_for(exp: Experiment, status: Callable[[str], None] | None = None) -> Watch:
    """The command's one ``Watch``: its wait budget (--wait-quiet) spans all its points."""
    return Watch(exp.wait_quiet, exp.if_busy == "fail", say=status or (lambda _m: None))


def start_results(plan: Plan, kind: str | None = None) -> ResultSet:
    """An empty result set for ``plan``: options, machine, command; thread settings applied for the workers."""
    exp = plan.exp
    thread_settings = limit_threads() | keep_freed_memory()  # the baseline runs under the workers' settings
    start_method = exp.start_method or default_start_method()
    options = exp.options()
    options.update(inputs=str(exp.inputs), images=len(plan.dataset), thread_settings=thread_settings)
    machine = machine_from_info(system_info(start_method))
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    source = source_from_info(git_source())
    return ResultSet(kind or exp.kind, options, machine, (), tuple(sys.argv), created, source=source, calibration=CALIBRATION)
