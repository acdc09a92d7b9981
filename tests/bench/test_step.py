"""The simulated training step, the stall share and its tail, and the answer in words: exact numbers from a fake
clock and fake loaders; bad --step-ms values through the CLI; each real loader's recorded wait with a slow
consumer (an invariant, never a speed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from pdl.bench import timing as measure_mod
from pdl.bench.experiment import Experiment
from pdl.bench.point import Point
from pdl.bench.step import Step, parse_step, spin, take_step
from pdl.bench.timing import Workload, measure, time_epoch
from pdl.cli import app
from pdl.errors import ConfigError
from pdl.loaders import LoaderSpec, make_loader
from pdl.loaders.base import Loader
from pdl.loaders.batching import Batch, LoaderStats
from pdl.report.render import grids
from pdl.report.runs import run_grid
from pdl.report.stall import Answer, answer, answer_line, cores_needed, cpu_ms_per_image
from pdl.report.sweeps import sweep_workers_grids
from pdl.stats.rounds import percentile, stall_share, wait_share

from ..factories import point, results

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()


# -- the step -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("40", "gpu", Step(40.0)),
        ("40ms", "cpu", Step(40.0, kind="cpu")),
        (" 2.5 ", "gpu", Step(2.5)),
        ("0.5/img", "gpu", Step(0.5, per_image=True)),
        ("0.5 ms/image", "cpu", Step(0.5, per_image=True, kind="cpu")),
    ],
)
def test_step_ms_parses_per_batch_and_per_image(text: str, kind: str, expected: Step) -> None:
    assert parse_step(text, kind) == expected
    assert parse_step(None) is None


@pytest.mark.parametrize("text", ["-1", "0", "abc", "0.5/xyz", "", "40/img/img", "nan"])
def test_bad_step_ms_is_one_line_naming_the_option_value_and_an_example(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_step(text)
    message = str(err.value)
    assert message.startswith(f"--step-ms '{text}':") and "e.g. 40" in message and "0.5/img" in message
    assert "\n" not in message


def test_step_seconds_scale_with_the_batch_only_per_image() -> None:
    assert Step(40.0).seconds(64) == 0.04 and Step(40.0).seconds(3) == 0.04
    assert Step(0.5, per_image=True).seconds(64) == 0.032 and Step(0.5, per_image=True).seconds(10) == 0.005
    assert Step(0.5, per_image=True).batch_ms(64) == 32.0 and Step(40.0).batch_ms(64) == 40.0
    assert str(Step(0.5, per_image=True, kind="cpu")) == "0.5 ms/img cpu" and str(Step(40.0)) == "40 ms gpu"


def test_a_gpu_step_sleeps_and_a_cpu_step_spins_on_the_clock() -> None:
    slept: list[float] = []
    take_step(Step(40.0), 8, clock=lambda: 0.0, sleep=slept.append)
    assert slept == [0.04]

    ticks = iter([0.0, 0.01, 0.015, 0.02, 0.03])  # the clock's successive readings
    calls: list[float] = []

    def clock() -> float:
        calls.append(next(ticks))
        return calls[-1]

    take_step(Step(5.0, per_image=True, kind="cpu"), 4, clock=clock, sleep=lambda s: pytest.fail("a cpu step must not sleep"))
    assert calls == [0.0, 0.01, 0.015, 0.02]  # 4 images × 5 ms: spins until the clock reads 20 ms on
    spin(0.0, lambda: 7.0)  # no time: one reading to start, one to stop


def test_experiment_checks_step_ms_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--step-ms '-1'"):
        Experiment(kind="run", inputs=tmp_path, pipelines=("light",), workers=(1,), batch_sizes=(8,), step_ms="-1")
    exp = Experiment(kind="run", inputs=tmp_path, pipelines=("light",), workers=(1,), batch_sizes=(8,), step_ms="0.5/img")
    assert exp.step == Step(0.5, per_image=True) and exp.options()["step_ms"] == "0.5/img"


# -- stall maths ----------------------------------------------------------------------------------------------
def test_percentiles_interpolate_between_ranks_as_numpy_does() -> None:
    values = [0.004, 0.0, 0.1, 0.002, 0.003]
    for q in (0, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-15)
    assert percentile([0.0, 1.0], 50) == 0.5 and percentile([], 90) == 0.0


def test_stall_share_is_the_wall_outside_the_step_and_the_wait_share_the_waits() -> None:
    assert stall_share(2.0, 1.6) == pytest.approx(0.2) and stall_share(1.0, 1.2) == 0.0 and stall_share(0.0, 0.0) == 0.0
    assert wait_share([0.1, 0.2, 0.1], 2.0) == pytest.approx(0.2) and wait_share([], 0.0) == 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class ScriptedLoader(Loader):
    """Each batch takes the consumer its scripted wait (the fake clock moves while it is asked for)."""

    def __init__(self, name: str, epochs: list[list[float]], clock: Clock, workers: int = 2) -> None:
        self.name, self.num_workers, self.epochs, self.clock = name, workers, list(epochs), clock
        self.stats, self.epoch = LoaderStats(), 0

    def start(self) -> None:
        pass

    def __iter__(self) -> Iterator[Batch]:
        waits = self.epochs.pop(0)
        for wait in waits:
            self.clock.now += wait
            yield Batch(np.zeros((4, 1, 1, 3), np.uint8), np.zeros(4), np.arange(4))


def test_time_epoch_times_each_wait_and_the_step_with_the_injected_clock() -> None:
    clock = Clock()
    loader = ScriptedLoader("process", [[0.3, 0.0, 0.05, 0.0]], clock)
    timing = time_epoch(loader, clock, Step(100.0), clock.sleep)
    assert timing.waits_s == pytest.approx([0.3, 0.0, 0.05, 0.0])
    assert timing.step_s == pytest.approx(0.4) and timing.wall_s == pytest.approx(0.75) and timing.images == 16
    assert stall_share(timing.wall_s, timing.step_s) == pytest.approx(0.35 / 0.75)  # no settle: the waits


def test_the_stall_counts_the_epochs_end_waiting_for_work_started_ahead() -> None:
    # a prefetch window as long as the epoch: every batch of the next epoch is made while this one settles, so the
    # consumer never waits, yet the loader feeds only 0.4 s of step in 0.7 s (tune read 0.5% where this is 43%)
    clock = Clock()
    loader = ScriptedLoader("process", [[0.0, 0.0, 0.0, 0.0]], clock)
    loader.settle = lambda: setattr(clock, "now", clock.now + 0.3)  # type: ignore[method-assign]
    timing = time_epoch(loader, clock, Step(100.0), clock.sleep)
    assert sum(timing.waits_s) == 0.0 and timing.wall_s == pytest.approx(0.7)
    assert stall_share(timing.wall_s, timing.step_s) == pytest.approx(0.3 / 0.7)


def test_measure_gives_stall_share_per_round_percentiles_and_the_ideal(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline

    clock = Clock()
    script = {
        "sequential": [[0.1] * 4, [0.1] * 4, [0.1] * 4],  # warm-up, then two rounds: every batch loads in the loop
        "process": [[0.2, 0.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0], [0.3, 0.0, 0.0, 0.1]],
    }
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: ScriptedLoader(kind, script[kind], clock))
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=4), ("sequential", "process"), 2,
                    step=Step(100.0))  # fmt: skip
    seq, par = measure(work, clock=clock, sleep=clock.sleep)
    assert seq.wall_s == pytest.approx((0.8, 0.8)) and seq.stall_share == pytest.approx(0.5)  # its load share
    assert par.wall_s == pytest.approx((0.5, 0.8)) and par.stall_rounds == pytest.approx((0.2, 0.5))
    assert par.stall_share == pytest.approx(0.35)
    assert par.first_wait_share == pytest.approx((0.1 / 0.5 + 0.3 / 0.8) / 2)  # each round's first batch
    assert par.epoch_first_batch_s == pytest.approx(0.2) and par.first_batch_s == pytest.approx(0.2)  # timed: (0.1+0.3)/2
    assert seq.epoch_first_batch_s == pytest.approx(0.1)
    waits = [0.1, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.1]  # round order, every batch
    assert par.wait_p50_ms == pytest.approx(float(np.percentile(waits, 50)) * 1e3)
    assert par.wait_p90_ms == pytest.approx(float(np.percentile(waits, 90)) * 1e3)
    assert par.wait_p99_ms == pytest.approx(float(np.percentile(waits, 99)) * 1e3)
    assert (par.step_ms, par.step_kind, par.step_s) == (100.0, "gpu", pytest.approx(0.4))
    assert par.ideal_images_per_s == 40.0  # batch 4 per 100 ms
    assert par.images_per_s == pytest.approx(16 / 0.65)


def test_without_a_step_the_stall_fields_stay_empty(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline

    clock = Clock()
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: ScriptedLoader(kind, [[0.1], [0.1]], clock))
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=4), ("sequential", "process"), 1)
    for p in measure(work, clock=clock, sleep=clock.sleep):
        assert p.stall_share is None and p.stall_rounds == () and p.step_ms is None and p.ideal_images_per_s is None


def stepped(workers: int, stall: float, **fields: Any) -> Point:
    given = {"step_kind": "gpu", **fields}
    return point("process", workers, [8.0] * 3, [4.0] * 3, pipeline="heavy", batch_size=64, images=640,
                 stall_share=stall, stall_rounds=(stall,) * 3, step_ms=40.0, step_s=0.4,
                 wait_p50_ms=1.0, wait_p90_ms=2.0, wait_p99_ms=30.0, **given)  # fmt: skip


def test_cores_needed_is_a_batchs_cpu_per_step_plus_the_main_process_for_a_cpu_step() -> None:
    assert cores_needed(3.2, 64, 40.0) == pytest.approx(5.12)
    assert cores_needed(3.2, 64, 40.0, "cpu") == pytest.approx(6.12)
    p = stepped(2, 0.3, cpu_main_s=0.048, cpu_workers_s=2.0)
    assert cpu_ms_per_image(p) == pytest.approx(3.2)
    spinning = stepped(2, 0.3, cpu_main_s=0.448, cpu_workers_s=2.0, step_kind="cpu")  # 0.4 s of it was the spin
    assert cpu_ms_per_image(spinning) == pytest.approx(3.2)


def test_answer_names_the_fewest_workers_within_the_target_and_their_memory() -> None:
    pts = [stepped(1, 0.40), stepped(2, 0.04, memory_peak_mb=(500.0, 512.4)), stepped(4, 0.01)]
    a = answer(pts, usable=8)
    assert a is not None and (a.workers, a.stall, a.memory_mb) == (2, 0.04, 512.4)
    assert answer_line(a) == "heavy · process: fewest workers with stall ≤ 5%: 2 (peak memory 512 MB); its stall 4.0%"
    assert answer([point("process", 1, [1.0], [1.0])], usable=2) is None  # no step: no answer


def test_answer_without_enough_workers_estimates_the_cores_from_cpu_per_image() -> None:
    pts = [stepped(w, s, cpu_main_s=0.048, cpu_workers_s=2.0) for w, s in ((1, 0.6), (2, 0.35))]
    a = answer(pts, usable=2)
    assert a == Answer("heavy", "process", 0.05, None, 0.35, None, pytest.approx(3.2), 64, 40.0, pytest.approx(5.12), 2)
    assert answer_line(a) == (
        "heavy · process: no worker count measured reached stall ≤ 5% (lowest 35.0%); heavy needs ≈ 3.2 ms CPU per "
        "image; one step per 40 ms at batch 64 needs ≈ 5.1 busy cores; this machine has 2 usable"
    )


def test_tables_show_the_stall_columns_and_the_answer_only_with_a_step() -> None:
    plain = results("run", [point("sequential", 0, [8.0] * 3, [8.0] * 3), point("process", 2, [8.0] * 3, [4.0] * 3)])
    assert "stall" not in run_grid(plain).columns
    seq = point("sequential", 0, [8.0] * 3, [8.0] * 3, batch_size=64, images=640, stall_share=0.5, step_ms=40.0,
                step_kind="gpu", wait_p50_ms=50.0, wait_p90_ms=50.0, wait_p99_ms=50.0)  # fmt: skip
    run = results("run", [seq, stepped(2, 0.3, cpu_main_s=0.048, cpu_workers_s=2.0)], options={"step_ms": "40"})
    grid = run_grid(run)
    assert "step 40 ms gpu" in grid.title
    assert grid.columns[-4:] == ["stall", "1st batch", "of ideal images/s", "wait p50/p90/p99 ms"]
    assert grid.rows[1][-4:] == ["30.0%", "–", "160 of 1600 (10%)", "1.0/2.0/30.0"]
    assert any(
        n.startswith("process (2 workers): ≈ 3.2 ms CPU per image") and "measured: 2 busy core(s)" in n for n in grid.notes
    )
    sweep = results("sweep-workers", [stepped(1, 0.4), stepped(2, 0.04)], options={"step_ms": "40"})
    speed, rate, stall = sweep_workers_grids(sweep)
    assert stall.rows == [["heavy", "40.0% (30)", "4.0% (30)"]]
    assert "heavy · process: fewest workers with stall ≤ 5%: 2; its stall 4.0%" in stall.notes
    assert len(grids(results("sweep-workers", [stepped(1, 0.4)]))) == 3


# -- the CLI --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["run", "sweep-workers", "sweep-batch"])
@pytest.mark.parametrize("value", ["-1", "0.5/xyz", "abc"])
def test_bad_step_ms_on_the_cli_is_one_line_and_exit_2(images: Path, tmp_path: Path, command: str, value: str) -> None:
    res = runner.invoke(app, [command, "--inputs", str(images), "--step-ms", value, "--results", str(tmp_path)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: --step-ms '{value}':") and "e.g. 40" in lines[0]
    assert "Traceback" not in res.output and not list(tmp_path.glob("*.json"))


def test_run_with_a_step_records_and_shows_the_stall(images: Path, tmp_path: Path) -> None:
    args = ["run", "--inputs", str(images), "--pipeline", "light", "--workers", "1", "--limit", "8", "--batch-size", "4",
            "--repeats", "1", "--quiet", "--results", str(tmp_path), "--step-ms", "1/img"]  # fmt: skip
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "stall" in res.stdout and "step 1 ms/img gpu" in res.stdout
    [path] = tmp_path.glob("*.json")
    data = json.loads(path.read_text())
    seq, par = data["points"]
    assert data["options"]["step_ms"] == "1/img" and data["options"]["step_kind"] == "gpu"
    assert par["step_ms"] == 4.0 and par["step_kind"] == "gpu" and len(par["stall_rounds"]) == 1
    assert 0.0 <= par["stall_share"] <= 1.0 and par["wait_p50_ms"] <= par["wait_p90_ms"] <= par["wait_p99_ms"]
    header = next(tmp_path.glob("*.csv")).read_text().splitlines()[0].split(",")
    assert {"stall_share", "stall_round", "ideal_images_per_s", "wait_p99_ms"} <= set(header)


# -- each real loader records the consumer's wait, not the consumer's step ------------------------------------
@pytest.mark.parametrize("kind", ["sequential", "thread", "process", "process-pickle", "torch"])
def test_each_loader_records_only_the_wait_inside_the_consumers_own(images: Path, kind: str) -> None:
    """With a slow consumer (a 30 ms step per batch), every batch's recorded wait lies within the span the
    consumer spent asking for it; the step's time is never counted as waiting."""
    from pdl import ImageFolder, load_pipeline
    from pdl.loaders.forking import forking

    if kind == "torch":
        pytest.importorskip("torch")
    pipeline = load_pipeline("light")
    spec = LoaderSpec(batch_size=5, num_workers=0 if kind == "sequential" else 2)
    with forking("fork", pipeline), make_loader(kind, ImageFolder(images), pipeline, spec) as loader:
        timing = time_epoch(loader, step=Step(30.0))
        recorded = list(loader.stats.wait_s)
    assert len(recorded) == len(timing.waits_s) == 5
    assert all(0.0 <= r <= c for r, c in zip(recorded, timing.waits_s, strict=True))
    assert sum(timing.waits_s) <= timing.wall_s - timing.step_s
    assert timing.step_s >= 5 * 0.03
