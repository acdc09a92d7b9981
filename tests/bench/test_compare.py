"""`pdl compare`'s engine: the pairs' order, the loop that drops and redoes pairs, the verdicts and the budget, with
fake sides and an injected clock; then the side server's protocol in-process, with real loaders."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest

from pdl.bench.compare import Budget, Pairs, SideError, Sides, Status, Thresholds, judge, order_of
from pdl.bench.compared import Pair, SideInfo
from pdl.bench.side import PROTOCOL, serve
from pdl.machine.contention import Interference

QUIET = Interference(0.0, 0.0, None, None, 0.0, 2, 2)
BUSY = Interference(1.0, 0.0, None, None, 0.5, 2, 2, top=("4242 yes 1.00",))


def info(label: str, loaders: tuple[str, ...] = ("sequential", "process")) -> SideInfo:
    return SideInfo(label, "/py", "0.2", "albumentations 2.0.8", {}, loaders, "light", 64)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeProc:
    def poll(self) -> None:
        return None


class FakeSide:
    """Answers rounds with walls from ``walls(round)``; fails the rounds listed in ``fail``; each round takes 1 s."""

    def __init__(self, label: str, clock: Clock, walls: Any, fail: tuple[int, ...] = ()) -> None:
        self.label, self.clock, self.walls, self.fail = label, clock, walls, fail
        self.proc, self.pids, self.slowest_s, self.failures, self.warnings = FakeProc(), (1,), 0.0, 0, []
        self.asked: list[int] = []

    def ask(self, request: dict[str, Any], timeout_s: float, doing: str) -> dict[str, Any]:
        number = request["number"]
        self.asked.append(number)
        self.clock.t += 1.0
        if number in self.fail:
            raise SideError(f"{self.label} side: worker 0 died")
        return {"wall_s": list(self.walls(number)), "images": [64, 64], "pids": [1], "stalled": []}

    def round_timeout(self) -> float:
        return 60.0


class FakeWatch:
    """Reads the machine as busy during the pairs listed in ``busy`` (by the number of readings taken)."""

    def __init__(self, busy: tuple[int, ...] = ()) -> None:
        self.busy, self.pairs, self.waited = busy, 0, 0

    def reading(self) -> int:
        return 0

    def between(self, a: int, b: int) -> Interference:
        self.pairs += 1
        return BUSY if self.pairs - 1 in self.busy else QUIET

    def follow(self, pids: Any) -> None:
        pass

    def wait_quiet(self, seen: Interference) -> bool:
        self.waited += 1
        return True


DEFAULT_BUDGET = Budget(60, 20)


def loop(base_walls: Any, head_walls: Any, budget: Budget = DEFAULT_BUDGET, watch: Any = None, **fake: Any) -> tuple[Pairs, Any]:
    clock = Clock()
    base = FakeSide("base", clock, base_walls, fake.get("base_fail", ()))
    head = FakeSide("head", clock, head_walls, fake.get("head_fail", ()))
    sides = Sides(base, head, {"base": info("base"), "head": info("head")})  # type: ignore[arg-type]
    pairs = Pairs(sides, Thresholds(0.05, 0.10), budget, watch, clock)
    statuses: list[Status] = []
    saved: list[Any] = []
    result = pairs.run(0.0, statuses.append, saved.append)
    return pairs, (result, statuses, saved, base, head)


def jitter(seed: int, sequential: float, process: float, spread: float = 0.01) -> Any:
    rng = random.Random(seed)
    return lambda _n: (sequential * (1 + rng.uniform(-spread, spread)), process * (1 + rng.uniform(-spread, spread)))


def test_each_two_kept_pairs_put_each_side_first_once_and_the_seed_decides_which() -> None:
    drawn: list[bool] = []
    rng = random.Random(7)
    orders = [order_of(k, rng, drawn) for k in range(10)]
    for block in range(5):
        assert {orders[2 * block], orders[2 * block + 1]} == {("base", "head"), ("head", "base")}
    again: list[bool] = []
    same = random.Random(7)
    assert [order_of(k, same, again) for k in range(10)] == orders


def test_an_aa_comparison_stops_at_no_regression_after_the_first_batch() -> None:
    pairs, (result, statuses, saved, base, head) = loop(jitter(1, 1.0, 0.5), jitter(2, 1.0, 0.5))
    assert result.stopped == "decided" and len(pairs.measured) == 6
    assert [m.status for m in result.measured] == ["no regression", "no regression", "no regression"]
    assert [(m.measure, m.loader) for m in result.measured] == [
        ("images/s", "sequential"),
        ("images/s", "process"),
        ("speedup", "process"),
    ]
    assert base.asked == head.asked == [0, 1, 2, 3, 4, 5]  # every round of each side, numbered in order
    assert saved[-1].stopped == "decided" and statuses[-1].kept == 6


def test_a_head_20_percent_slower_in_the_loader_is_a_regression_of_images_and_speedup() -> None:
    _, (result, *_) = loop(jitter(1, 1.0, 0.5), jitter(2, 1.0, 0.6))
    by = {(m.measure, m.loader): m for m in result.measured}
    assert by["images/s", "sequential"].status == "no regression"
    assert by["images/s", "process"].status == "regressed"
    assert by["images/s", "process"].change == pytest.approx(1 / 1.2 - 1, abs=0.01)
    assert by["speedup", "process"].status == "regressed"
    assert result.stopped == "regressed"


def test_a_change_at_the_threshold_runs_to_the_budget_and_is_inconclusive() -> None:
    budget = Budget(max_time_s=1000, max_pairs=14)
    _, (result, *_) = loop(jitter(1, 1.0, 0.5, 0.05), jitter(2, 1.0, 0.5 / 0.95, 0.05), budget)
    process = result.measured[1]
    assert result.stopped == "max-pairs" and process.pairs == 14 and process.status == "inconclusive"
    assert process.low is not None and process.high is not None and process.low < -0.05 < process.high


def test_the_time_budget_stops_before_a_pair_that_would_pass_it() -> None:
    _, (result, *_) = loop(jitter(1, 1.0, 0.5, 0.05), jitter(2, 1.0, 0.5 / 0.95, 0.05), Budget(max_time_s=17, max_pairs=60))
    assert result.stopped == "max-time" and len(result.pairs) == 8  # 2 s a pair: the 9th would end at 18 s


def test_a_disturbed_pair_is_dropped_and_measured_again_in_the_same_order() -> None:
    watch = FakeWatch(busy=(2,))
    pairs, (result, *_) = loop(jitter(1, 1.0, 0.5), jitter(2, 1.0, 0.5), watch=watch)
    dropped = [p for p in result.pairs if not p.kept]
    assert len(dropped) == 1 and "other processes used 1.00 of 2 cores (4242 yes 1.00)" in dropped[0].why
    assert result.pairs[3].order == result.pairs[2].order and result.pairs[3].kept  # the same order, measured again
    assert watch.waited == 1 and sum(p.kept for p in result.pairs) == 6
    assert pairs.keep_rounds() == {"base": [0, 1, 3, 4, 5, 6], "head": [0, 1, 3, 4, 5, 6]}


def test_a_failed_round_drops_its_pair_and_three_in_a_row_stop_with_the_sides_error() -> None:
    _, (result, *_) = loop(jitter(1, 1.0, 0.5), jitter(2, 1.0, 0.5), head_fail=(1,))
    assert [p.kept for p in result.pairs][:3] == [True, False, True]
    assert result.pairs[1].why == "head side: worker 0 died" and result.pairs[1].head_wall_s == ()
    with pytest.raises(SideError, match="head side: worker 0 died"):
        loop(jitter(1, 1.0, 0.5), jitter(2, 1.0, 0.5), head_fail=(1, 2, 3))


def test_loaders_that_differ_are_named_both_ways() -> None:
    infos = {"base": info("base", ("sequential", "thread")), "head": info("head")}
    kept = [Pair("base,head", (1.0, 0.5), (1.0, 0.5), 64, 64, True)] * 6
    assert [m.loader for m in judge(infos, kept, Thresholds(0.05, 0.1), final=False)] == [
        "sequential",
        "thread → process",
        "thread → process",
    ]


# -- the side server, in-process, with real loaders -------------------------------------------------------------


def talk(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answers = io.StringIO()
    serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), answers)
    return [json.loads(line) for line in answers.getvalue().splitlines()]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_side_sets_up_measures_rounds_and_makes_points_over_the_kept_ones(images: Path) -> None:
    experiment = {
        "kind": "run", "inputs": str(images), "pipelines": ["light"], "workers": [1], "batch_sizes": [5],
        "loaders": ["sequential", "process"],
    }  # fmt: skip
    hello, setup, r0, r1, r2, points, closed = talk([
        {"op": "hello"}, {"op": "setup", "experiment": experiment},
        {"op": "round", "number": 0}, {"op": "round", "number": 1}, {"op": "round", "number": 2},
        {"op": "points", "keep": [0, 2]}, {"op": "close"},
    ])  # fmt: skip
    assert hello["ok"] and hello["protocol"] == PROTOCOL and hello["augmentation"].startswith("albumentations")
    assert setup["ok"] and setup["loaders"] == ["sequential", "process"] and setup["images"] == 21
    assert setup["warm"][0]["digest"] == setup["warm"][1]["digest"]  # the same batches, bit for bit
    assert len(setup["pids"]) == 2  # the side and its one worker
    for r in (r0, r1, r2):
        assert r["ok"] and r["images"] == [21, 21] and all(w > 0 for w in r["wall_s"]) and r["stalled"] == []
    made = points["points"]
    assert [p["loader"] for p in made] == ["sequential", "process"]
    assert made[1]["wall_s"] == [r0["wall_s"][1], r2["wall_s"][1]]  # the kept rounds, not round 1
    assert made[1]["baseline_wall_s"] == [r0["wall_s"][0], r2["wall_s"][0]] and made[1]["same_batches"] is True
    assert closed == {"ok": True}


@pytest.mark.timeout(30)
def test_a_side_answers_bad_requests_in_one_line_and_keeps_serving(images: Path) -> None:
    bad = {"kind": "run", "inputs": str(images), "pipelines": ["light"], "workers": [1], "batch_sizes": [0]}
    unknown = {**bad, "batch_sizes": [5], "colour": "red"}
    early, setup, other, hello, _ = talk([
        {"op": "round", "number": 0}, {"op": "setup", "experiment": bad}, {"op": "setup", "experiment": unknown},
        {"op": "hello"}, {"op": "close"},
    ])  # fmt: skip
    assert early == {"ok": False, "error": "'round' before setup", "exit_code": 2, "warnings": []}
    assert not setup["ok"] and setup["exit_code"] == 2 and "--batch-size" in setup["error"] and "\n" not in setup["error"]
    assert not other["ok"] and "has no option 'colour'" in other["error"]
    assert hello["ok"]
