"""experiments.execute with a fake measure: which points, with which loader arguments, saved after each."""

from __future__ import annotations

from pathlib import Path

import pytest

import pdl.bench.runner as experiments
from pdl.bench.experiment import Experiment
from pdl.bench.records import Point, ResultSet
from pdl.bench.timing import Workload
from pdl.errors import ConfigError

from ..factories import point


def fake_measure(calls: list[Workload]):
    def measure(work: Workload, progress=None) -> list[Point]:
        calls.append(work)
        spec = work.spec
        return [point(name, spec.num_workers, [2.0], [1.0], pipeline=work.pipeline.name, batch_size=spec.batch_size)
                for name in work.loaders]  # fmt: skip

    return measure


@pytest.mark.parametrize("kind", ["run", "sweep-workers"])
def test_every_point_is_measured_with_its_spec_and_saved_after_each(images: Path, monkeypatch, kind) -> None:
    calls: list[Workload] = []
    monkeypatch.setattr(experiments, "measure", fake_measure(calls))
    exp = Experiment(kind, images, ("light", "heavy"), (1, 2), (4,), ("sequential", "process", "thread"),
                     prefetch=3, chunk_size=2, repeats=2, seed=7, start_method="spawn")  # fmt: skip
    saved: list[ResultSet] = []
    results = experiments.execute(experiments.prepare(exp), saved.append)
    assert [(w.pipeline.name, w.spec.num_workers) for w in calls] == [("light", 1), ("light", 2), ("heavy", 1), ("heavy", 2)]
    spec = calls[0].spec
    assert (spec.batch_size, spec.prefetch, spec.chunk_size, spec.seed, spec.start_method) == (4, 3, 2, 7, "spawn")
    assert all(w.loaders == ("sequential", "process", "thread") and w.repeats == 2 for w in calls)
    per_point = 3 if kind == "run" else 2  # a sweep keeps the baseline inside each point's speedups only
    assert [len(s.points) for s in saved] == [per_point, 2 * per_point, 3 * per_point, 4 * per_point, 4 * per_point]
    assert [s.complete for s in saved] == [False, False, False, False, True] and results == saved[-1]
    assert results.options["chunk_size"] == 2 and results.options["images"] == 21


def test_an_experiment_is_checked_once_with_the_cli_option_names(images: Path) -> None:
    with pytest.raises(ConfigError, match=r"--chunk-size must be a whole number >= 0\. Found: -1"):
        Experiment("run", images, ("light",), (2,), (4,), chunk_size=-1)
    with pytest.raises(ConfigError, match="--batch-size must be a whole number >= 1. Found: 0"):
        Experiment("sweep-batch", images, ("light",), (2,), (10, 0, 20))  # every value, not only the last
    with pytest.raises(ConfigError, match="name the sequential baseline first"):
        Experiment("run", images, ("light",), (2,), (4,), ("process",))
