"""What else competes for the CPUs: the counters' parsers on literal text, the limits, and a real neighbour (a
CPU-bound process outside pdl's tree) told apart from pdl's own busy workers."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import pytest

from pdl.machine import contention
from pdl.machine.contention import (
    EXIT_BUSY,
    OTHERS_LIMIT,
    Interference,
    MachineBusy,
    Reading,
    Watch,
    busy_summary,
    cpu_times,
    pressure_some,
    proc_times,
    throttle_files,
    throttle_summary,
    throttling,
    tree,
)

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
TICK = os.sysconf("SC_CLK_TCK")

STAT = b"""cpu  900 10 600 7300 80 0 20 30 0 0
cpu0 400 5 300 3600 40 0 10 10 0 0
cpu1 500 5 300 3700 40 0 10 20 0 0
intr 12345
"""


def quiet(**fields: object) -> Interference:
    values: dict[str, object] = {"others": 0.0, "steal": 0.0, "throttled": None, "throttled_s": None, "pressure": 0.0}
    values |= {"usable": 2, "cpus": 2} | fields
    return Interference(**values)  # type: ignore[arg-type]


def test_busy_and_steal_are_summed_over_the_cpus_pdl_may_use() -> None:
    busy, steal = cpu_times([0, 1], STAT) or (0, 0)
    assert busy == pytest.approx((400 + 5 + 300 + 10 + 500 + 5 + 300 + 10) / TICK)  # user nice system irq softirq
    assert steal == pytest.approx(30 / TICK)
    assert cpu_times([1], STAT) == (pytest.approx(815 / TICK), pytest.approx(20 / TICK))
    assert cpu_times([0, 7], STAT) is None  # a CPU of the set missing: unknown, not half a count
    assert cpu_times([0], None) is None and cpu_times([0], b"cpu0 a b c") is None


def test_cpu_pressure_reads_the_some_line_in_seconds() -> None:
    text = b"some avg10=1.75 avg60=1.69 avg300=0.47 total=1701248\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    assert pressure_some(text) == pytest.approx(1.701248)
    assert pressure_some(None) is None and pressure_some(b"full total=3\n") is None and pressure_some(b"some total=x") is None


def test_a_process_line_with_spaces_and_parentheses_in_its_name(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    fields = "S 7 1 1 0 -1 0 0 0 0 0 110 20 30 40 20 0 1 0 100 0 0"
    (tmp_path / "42" / "stat").write_text(f"42 (my (odd) name) {fields}\n")
    assert proc_times(42, str(tmp_path)) == (7, (110 + 20 + 30 + 40) / TICK, b"my (odd) name")
    assert proc_times(43, str(tmp_path)) is None


def test_the_tree_holds_descendants_and_followed_pids_only() -> None:
    table = {
        1: (0, 0.0, b"init"),
        10: (1, 0.0, b"pdl"),
        11: (10, 0.0, b"w"),
        12: (11, 0.0, b"sub"),
        20: (1, 0.0, b"x"),
        30: (1, 0.0, b"ray"),
    }
    assert tree(10, table) == {10, 11, 12}
    assert tree(10, table, [30]) == {10, 11, 12, 30}


def _cgroup(root: Path, version: str, quota: str) -> Path:
    if version == "v2":
        d = root / "a" / "b"
        d.mkdir(parents=True)
        (d / "cpu.max").write_text(quota)
        (d / "cpu.stat").write_text("usage_usec 10\nnr_periods 9\nnr_throttled 4\nthrottled_usec 250000\n")
        (root / "a" / "cpu.max").write_text("max 100000\n")
        return root
    d = root / "cpu" / "a" / "b"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text(quota)
    (d / "cpu.stat").write_text("nr_periods 9\nnr_throttled 3\nthrottled_time 1500000000\n")
    return root


@pytest.mark.parametrize(("version", "line", "quota", "expected"), [
    ("v2", "0::/a/b\n", "150000 100000\n", (4, 0.25)),
    ("v1", "1:cpu:/a/b\n", "150000\n", (3, 1.5)),
])  # fmt: skip
def test_throttling_is_read_where_a_quota_is_set(tmp_path: Path, version: str, line: str, quota: str, expected: tuple) -> None:
    root = _cgroup(tmp_path / "fs", version, quota)
    (tmp_path / "cgroup").write_text(line)
    files = throttle_files(tmp_path / "cgroup", root)
    assert [(p.parent.name, v) for p, v in files] == [("b", version)]  # the parent has no quota: not read
    assert throttling(files) == (expected[0], pytest.approx(expected[1]))


def test_no_quota_no_throttling_files(tmp_path: Path) -> None:
    root = _cgroup(tmp_path / "fs", "v2", "max 100000\n")
    (tmp_path / "cgroup").write_text("0::/a/b\n")
    assert throttle_files(tmp_path / "cgroup", root) == ()
    assert throttle_files(tmp_path / "missing", root) == ()
    assert throttling([(tmp_path / "nope", "v2")]) is None


def test_a_round_is_disturbed_past_the_limits_of_the_usable_cores() -> None:
    assert not quiet(others=OTHERS_LIMIT * 2 - 0.01).disturbed
    assert quiet(others=OTHERS_LIMIT * 2 + 0.01).disturbed
    assert quiet(steal=0.2).disturbed and not quiet(steal=0.05).disturbed
    # others on CPUs pdl may run on but does not plan to use (a quota of 2 on 8 CPUs) do not disturb it
    assert not quiet(others=5.0, usable=2, cpus=8).disturbed and quiet(others=6.5, usable=2, cpus=8).disturbed
    assert not quiet(others=None, steal=None).disturbed  # unknown is not busy
    assert not quiet(throttled=9, throttled_s=1.0, pressure=0.9).disturbed  # the quota is the machine measured


def test_what_disturbed_a_round_is_said_with_who() -> None:
    busy = quiet(others=0.98, top=("1234 python3 0.98",))
    assert busy.describe() == "other processes used 0.98 of 2 cores (1234 python3 0.98)"
    assert busy_summary([busy] * 7, 7) == "other processes used up to 0.98 of 2 cores in 7 of 7 rounds (1234 python3)"
    assert busy_summary([], 5) == "nothing else seen in 5 rounds"
    stall = quiet(others=0.98, top=("1234 python3 0.98",), stalled=("worker 0 (pid 9) is stopped (T)",))
    assert busy_summary([busy] * 24 + [stall], 25) == (  # the stall is one round's, the neighbour's every round's
        "other processes used up to 0.98 of 2 cores in 25 of 25 rounds (1234 python3); "
        "a worker of pdl's stalled in 1 of 25 rounds (worker 0 (pid 9) is stopped (T))"
    )
    hit = [quiet(throttled=3, throttled_s=0.1), quiet(throttled=0, throttled_s=0.0), quiet(throttled=5, throttled_s=0.3)]
    assert throttle_summary(hit) == "the cgroup's CPU quota throttled pdl in 2 of 3 rounds (0.30 s a round, median)"
    assert throttle_summary([quiet()]) is None


def test_between_takes_pdls_own_time_out_of_the_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contention, "processes", lambda proc="/proc": {})  # no process of pdl's started in between
    watch = Watch()
    watch.top = lambda window_s=0.2: ("99 neighbour 1.00",)  # type: ignore[method-assign]
    a = Reading(10.0, busy=100.0, steal=1.0, own=50.0, own_pids=frozenset(), throttled=2, throttled_s=0.5, pressure_s=3.0)
    mine = Reading(11.0, busy=102.0, steal=1.0, own=51.9, own_pids=frozenset(), throttled=2, throttled_s=0.5, pressure_s=3.1)
    seen = watch.between(a, mine)  # 2 CPU-seconds busy, 1.9 of them pdl's: others used 0.1 core
    assert seen.others == pytest.approx(0.1) and seen.steal == 0 and seen.throttled == 0 and seen.pressure == pytest.approx(0.1)
    assert not seen.disturbed and seen.top == ()
    theirs = Reading(
        11.0, busy=102.0, steal=1.0, own=51.0, own_pids=frozenset(), throttled=None, throttled_s=None, pressure_s=None
    )
    seen = watch.between(a, theirs)
    assert seen.others == pytest.approx(1.0) and seen.disturbed and seen.top == ("99 neighbour 1.00",)
    assert seen.throttled is None and seen.pressure is None


def test_unknown_sources_read_unknown_and_never_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    watch = Watch()
    watch.linux = False
    seen = watch.between(watch.reading(), watch.reading())
    assert (seen.others, seen.steal, seen.throttled, seen.pressure) == (None, None, None, None) and not seen.disturbed
    monkeypatch.setattr(contention, "_read_bytes", lambda path: None)  # /proc unreadable (a locked-down container)
    watch = Watch()
    assert watch.reading().busy is None and not watch.between(watch.reading(), watch.reading()).disturbed


def test_waiting_looks_until_quiet_within_one_budget() -> None:
    busy, calm = quiet(others=1.0), quiet()
    said: list[str] = []
    watch = Watch(wait_s=10.0, say=said.append, sleep=lambda s: None)
    looks = iter([busy, busy, calm])
    watch.look = lambda window_s=0.5: next(looks)  # type: ignore[method-assign]
    assert watch.wait_quiet(busy) is True
    assert len(said) == 3 and said[0].startswith("waiting for quiet (10 s left): other processes used 1.00 of 2 cores")
    assert watch.wait_quiet(calm) is True and len(said) == 3  # quiet already: no look, no wait
    watch.wait_left = 0.0
    assert watch.wait_quiet(busy) is False  # the budget is spent: measure anyway, marked


def test_if_busy_fail_raises_its_own_exit_code() -> None:
    watch = Watch(wait_s=0.0, fail=True)
    with pytest.raises(
        MachineBusy, match=r"^the machine is busy: other processes used 1\.00 of 2 cores; nothing measured"
    ) as info:
        watch.wait_quiet(quiet(others=1.0))
    assert info.value.exit_code == EXIT_BUSY == 4
    assert Watch(fail=False).refuse(quiet(others=1.0)) is None


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@LINUX
@pytest.mark.timeout(30)
def test_a_neighbour_is_seen_and_named(neighbour) -> None:
    pid = neighbour(20)
    watch = Watch()
    watch.follow([])
    seen = watch.look(1.0)
    assert seen.others is not None and seen.others > OTHERS_LIMIT * seen.usable and seen.disturbed
    assert any(t.split()[0] == str(pid) for t in seen.top), seen.top


@LINUX
@pytest.mark.alone  # its workers must get the CPU time it counts: under xdist, not beside another test's
@pytest.mark.timeout(30)
def test_pdls_own_busy_workers_never_count_as_others() -> None:
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=_spin, args=(1.5,)) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        watch = Watch()
        watch.follow(w.pid for w in workers if w.pid)
        a = watch.reading()
        time.sleep(1.0)
        b = watch.reading()
        seen = watch.between(a, b)
        assert a.own is not None and b.own is not None and a.busy is not None and b.busy is not None
        mine = b.own - a.own
        assert mine > 0.5  # the workers spun: their CPU time is counted as pdl's own ...
        # ... and none of it as another's, whatever else the machine runs meanwhile
        assert seen.others == pytest.approx(max(0.0, (b.busy - a.busy) - mine) / (b.t - a.t))
    finally:
        for w in workers:
            w.join(5)
            if w.is_alive():
                w.kill()
                w.join(5)
