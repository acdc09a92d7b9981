"""A busy machine is not a regression: rounds another process disturbed never feed a verdict, a history's change
or a sweep's sentence; what was busy is named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from typer.testing import CliRunner

from pdl.bench.files import ResultWriter
from pdl.bench.records import ResultSet
from pdl.cli import app
from pdl.machine.contention import Interference
from pdl.report.gate import compare
from pdl.report.grid import noise_notes
from pdl.report.history import Run, history
from pdl.report.sweeps import quiet_line, sweep_workers_grids
from pdl.report.verdicts import history_grid

from ..factories import MACHINE, point, sweep_workers

QUIET = Interference(0.01, 0.0, None, None, 0.02, 4, 4)
BUSY = Interference(0.98 * 4 / 2, 0.0, None, None, 0.6, 4, 4, ("1234 python3 0.98",))


def loaded(rs: ResultSet, pattern: list[Interference]) -> ResultSet:
    """``rs`` with each point's rounds reading ``pattern`` (the machine in each round)."""
    return replace(rs, points=tuple(replace(p, interference=tuple(pattern)) for p in rs.points))


def _save(folder: Path, rs: ResultSet) -> Path:
    writer = ResultWriter(folder, rs.kind)
    writer.save(rs)
    return writer.path


def test_a_neighbours_load_in_every_round_is_inconclusive_naming_it_never_regressed(tmp_path: Path) -> None:
    base = loaded(sweep_workers(rounds=7, jitter=0.02, calibration_s=0.01), [QUIET] * 7)
    # the neighbour halves the parallel loaders: every round slower, with evidence, were the rounds believed
    cur = loaded(sweep_workers(rounds=7, jitter=0.02, calibration_s=0.01, factor=0.5), [BUSY] * 7)
    gate = compare(cur, base)
    assert {v.status for v in gate.verdicts} == {"inconclusive"} and gate.exit_code == 3
    reason = next(v.reason for v in gate.verdicts if v.key[1] == "process")
    assert reason.startswith(
        "the machine was busy in the current results: other processes used up to 1.96 of 4 cores in 7 of 7 rounds "
        "(1234 python3); 5 quiet rounds a side are needed"
    )
    res = CliRunner().invoke(app, ["report", str(_save(tmp_path / "c", cur)), "--baseline", str(_save(tmp_path / "b", base))])
    assert res.exit_code == 3 and "REGRESSED" not in res.stdout and "1234 python3" in res.stdout


def test_busy_rounds_are_left_out_and_the_quiet_ones_still_judge() -> None:
    base = loaded(sweep_workers(rounds=7, jitter=0.02, calibration_s=0.01), [QUIET] * 7)
    same = loaded(sweep_workers(rounds=7, jitter=0.02, calibration_s=0.01), [QUIET] * 5 + [BUSY] * 2)
    slow_rounds = list(sweep_workers(rounds=7, jitter=0.02, calibration_s=0.01, factor=0.5).points)
    # the two busy rounds were slowed by the neighbour; the five quiet ones are as fast as the baseline
    mixed = tuple(
        replace(p, wall_s=p.wall_s[:5] + s.wall_s[5:], speedup_rounds=p.speedup_rounds[:5] + s.speedup_rounds[5:])
        for p, s in zip(same.points, slow_rounds, strict=True)
    )
    gate = compare(replace(same, points=mixed), base)
    assert gate.exit_code == 0, [v for v in gate.verdicts if v.status != "ok"]
    assert all(v.reason.endswith("(2 busy round(s) left out)") for v in gate.verdicts if v.key[1] == "process")
    # a real regression in the quiet rounds is still caught
    slower = loaded(sweep_workers(rounds=7, jitter=0.02, calibration_s=0.01, cost=1.4), [QUIET] * 5 + [BUSY] * 2)
    assert compare(slower, base).exit_code == 1


def test_a_busy_run_in_a_history_is_drawn_marked_and_never_a_change() -> None:
    runs = []
    for i, (cost, load) in enumerate([(1.0, QUIET), (1.0, QUIET), (1.4, BUSY), (1.0, QUIET)]):
        rs = loaded(sweep_workers(rounds=5, jitter=0.02, calibration_s=0.01, cost=cost), [load] * 5)
        runs.append(Run(Path(f"r{i}.json"), replace(rs, created=f"2026-11-0{i + 1}T10:00:00")))
    h = history(runs, 0.10)
    assert not any(t.changes for t in h.trends)
    light = next(t for t in h.trends if t.key[:3] == ("light", "process", 2))
    assert light.busy[2] is not None and light.busy[2].startswith("other processes used up to 1.96 of 4 cores in 5 of 5")
    assert light.values[2] is None or light.values[2] > 0
    grid = history_grid(h)
    assert any(n.startswith("⊘ run 3 (") and "drawn, never judged" in n for n in grid.notes)
    assert "⊘" in grid.rows[2][2]


def test_a_sweep_draws_no_conclusion_from_a_point_busy_in_every_round() -> None:
    rs = sweep_workers(rounds=3)
    busy4 = tuple(
        replace(p, interference=(BUSY,) * 3) if p.workers == 4 else replace(p, interference=(QUIET,) * 3) for p in rs.points
    )
    light = {p.workers: p for p in busy4 if p.pipeline == "light"}
    line = quiet_line(light, 4)
    assert "4 workers" not in line.split("(")[0] and line.endswith("(4 workers: busy machine in every round, left out)")
    assert quiet_line({w: replace(p, interference=(BUSY,) * 3) for w, p in light.items()}, 4).startswith("no conclusion")
    speed, _ = sweep_workers_grids(replace(rs, points=busy4))
    assert any(
        n.startswith("⊘ busy machine: other processes used up to 1.96 of 4 cores in 3 of 3 rounds (1234 python3)")
        for n in speed.notes
    )


def test_noisy_says_whether_anything_else_was_seen() -> None:
    noisy = point("process", 2, [2.0, 2.0, 2.0], [1.0, 1.3, 0.8], interference=(QUIET,) * 3)
    [note] = [n for n in noise_notes([noisy]) if n.startswith("~")]
    assert (
        "no other load seen inside this machine (others at most 0.01 cores, steal at most 0.00, no throttling): the host, or the work itself"
        in note
    )
    seen = replace(noisy, interference=(QUIET, Interference(0.3, 0.05, None, None, 0.1, 4, 4), QUIET))
    [note] = [n for n in noise_notes([seen]) if n.startswith("~")]
    assert "interference seen in 1 of 3 rounds (others up to 0.30 cores, steal up to 0.05 cores)" in note


def test_oversubscribed_only_where_the_workers_exceed_the_cores_or_the_main_process_is_measured_competing() -> None:
    from pdl.report.sweeps import oversubscribed

    waiting = point("process", 4, [8.0] * 3, [2.0] * 3, cpu_main_s=0.1)
    busy_main = replace(waiting, cpu_main_s=1.0)
    assert oversubscribed(4, [waiting], 4) == "" and oversubscribed(2, [waiting], 4) == ""
    assert oversubscribed(8, [waiting], 4) == "the workers alone exceed the 4 usable cores"
    assert oversubscribed(4, [busy_main], 4) == (
        "they fill the 4 usable cores and the main process used 0.50 of a core beside them (measured)"
    )
    assert MACHINE.cpu.usable == 4


def test_a_history_names_the_run_where_the_augmentation_library_changed() -> None:
    runs = []
    for i, dist in enumerate(["albumentations", "albumentations", "albumentationsx"]):
        rs = sweep_workers(rounds=5, jitter=0.02, calibration_s=0.01)
        versions = {**MACHINE.versions, "albumentations_dist": dist, "albumentations": "2.0.8" if i < 2 else "2.5.1"}
        rs = replace(rs, machine=replace(MACHINE, versions=versions), created=f"2026-11-0{i + 1}T10:00:00")
        runs.append(Run(Path(f"r{i}.json"), rs))
    notes = history_grid(history(runs, 0.10)).notes
    assert any(
        n.startswith("run 3 (")
        and n.endswith("albumentations_dist albumentations → albumentationsx, albumentations 2.0.8 → 2.5.1")
        for n in notes
    ), notes
