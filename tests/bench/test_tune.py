"""`pdl tune`: the search against scripted stall figures (where it stops, which it chooses, why), its options'
errors through the CLI, and one small real run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdl.bench.files import load
from pdl.bench.tune import Trial, loader_call, lowered, parse_target, search
from pdl.cli import app
from pdl.errors import ConfigError
from pdl.report.render import grids

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()


class Script:
    """A measuring function: (workers, prefetch) → its scripted per-round stalls; logs what was asked, and moves
    a fake clock by ``seconds`` per trial."""

    def __init__(self, stalls: dict[tuple[int, int], list[float]], seconds: float = 10.0) -> None:
        self.stalls, self.seconds, self.asked, self.now = stalls, seconds, [], 0.0

    def __call__(self, workers: int, prefetch: int) -> Trial:
        self.asked.append((workers, prefetch))
        self.now += self.seconds
        return Trial(workers, prefetch, tuple(self.stalls[workers, prefetch]))

    def clock(self) -> float:
        return self.now


def test_it_stops_at_the_first_count_within_the_target_then_tries_a_smaller_prefetch() -> None:
    script = Script({(1, 2): [0.6, 0.62, 0.61], (2, 2): [0.3, 0.31, 0.29], (3, 2): [0.04, 0.05, 0.03],
                     (3, 1): [0.08, 0.07, 0.09]})  # fmt: skip
    tuning = search(script, max_workers=8, target=0.05, clock=script.clock)
    assert script.asked == [(1, 2), (2, 2), (3, 2), (3, 1)]
    assert (tuning.chosen.workers, tuning.chosen.prefetch, tuning.chosen.stall) == (3, 2, 0.04)
    assert tuning.reached and tuning.reason == "3 worker(s) met the target" and tuning.seconds == 40.0
    assert [t.seconds for t in tuning.trials] == [10.0] * 4


def test_a_smaller_prefetch_that_still_meets_the_target_is_chosen() -> None:
    script = Script({(1, 2): [0.3] * 3, (2, 2): [0.02] * 3, (2, 1): [0.04, 0.03, 0.05]})
    tuning = search(script, max_workers=4, target=0.05, clock=script.clock)
    assert script.asked == [(1, 2), (2, 2), (2, 1)] and (tuning.chosen.workers, tuning.chosen.prefetch) == (2, 1)


def test_it_stops_once_a_worker_no_longer_lowers_the_stall_measurably_and_keeps_the_fewer() -> None:
    script = Script({
        (1, 2): [0.60, 0.62, 0.61],
        (2, 2): [0.40, 0.42, 0.41],  # apart from 1's: lowered
        (3, 2): [0.38, 0.43, 0.36],  # overlaps 2's: not measurably lower
        (2, 4): [0.30, 0.31, 0.32],  # the target is not met: a larger prefetch is tried, and helps
    })  # fmt: skip
    tuning = search(script, max_workers=8, target=0.05, clock=script.clock)
    assert script.asked == [(1, 2), (2, 2), (3, 2), (2, 4)]
    assert (tuning.chosen.workers, tuning.chosen.prefetch) == (2, 4) and not tuning.reached
    assert tuning.reason == "3 workers did not lower the stall measurably below 2's"


def test_a_larger_prefetch_that_does_not_help_is_not_chosen() -> None:
    script = Script({(1, 2): [0.5] * 3, (2, 2): [0.5, 0.49, 0.51], (1, 4): [0.49, 0.5, 0.48]})
    tuning = search(script, max_workers=8, target=0.05, clock=script.clock)
    assert script.asked == [(1, 2), (2, 2), (1, 4)] and (tuning.chosen.workers, tuning.chosen.prefetch) == (1, 2)


def test_it_stops_at_max_workers() -> None:
    script = Script({(1, 2): [0.6] * 3, (2, 2): [0.4] * 3, (2, 4): [0.4] * 3})
    tuning = search(script, max_workers=2, target=0.05, clock=script.clock)
    assert script.asked == [(1, 2), (2, 2), (2, 4)]
    assert tuning.chosen.workers == 2 and tuning.reason == "--max-workers 2 reached"


def test_it_starts_no_trial_that_would_end_past_the_budget() -> None:
    script = Script({(w, 2): [0.9 - 0.1 * w] * 3 for w in range(1, 9)}, seconds=10.0)
    tuning = search(script, max_workers=8, target=0.05, budget_s=25.0, clock=script.clock)
    assert script.asked == [(1, 2), (2, 2)]  # after 20 s, a third 10 s trial would end at 30 s
    assert tuning.chosen.workers == 2 and tuning.reason == "--budget-s reached"


def test_lowered_wants_the_gates_rounds_apart_and_a_real_drop() -> None:
    assert lowered([0.5, 0.5, 0.5], [0.4, 0.4, 0.4])
    assert not lowered([0.5, 0.5], [0.1, 0.1])  # too few rounds to tell
    assert not lowered([0.5, 0.4, 0.6], [0.45, 0.3, 0.35])  # ranges overlap
    assert not lowered([0.1, 0.1, 0.1], [0.095, 0.095, 0.095])  # apart, but less than a point of stall


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("0.05", 0.05), (" 12.5% ", 0.125)])
def test_target_stall_takes_a_percentage_or_a_share(text: str, value: float) -> None:
    assert parse_target(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["150%", "0", "1", "abc", "-5%"])
def test_a_bad_target_stall_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=f"--target-stall '{text}': give a share between 0 and 100%, e.g. 5%"):
        parse_target(text)


def test_the_call_to_use() -> None:
    assert loader_call("ParallelLoader", 64, 3, 2) == "ParallelLoader(ds, pipe, batch_size=64, num_workers=3, prefetch=2)"


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--step-ms", "20", "--target-stall", "150%"], "error: --target-stall '150%':"),
        (["--step-ms", "-1"], "error: --step-ms '-1':"),
        (["--step-ms", "0.5/xyz"], "error: --step-ms '0.5/xyz':"),
        ([], "error: pdl tune needs a training step to keep fed: add --step-ms"),
        (["--step-ms", "20", "--repeats", "2"], "error: --repeats 2: tune needs at least 3 rounds"),
        (["--step-ms", "20", "--max-workers", "0"], "error: --max-workers 0:"),
        (["--step-ms", "20", "--budget-s", "0"], "error: --budget-s 0:"),
    ],
)
def test_bad_tune_options_are_one_line_and_exit_2(images: Path, tmp_path: Path, args: list[str], start: str) -> None:
    res = runner.invoke(app, ["tune", "--inputs", str(images), "--results", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(start), lines
    assert not list(tmp_path.glob("*.json"))


def test_tune_end_to_end_measures_recommends_and_saves(images: Path, tmp_path: Path) -> None:
    args = ["tune", "--inputs", str(images), "--limit", "32", "--pipeline", "light", "--batch-size", "8",
            "--step-ms", "20", "--max-workers", "2", "--repeats", "3", "--results", str(tmp_path), "--quiet"]  # fmt: skip
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    [path] = tmp_path.glob("*-tune.json")
    data = json.loads(path.read_text())
    told = data["tuned"]
    assert data["kind"] == "tune" and data["complete"] is True and data["options"]["target_stall"] == 0.05
    assert told["call"] == f"ParallelLoader(ds, pipe, batch_size=8, num_workers={told['workers']}, prefetch={told['prefetch']})"
    assert told["memory_peak_mb"] > 0 and told["trials"] == len(data["points"]) >= 2
    assert all(p["loader"] == "process" and len(p["stall_rounds"]) == 3 and p["step_ms"] == 20.0 for p in data["points"])
    chosen = [p for p in data["points"] if p["memory_peak_mb"]]
    assert [(p["workers"], p["prefetch"]) for p in chosen] == [(told["workers"], told["prefetch"])]
    assert f"use: {told['call']}" in res.stdout and "search:" in res.stdout and "stopped:" in res.stdout
    check = told["ceiling_check"]  # the chosen call again, no step, beside the sequential loop and the ceiling
    assert check["loader"] == "process" and check["workers"] == told["workers"] and check["step_ms"] is None
    assert check["ceiling"] > 0 and len(check["ceiling_rounds"]) == 3 and check["speedup"] > 0
    assert "without the step, beside the ceiling" in res.stdout
    [grid] = grids(load(path))  # `pdl report` shows the same
    assert f"use: {told['call']}" in grid.notes
    assert any(n.startswith("without the step, beside the ceiling") for n in grid.notes)
