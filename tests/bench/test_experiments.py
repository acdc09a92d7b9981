"""experiments.execute with a fake measure: which points, with which loader arguments, saved after each."""

from __future__ import annotations

from pathlib import Path

import pytest

import pdl.bench.runner as experiments
from pdl.bench.experiment import Experiment
from pdl.bench.point import Point
from pdl.bench.records import ResultSet
from pdl.bench.timing import Workload
from pdl.errors import ConfigError

from ..factories import point


def fake_measure(calls: list[list[Workload]]):
    def measure(works: list[Workload], progress=None) -> list[Point]:
        calls.append(list(works))
        first = works[0]
        made = [point(first.loaders[0], 0, [2.0], [2.0], pipeline=first.pipeline.name, batch_size=first.spec.batch_size)]
        for work in works:
            spec = work.spec
            made += [point(name, spec.num_workers, [2.0], [1.0], pipeline=work.pipeline.name, batch_size=spec.batch_size)
                     for name in work.loaders[1:]]  # fmt: skip
        return made

    return measure


@pytest.mark.parametrize("kind", ["run", "sweep-workers"])
def test_every_point_is_measured_with_its_spec_and_saved_after_each_group(images: Path, monkeypatch, kind) -> None:
    calls: list[list[Workload]] = []
    monkeypatch.setattr(experiments, "measure", fake_measure(calls))
    exp = Experiment(kind, images, ("light", "heavy"), (1, 2), (4,), ("sequential", "process", "thread"),
                     prefetch=3, chunk_size=2, repeats=2, seed=7, start_method="spawn")  # fmt: skip
    saved: list[ResultSet] = []
    results = experiments.execute(experiments.prepare(exp), saved.append)
    # the worker counts of a pipeline are one group: one sequential loop, every count's loaders beside it
    assert [[(w.pipeline.name, w.spec.num_workers) for w in group] for group in calls] == [
        [("light", 1), ("light", 2)],
        [("heavy", 1), ("heavy", 2)],
    ]
    spec = calls[0][0].spec
    assert (spec.batch_size, spec.prefetch, spec.chunk_size, spec.seed, spec.start_method) == (4, 3, 2, 7, "spawn")
    works = [w for group in calls for w in group]
    assert all(w.loaders == ("sequential", "process", "thread") and w.repeats == 2 and w.precision is None for w in works)
    per_group = 5 if kind == "run" else 4  # a sweep keeps the baseline inside each point's speedups only
    assert [len(s.points) for s in saved] == [per_group, 2 * per_group, 2 * per_group]
    assert [s.complete for s in saved] == [False, False, True] and results == saved[-1]
    assert results.options["chunk_size"] == 2 and results.options["images"] == 21


def test_auto_rounds_share_the_budget_by_each_pipelines_cost(images: Path, monkeypatch) -> None:
    calls: list[list[Workload]] = []
    monkeypatch.setattr(experiments, "measure", fake_measure(calls))
    monkeypatch.setattr(experiments, "probe_cost", lambda dataset, pipeline, spec: {"light": 1.0, "heavy": 3.0}[pipeline.name])
    clock = iter([100.0, 100.0, 130.0])
    exp = Experiment("sweep-workers", images, ("light", "heavy"), (1, 2), (4,), max_time=120.0, precision=0.02)
    assert exp.auto
    experiments.execute(experiments.prepare(exp), lambda _r: None, now=lambda: next(clock))
    light, heavy = calls
    assert {w.precision for w in light + heavy} == {0.02} and {w.repeats for w in light} == {3}
    assert {w.deadline for w in light} == {100.0 + 120.0 * 1 / 4}  # a quarter of the budget: a quarter of the cost
    assert {w.deadline for w in heavy} == {130.0 + 90.0}  # what is left (light took 30 s) goes to heavy


def test_an_experiment_is_checked_once_with_the_cli_option_names(images: Path) -> None:
    with pytest.raises(ConfigError, match=r"--chunk-size must be a whole number >= 0\. Found: -1"):
        Experiment("run", images, ("light",), (2,), (4,), chunk_size=-1)
    with pytest.raises(ConfigError, match="--batch-size must be a whole number >= 1. Found: 0"):
        Experiment("sweep-batch", images, ("light",), (2,), (10, 0, 20))  # every value, not only the last
    with pytest.raises(ConfigError, match="name the sequential baseline first"):
        Experiment("run", images, ("light",), (2,), (4,), ("process",))


def test_a_hang_saves_the_groups_finished_rounds_then_raises(images: Path, monkeypatch) -> None:
    from pdl.errors import NoProgressError

    calls: list[list[Workload]] = []
    good = fake_measure(calls)

    def hangs_on_heavy(works, progress=None):
        made = good(works)
        if works[0].pipeline.name == "heavy":
            error = NoProgressError("process: no chunk finished for 60 s while waiting for batch 0 of epoch 4")
            error.points = made  # type: ignore[attr-defined]
            raise error
        return made

    monkeypatch.setattr(experiments, "measure", hangs_on_heavy)
    exp = Experiment("sweep-workers", images, ("light", "heavy"), (2,), (4,), repeats=3)
    saved: list[ResultSet] = []
    with pytest.raises(NoProgressError):
        experiments.execute(experiments.prepare(exp), saved.append)
    assert [[p.pipeline for p in s.points] for s in saved] == [["light"], ["light", "heavy"]]
    assert not saved[-1].complete and NoProgressError.exit_code == 6
