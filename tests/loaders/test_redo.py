"""A stalled worker's work is redone: the worker is named, killed and replaced, its chunk made again by another,
and the epoch's batches are still the sequential loop's, bit for bit; the same for a ceiling copy."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import psutil
import pytest

from pdl import load_pipeline
from pdl.loaders import ceiling as ceiling_module
from pdl.loaders import make_loader
from pdl.loaders import process as process_module
from pdl.loaders import progress as progress_module
from pdl.loaders.batching import Batch, epoch_plan
from pdl.loaders.ceiling import CeilingLoader
from pdl.loaders.process import ParallelLoader
from pdl.loaders.ring import SlotRing

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

AT = 41  # the image that traps the first process to read it: mid-epoch


class Trap:
    """64 small images, 5 ms each to read. The first process to read image ``AT`` writes its pid into ``flag``
    and then stops itself (``then="stop"``: SIGSTOP) or blocks for an hour (``"block"``); every later read of it,
    the copy made again included, goes through. ``flag=None``: no trap (the reference)."""

    def __init__(self, flag: Path | None, then: str = "stop") -> None:
        self.flag, self.then = flag, then

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> np.ndarray:
        time.sleep(0.005)
        if self.flag is not None and i == AT:
            try:
                fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                if self.then == "stop":
                    os.kill(os.getpid(), signal.SIGSTOP)
                else:
                    time.sleep(3600)
        return np.full((32, 32, 3), i % 251, np.uint8)


@pytest.fixture(autouse=True)
def quick_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stall is named after 0.5 s instead of 2 s, looked for every 0.2 s: the same rule, a shorter test."""
    monkeypatch.setattr(progress_module, "STALL_MIN_S", 0.5)
    monkeypatch.setattr(process_module, "STALL_CHECK_S", 0.2)
    monkeypatch.setattr(ceiling_module, "STALL_CHECK_S", 0.2)


@functools.cache
def reference() -> list[Batch]:
    """The sequential loop's first epoch."""
    with make_loader("sequential", Trap(None), load_pipeline("light"), batch_size=8) as seq:
        return list(seq)


def same(got: list[Batch], want: list[Batch]) -> None:
    assert [b.indices.tolist() for b in got] == [b.indices.tolist() for b in want]
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.images, w.images) and np.array_equal(g.labels, w.labels)


def trapped(flag: Path) -> int:
    deadline = time.monotonic() + 10
    while not (flag.exists() and flag.read_text()):
        assert time.monotonic() < deadline, "no worker reached the trap"
        time.sleep(0.01)
    return int(flag.read_text())


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_worker_stopped_mid_epoch_is_named_ended_and_replaced_and_the_batches_stay_the_loops(tmp_path: Path) -> None:
    flag = tmp_path / "trapped"
    with ParallelLoader(Trap(flag), load_pipeline("light"), batch_size=8, num_workers=2, prefetch=2) as loader:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = list(loader)  # the worker that reads image 41 stops itself (SIGSTOP) holding its chunk
        stopped = trapped(flag)
        stalls = loader.stalls()
        assert gone(stopped) and stopped not in loader.worker_pids and len(loader.worker_pids) == 2
        second = list(loader)  # the replacement works like any worker
        assert loader.stalls() == ()
    same(first, reference())
    assert [b.indices.tolist() for b in second] == [b.tolist() for b in epoch_plan(64, loader.spec, 1)]
    [line] = stalls
    wid = "0" if line.startswith("worker 0") else "1"
    assert line.startswith(f"worker {wid} (pid {stopped}) is stopped (T): finished nothing for ")
    assert " ended (SIGKILL) and replaced by pid " in line
    assert line.endswith(" s lost") and ": its chunk made again by another worker, " in line
    assert [str(w.message) for w in caught] == [line]  # said once, as it happened


def test_a_worker_in_uninterruptible_sleep_has_its_chunk_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the trapped worker blocks for an hour; the OS is made to say 'disk-sleep' of it, as of a read on a dead mount
    flag = tmp_path / "trapped"
    states = {"disk-sleep": "is in uninterruptible sleep (D)"}

    def state(pid: int) -> str | None:
        return states["disk-sleep"] if flag.exists() and flag.read_text() == str(pid) else None

    monkeypatch.setattr(progress_module, "process_state", state)
    with ParallelLoader(Trap(flag, "block"), load_pipeline("light"), batch_size=8, num_workers=2) as loader:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = list(loader)
        blocked = trapped(flag)
        [line] = loader.stalls()
        assert gone(blocked)
    same(got, reference())
    assert f"(pid {blocked}) is in uninterruptible sleep (D): finished nothing for " in line
    assert ": its chunk made again by another worker, " in line


def test_a_worker_killed_holding_the_task_lock_restarts_the_pool(tmp_path: Path) -> None:
    # the test takes the workers' task lock, as a worker killed between reading a chunk and noting it would leave
    # it, and stops a worker: the lock is found taken after the kill, so every worker is replaced on a new pipe
    with ParallelLoader(Trap(None), load_pipeline("light"), batch_size=8, num_workers=2) as loader:
        batches = iter(loader)
        got = [next(batches)]
        assert loader._pool is not None
        old_lock, before = loader._pool.take, loader.worker_pids
        old_lock.acquire()
        os.kill(before[1], signal.SIGSTOP)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got += list(batches)
        finally:
            old_lock.release()
            with contextlib.suppress(ProcessLookupError):
                os.kill(before[1], signal.SIGCONT)
        [line] = loader.stalls()
        assert not set(before) & set(loader.worker_pids) and len(loader.worker_pids) == 2
        assert all(gone(pid) for pid in before)
    same(got, reference())
    assert line.startswith(f"worker 1 (pid {before[1]}) is stopped (T)") and "replaced by pid" in line


def test_a_stopped_ceiling_copy_is_replaced_and_the_rest_of_its_share_made(tmp_path: Path) -> None:
    flag = tmp_path / "trapped"
    with CeilingLoader(Trap(flag), load_pipeline("light"), batch_size=8, num_workers=2) as ceiling:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            made = np.concatenate([b.indices for b in ceiling])
        stopped = trapped(flag)
        [line] = ceiling.stalls()
        assert gone(stopped) and len(ceiling.worker_pids) == 2
        assert sorted(np.concatenate([b.indices for b in ceiling]).tolist()) == list(range(64))  # and again
    assert sorted(made.tolist()) == list(range(64))  # every image once: the stalled batch made by the new copy
    assert f"of the ceiling (pid {stopped}) is stopped (T): finished nothing for " in line
    assert "replaced by pid" in line and "the chunk it held made again by the new copy" in line


def test_a_slot_released_with_a_hold_is_not_handed_out_until_the_hold_ends() -> None:
    ring = SlotRing(2, 4096)
    try:
        writer_alive = [True]
        first, second = ring.acquire(), ring.acquire()
        assert first is not None and second is not None and ring.acquire() is None
        ring.release(first, lambda: writer_alive[0])  # a killed worker not yet seen dead may write into it
        assert ring.acquire() is None
        writer_alive[0] = False
        assert ring.acquire() == first
    finally:
        ring.close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_stopped_while_idle_is_named_as_soon_as_work_comes_even_in_short_epochs() -> None:
    # found by hand: pdl run's epochs of 1-2 s each began with fresh work, so a worker stopped between its chunks
    # was never idle "long enough" with work outstanding, and the rounds ran on one worker unnamed
    clock = Clock()
    progress = progress_module.Progress([101, 102], clock, state={101: None, 102: "is stopped (T)"}.get)
    progress.working()
    clock.now = 3.0
    progress.done(0, 0.1)
    progress.idle()  # the epoch ends
    clock.now = 3.5
    progress.working()  # the next begins: work for 0.1 s only
    clock.now = 3.6
    [said] = progress.check()
    assert said == "worker 1 (pid 102) is stopped (T), with work waiting for it (0.1 s)"
    clock.now = 5.0
    assert progress.take() == (said,)
    [later] = progress.check()  # named again after a take: still stopped, for longer
    assert later == "worker 1 (pid 102) is stopped (T): finished nothing for 1.5 s while the others finished 1 chunks"


def test_a_moment_in_disk_sleep_right_after_work_came_is_a_read_not_a_stall() -> None:
    clock = Clock()
    progress = progress_module.Progress([101, 102], clock, state={101: None, 102: "is in uninterruptible sleep (D)"}.get)
    clock.now = 10.0  # both idle for 10 s between epochs
    progress.working()
    clock.now = 10.2
    assert progress.check() == []
    clock.now = 12.5  # still in D, with work outstanding for 2.5 s
    [said] = progress.check()
    assert said.startswith("worker 1 (pid 102) is in uninterruptible sleep (D)")
