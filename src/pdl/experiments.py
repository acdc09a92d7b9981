"""The experiments: which points to measure for `run`, `sweep-workers` and `sweep-batch`, saved point by point."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._env import keep_freed_memory, limit_threads
from .dataset import ImageFolder
from .errors import ConfigError
from .loaders import LOADERS, LoaderSpec
from .loaders.process import default_start_method
from .measure import Progress, Workload, measure
from .pipeline import Pipeline, load_pipeline
from .results import ResultSet
from .system import system_info


@dataclass(frozen=True)
class Experiment:
    """Everything one command measures, validated before any work starts."""

    kind: str  # run | sweep-workers | sweep-batch
    inputs: Path
    pipelines: tuple[str, ...]
    workers: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    loaders: tuple[str, ...] = ("sequential", "process")
    prefetch: int = 2
    repeats: int = 3
    limit: int | None = None
    seed: int = 0
    shuffle: bool = True
    augment_in: str = "workers"
    on_error: str = "fail"
    timeout: float | None = None
    start_method: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    memory_epochs: int = 0  # per loader, after the timed rounds: peak memory sampled

    def __post_init__(self) -> None:
        for name in ("prefetch", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.memory_epochs < 0:
            raise ConfigError(f"memory_epochs must be 0 or more, got {self.memory_epochs}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        if not self.workers or min(self.workers) < 1:
            raise ConfigError(f"--workers must be at least 1, got {','.join(map(str, self.workers)) or 'nothing'}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {','.join(map(str, self.batch_sizes)) or 'nothing'}")
        if self.augment_in not in ("workers", "main"):
            raise ConfigError(f"--augment-in '{self.augment_in}': choose 'workers' or 'main'")
        if self.on_error not in ("fail", "skip"):
            raise ConfigError(f"--on-error '{self.on_error}': choose 'fail' or 'skip'")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout must be more than 0 seconds, got {self.timeout}")
        unknown = [name for name in self.loaders if name not in LOADERS]
        if unknown:
            raise ConfigError(f"--loaders: unknown loader '{unknown[0]}'; choose from {', '.join(LOADERS)}")
        if "sequential" not in self.loaders or len(self.loaders) < 2:
            raise ConfigError(
                f"--loaders {','.join(self.loaders)}: name the sequential baseline and at least one other loader, "
                "e.g. sequential,process"
            )

    @property
    def points(self) -> int:
        return len(self.pipelines) * len(self.workers) * len(self.batch_sizes)

    def epochs_per_point(self) -> int:
        return len(self.loaders) * (self.repeats + 1 + self.memory_epochs)


@dataclass(frozen=True)
class Plan:
    """An experiment with its inputs resolved and checked: everything that can fail on bad input has."""

    exp: Experiment
    dataset: ImageFolder
    pipelines: tuple[Pipeline, ...]


def prepare(exp: Experiment) -> Plan:
    pipelines = tuple(load_pipeline(name) for name in exp.pipelines)
    return Plan(exp, ImageFolder(exp.inputs, limit=exp.limit), pipelines)


def execute(
    plan: Plan,
    on_save: Callable[[ResultSet], None],
    progress: Progress | None = None,
) -> ResultSet:
    """Measure every point of the plan and call ``on_save`` after each, so an interruption keeps what was done."""
    exp, dataset = plan.exp, plan.dataset
    thread_settings = limit_threads() | keep_freed_memory()  # the baseline runs under the workers' settings
    start_method = exp.start_method or default_start_method()
    options = {k: v for k, v in asdict(exp).items() if k != "extra"}
    options.update(inputs=str(exp.inputs), images=len(dataset), thread_settings=thread_settings)
    results = ResultSet(exp.kind, options, system_info(start_method))
    order = ["sequential", *[name for name in exp.loaders if name != "sequential"]]
    extra = {**exp.extra, **({"start_method": exp.start_method} if exp.start_method else {})}
    for pipeline in plan.pipelines:
        for batch_size in exp.batch_sizes:
            for workers in exp.workers:
                spec = LoaderSpec(
                    batch_size,
                    exp.shuffle,
                    exp.seed,
                    False,
                    workers,
                    exp.prefetch,
                    exp.augment_in,  # type: ignore[arg-type]
                    exp.on_error,
                    exp.timeout,  # type: ignore[arg-type]
                )
                t0 = time.perf_counter()
                points = measure(
                    Workload(dataset, pipeline, spec, tuple(order), exp.repeats, extra, exp.memory_epochs), progress=progress
                )
                for p in points:
                    p["measured_s"] = time.perf_counter() - t0
                results.points.extend(points if exp.kind == "run" else points[1:])
                on_save(results)
    results.complete = True
    on_save(results)
    return results
