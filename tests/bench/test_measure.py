"""Statistics and the measuring protocol, against a fake clock and fake loaders: exact numbers, no timing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from pdl.bench import timing as measure_mod
from pdl.bench.timing import Workload, measure
from pdl.errors import NoProgressError
from pdl.loaders import LoaderSpec
from pdl.loaders.base import Loader
from pdl.loaders.batching import Batch, LoaderStats, StageTimes
from pdl.machine.cpu import cpu_info
from pdl.stats.rounds import ideal_speedup, speedup


def test_speedup_is_the_median_of_per_round_ratios() -> None:
    sp = speedup([10.0, 12.0, 9.0], [5.0, 5.0, 6.0])  # ratios 2.0, 2.4, 1.5
    assert sp.rounds == (2.0, 2.4, 1.5)
    assert (sp.median, sp.low, sp.high) == (2.0, 1.5, 2.4)
    assert sp.spread == pytest.approx(0.45)
    assert sp.noisy()


def test_agreeing_rounds_are_not_noisy() -> None:
    sp = speedup([10.0, 10.0, 10.0], [5.0, 5.1, 4.9])
    assert sp.median == pytest.approx(2.0) and not sp.noisy()
    assert speedup([4.0], [2.0]).spread == 0.0


def test_speedup_needs_matching_rounds() -> None:
    with pytest.raises(ValueError, match="same number"):
        speedup([1.0, 2.0], [1.0])


def test_ideal_is_bounded_by_usable_cores() -> None:
    assert [ideal_speedup(w, 2) for w in (1, 2, 4, 8)] == [1.0, 2.0, 2.0, 2.0]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeLoader(Loader):
    """Each epoch advances the fake clock by its next scripted duration; logs the order of epochs."""

    def __init__(self, name: str, durations: list[float], clock: FakeClock, log: list[str]) -> None:
        self.name, self.num_workers = name, 0 if name == "sequential" else 2
        self.durations, self.clock, self.log = list(durations), clock, log
        self.stats = LoaderStats()
        self.epoch = 0

    def start(self) -> None:
        self.clock.now += 0.25

    def __iter__(self) -> Iterator[Batch]:
        self.stats = LoaderStats(stages=[StageTimes(read=0.1, decode=0.2, augment=0.3, collate=0.0)], wait_s=[0.5])
        self.log.append(self.name)
        total = self.durations.pop(0)
        for part in (0.5, 0.5):
            self.clock.now += total * part
            yield Batch(np.zeros((2, 1, 1, 3), np.uint8), np.zeros(2), np.arange(2))


def test_measure_warms_up_then_interleaves_with_flipped_order(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline

    clock, log = FakeClock(), []
    script = {"sequential": [9.0, 10.0, 12.0, 11.0], "process": [9.0, 5.0, 5.0, 6.0]}  # first: warm-up
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: FakeLoader(kind, script[kind], clock, log))
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "process"), 3)
    seq, par = measure(work, clock=clock)
    assert log == ["sequential", "process", "sequential", "process", "process", "sequential", "sequential", "process"]
    assert seq.wall_s == (10.0, 12.0, 11.0) and par.wall_s == (5.0, 5.0, 6.0)
    assert par.speedup_rounds == (2.0, 2.4, 11.0 / 6.0)
    assert par.speedup == 2.0 and par.speedup_min == 11.0 / 6.0 and par.speedup_max == 2.4
    assert par.noisy is True  # its 95% interval (1.47–2.90×) is wider than ±3%
    assert seq.speedup == 1.0 and seq.noisy is False
    assert par.startup_s == 0.25 and par.first_batch_s == 4.5 and par.warmup_epoch_s == 9.0
    assert par.images == 4 and par.images_per_s == 4 / 5.0
    assert par.wait_share == pytest.approx(0.5 / 5.0)
    assert par.stages_s == {"read": 0.1, "decode": 0.2, "augment": 0.3, "collate": 0.0}
    assert par.start_method is None and par.cluster is None and par.memory_peak_mb is None and par.batch_mb is None


def test_memory_epochs_fill_the_points_memory_fields(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline

    clock, log = FakeClock(), []
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: FakeLoader(kind, [1.0, 1.0], clock, log))
    sampled = []

    def fake_peak_memory(kind, dataset, pipeline, spec, epochs, tick):
        sampled.append((kind, epochs))
        return {"memory_peak_mb": [100, 101.5] if kind == "sequential" else [120, 121], "batch_mb": 0.5}

    monkeypatch.setattr(measure_mod, "peak_memory", fake_peak_memory)
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "process"), 1,
                    memory_epochs=2)  # fmt: skip
    seq, par = measure(work, clock=clock)
    assert sampled == [("sequential", 2), ("process", 2)]
    assert seq.memory_peak_mb == (100.0, 101.5) and par.memory_peak_mb == (120.0, 121.0) and par.batch_mb == 0.5
    assert par.wall_s == (1.0,)  # the memory epochs are not timed


def test_every_round_is_calibrated_before_and_after(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline

    clock, log = FakeClock(), []
    script = {"sequential": [9.0, 10.0, 12.0, 11.0], "process": [9.0, 5.0, 5.0, 6.0]}
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: FakeLoader(kind, script[kind], clock, log))
    seconds = iter([0.010, 0.012, 0.020, 0.020, 0.011, 0.013])  # round 1 opens and closes, round 2, round 3
    monkeypatch.setattr(measure_mod, "calibration_s", lambda: next(seconds))
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "process"), 3)
    seq, par = measure(work, clock=clock)
    assert seq.calibration_s == par.calibration_s == pytest.approx((0.011, 0.020, 0.012))
    assert par.rates() == (4 / 5.0, 4 / 5.0, 4 / 6.0) and par.baseline_rates() == (0.4, 4 / 12.0, 4 / 11.0)


def test_a_speedup_the_cores_cannot_give_is_flagged_as_a_disturbed_baseline(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline
    from pdl.stats.rounds import impossible

    assert impossible(2.25, 2, 2) and not impossible(2.15, 2, 2) and not impossible(2.25, 4, 4) and impossible(1.2, 1, 8)
    clock, log = FakeClock(), []
    script = {"sequential": [9.0, 10.0, 12.0, 11.0], "process": [9.0, 4.0, 4.5, 4.4]}  # 2.5×, 2.67×, 2.5× with 2 workers
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: FakeLoader(kind, script[kind], clock, log))
    monkeypatch.setattr(measure_mod, "cpu_info", lambda: replace(cpu_info(), usable=2))
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "process"), 3)
    seq, par = measure(work, clock=clock)
    assert par.disturbed and not seq.disturbed
    from pdl.report.runs import run_grid

    from ..factories import results

    grid = run_grid(results("run", [seq, par]))
    assert grid.rows[1][5].endswith("‼")
    assert any(
        n.startswith("‼ disturbed baseline: process (2 workers, 2.50×) above what the usable cores allow") for n in grid.notes
    )
    # with a step (a GPU's, the loop waits), loading overlaps it: past the workers' count is no sign of disturbance
    from pdl.bench.step import Step

    clock, log = FakeClock(), []
    stepped = replace(work, step=Step(1.0))
    seq, par = measure(stepped, clock=clock, sleep=lambda _s: None)
    assert par.speedup > 2.2 and not par.disturbed


class FakeWatch:
    """What the machine did, scripted: one ``Interference`` per look (the warm-ups, then each round tried)."""

    def __init__(self, script: list, fail: bool = False) -> None:
        self.script, self.fail, self.waited_s, self.waits, self.followed = list(script), fail, 0.0, 0, None

    def reading(self) -> object:
        return object()

    def follow(self, pids) -> None:
        self.followed = list(pids)

    def between(self, a, b):
        return self.script.pop(0)

    def wait_quiet(self, seen) -> bool:
        if seen.disturbed:
            self.waits += 1
            self.waited_s += 1.5
        return True

    def refuse(self, seen) -> None:
        from pdl.machine.contention import MachineBusy

        if self.fail:
            raise MachineBusy("busy")


def _load(others: float):
    from pdl.machine.contention import Interference

    return Interference(others, 0.0, None, None, 0.1, 2, 2, ("9 neighbour 1.00",) if others > 0.5 else ())


def test_a_disturbed_round_is_measured_again_and_only_quiet_rounds_are_kept(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline

    clock, log = FakeClock(), []
    # warm-up, round 1, round 2 (disturbed: a neighbour took a core), round 2 again, round 3
    script = {"sequential": [9.0, 10.0, 10.0, 12.0, 11.0], "process": [9.0, 5.0, 10.0, 5.0, 6.0]}
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: FakeLoader(kind, script[kind], clock, log))
    watch = FakeWatch([_load(0.0), _load(0.0), _load(1.0), _load(0.0), _load(0.01)])
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "process"), 3,
                    watch=watch)  # type: ignore[arg-type]  # fmt: skip
    seq, par = measure(work, clock=clock)
    assert par.wall_s == (5.0, 5.0, 6.0) and seq.wall_s == (10.0, 12.0, 11.0)  # the disturbed round's walls are gone
    assert par.redone == seq.redone == 1 and par.waited_s == 1.5 and watch.waits == 1
    assert par.redone_why == "other processes used 1.00 of 2 cores (9 neighbour 1.00)"
    assert [i.others for i in par.interference] == [0.0, 0.0, 0.01] and par.quiet() == (True, True, True)
    assert watch.script == []


def test_redoing_is_bounded_and_a_round_still_disturbed_is_kept_marked(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline
    from pdl.machine.contention import MachineBusy

    clock, log = FakeClock(), []
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: FakeLoader(kind, [1.0] * 9, clock, log))
    watch = FakeWatch([_load(0.0)] + [_load(1.0)] * 4)  # every round disturbed; 2 rounds: at most 2 redone
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "process"), 2,
                    watch=watch)  # type: ignore[arg-type]  # fmt: skip
    seq, par = measure(work, clock=clock)
    assert par.redone == 2 and par.rounds == 2 and par.quiet() == (False, False) and len(par.busy_rounds()) == 2
    clock, log = FakeClock(), []
    failing = replace(work, watch=FakeWatch([_load(0.0)] + [_load(1.0)] * 4, fail=True))
    with pytest.raises(MachineBusy):
        measure(failing, clock=clock)


class NoQuiet(FakeWatch):
    """A machine that never becomes quiet within the budget."""

    def wait_quiet(self, seen) -> bool:
        super().wait_quiet(seen)
        return False


def test_a_round_a_stalled_worker_touched_is_redone_without_waiting_for_quiet(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline
    from pdl.machine.contention import Interference

    clock, log = FakeClock(), []
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: FakeLoader(kind, [1.0] * 9, clock, log))
    stalled = Interference(0.0, 0.0, None, None, 0.1, 2, 2, stalled=("worker 0 (pid 9) is stopped (T)",))
    watch = NoQuiet([_load(0.0), _load(0.0), stalled, _load(0.0), _load(0.0)])  # the budget for quiet is spent
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "process"), 3,
                    watch=watch)  # type: ignore[arg-type]  # fmt: skip
    seq, par = measure(work, clock=clock)
    assert par.redone == 1 and par.rounds == 3 and par.quiet() == (True, True, True) and watch.waits == 0
    assert par.redone_why == "worker 0 (pid 9) is stopped (T)"


class HangingLoader(FakeLoader):
    """A FakeLoader whose epoch raises the watchdog's error where its script says None."""

    def __iter__(self) -> Iterator[Batch]:
        if self.durations and self.durations[0] is None:
            self.durations.pop(0)
            raise NoProgressError(f"{self.name}: no chunk finished for 60 s while waiting for batch 0 of epoch 3")
        yield from super().__iter__()


def test_auto_rounds_stop_for_a_side_once_its_interval_is_precise(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline

    clock, log = FakeClock(), []
    steady = [1.0] * 30  # process: 2.00× every round: precise after the fewest (3) rounds
    script = {"sequential": [2.0] * 30, "process": steady, "thread": [1.0, 1.0, 1.05, 0.95] + [1.0] * 26}
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: FakeLoader(kind, script[kind], clock, log))
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "process", "thread"),
                    3, precision=0.03)  # fmt: skip
    seq, par, thread = measure(work, clock=clock)
    assert par.rounds == 3 and thread.rounds > 3  # the noisy side alone got more rounds
    assert seq.rounds == thread.rounds  # the baseline is in every round
    assert thread.baseline_wall_s == seq.wall_s and par.baseline_wall_s == seq.wall_s[:3]
    assert not par.noisy and not thread.noisy and log.count("process") == 1 + 3
    none_left = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "thread"),
                         3, precision=0.03, deadline=0.0)  # fmt: skip
    script["thread"] = [1.0, 1.0, 1.3, 0.8, 1.1] * 6
    _, late = measure(none_left, clock=clock)
    assert late.rounds == 3 and late.noisy  # the budget had ended: the fewest rounds, said uncertain


def test_a_hang_after_some_rounds_keeps_their_points_on_the_error(monkeypatch: pytest.MonkeyPatch, images) -> None:
    from pdl import ImageFolder, load_pipeline

    clock, log = FakeClock(), []
    script = {"sequential": [2.0, 2.0, 2.0, 2.0], "process": [1.0, 1.0, 1.0, None]}  # hangs in the third round
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: HangingLoader(kind, script[kind], clock, log))
    work = Workload(ImageFolder(images), load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "process"), 5)
    with pytest.raises(NoProgressError, match="process: no chunk finished for 60 s") as raised:
        measure(work, clock=clock)
    seq, par = raised.value.points  # type: ignore[attr-defined]
    assert par.wall_s == (1.0, 1.0) and seq.wall_s == (2.0, 2.0)  # the two finished rounds, not the hung one
    script = {"sequential": [2.0, 2.0], "process": [1.0, None]}  # hangs in the first: nothing to keep
    with pytest.raises(NoProgressError) as raised:
        measure(work, clock=clock)
    assert not hasattr(raised.value, "points")
