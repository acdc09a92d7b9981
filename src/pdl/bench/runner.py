"""The experiments: which points to measure for `run`, `sweep-workers` and `sweep-batch`, saved point by point."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from .._env import keep_freed_memory, limit_threads
from ..data.folder import ImageFolder
from ..data.pipeline import Pipeline, load_pipeline
from ..machine.contention import Watch
from ..machine.host import default_start_method, git_source, system_info
from .calibrate import CALIBRATION
from .experiment import Experiment
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


def execute(
    plan: Plan,
    on_save: Callable[[ResultSet], None],
    progress: Progress | None = None,
    status: Callable[[str], None] | None = None,
) -> ResultSet:
    """Measure every point of the plan and call ``on_save`` after each, so an interruption keeps what was done.
    ``status`` hears why measuring waits (a busy machine)."""
    exp, dataset = plan.exp, plan.dataset
    results = start_results(plan)
    watch = watch_for(exp, status)
    for pipeline in plan.pipelines:
        for batch_size in exp.batch_sizes:
            for workers in exp.workers:
                spec = exp.spec(batch_size, workers)
                work = Workload(
                    dataset, pipeline, spec, exp.loaders, exp.repeats, exp.memory_epochs, exp.step, exp.cache, watch, exp.ceiling
                )
                points = measure(work, progress=progress)
                results = replace(results, points=results.points + tuple(points if exp.kind == "run" else points[1:]))
                on_save(results)
    results = replace(results, complete=True)
    on_save(results)
    return results


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
