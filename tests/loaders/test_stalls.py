"""A worker that stops making progress is named (pid, state, for how long), by its progress and by what the OS
says of its process; with a timeout, an error names it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import warnings

import numpy as np
import pytest

from pdl import load_pipeline
from pdl.errors import LoaderTimeoutError
from pdl.loaders.process import ParallelLoader
from pdl.loaders.progress import STALL_MIN_S, Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_that_finishes_nothing_while_the_others_do_is_named_once() -> None:
    clock = Clock()
    progress = Progress([101, 102], clock, state=lambda pid: None)
    progress.working()
    for t in range(1, 4):  # worker 0 keeps finishing 0.1-s chunks; worker 1 nothing
        clock.now = t * 0.5
        progress.done(0, 0.1)
    assert progress.check() == []  # 1.5 s: within the bound, max(2 s, 10 × the longest chunk)
    for t in range(4, 7):
        clock.now = t * 0.5
        progress.done(0, 0.1)
    [said] = progress.check()
    assert said == "worker 1 (pid 102) made no progress: finished nothing for 3 s while the others finished 6 chunks"
    assert progress.check() == []  # named once
    assert progress.take() == (said,) and progress.take() == ()


def test_a_worker_without_a_chunk_to_take_is_idle_not_stalled() -> None:
    # found measuring the peers with a 100 ms step: one chunk outstanding at a time, worker 0 took them all, and
    # worker 1 was named "made no progress" and its rounds measured again
    clock = Clock()
    progress = Progress([101, 102], clock, state=lambda pid: None)
    for t in range(1, 13):
        progress.working(1)
        clock.now = t * 0.5
        progress.done(0, 0.1, 0)
    assert progress.check() == []  # 12 chunks by worker 0 in 6 s, never two outstanding: worker 1 had none to take
    for t in range(13, 20):  # now a backlog: two chunks for two workers, and worker 1 still takes none
        progress.working(2)
        clock.now = t * 0.5
        progress.done(0, 0.1, 2)
    [said] = progress.check()
    assert said.startswith("worker 1 (pid 102) made no progress")


def test_the_os_state_names_a_stopped_worker_even_when_every_worker_waits() -> None:
    clock = Clock()
    states = {101: None, 102: "is stopped (T)"}
    progress = Progress([101, 102], clock, state=states.get)
    progress.working()
    clock.now = STALL_MIN_S + 1
    [said] = progress.check()  # nobody finished anything (the batch waits on the stopped one's chunk)
    assert said.startswith("worker 1 (pid 102) is stopped (T): finished nothing for 3 s")


def test_a_stall_past_the_timeout_is_overdue() -> None:
    clock = Clock()
    progress = Progress([101, 102], clock, state={101: None, 102: "is stopped (T)"}.get)
    progress.working()
    for t in range(1, 9):
        clock.now = t * 0.5
        progress.done(0, 0.1)
    assert progress.overdue(10.0) is None  # not named yet
    assert progress.check() and progress.overdue(10.0) is None  # named at 4 s; the timeout is 10 s
    clock.now = 10.5
    assert progress.overdue(10.0) == "worker 1 (pid 102) is stopped (T): finished nothing for 10 s, past the timeout of 10 s"


def test_no_stall_without_work_or_within_the_bound() -> None:
    clock = Clock()
    progress = Progress([101], clock, state=lambda pid: "is stopped (T)")
    clock.now = 100.0
    assert progress.check() == []  # nothing outstanding: idle between epochs is no stall
    progress.working()
    progress.done(0, 1.0)  # a slow pipeline: 1-s chunks
    clock.now = 105.0
    assert progress.check() == []  # 5 s < 10 chunks of 1 s
    progress.idle()
    clock.now = 200.0
    assert progress.check() == []


class Slow:
    """160 small images, 30 ms each to read: an epoch long enough for a stall to show."""

    def __len__(self) -> int:
        return 160

    def __getitem__(self, i: int) -> np.ndarray:
        time.sleep(0.03)
        return np.full((64, 64, 3), i % 255, np.uint8)


@pytest.mark.timeout(60)
def test_a_stopped_worker_is_named_by_pid_and_state_or_the_timeout_names_it() -> None:
    with ParallelLoader(Slow(), load_pipeline("light"), batch_size=8, num_workers=2, timeout=3.0) as loader:
        loader.start()
        stopped = loader.worker_pids[1]
        os.kill(stopped, signal.SIGSTOP)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    for _ in loader:
                        pass
                    said = [str(w.message) for w in caught] + list(loader.stalls())
                except LoaderTimeoutError as exc:  # stalled past the timeout: the loader is closed, the worker gone
                    said = [str(w.message) for w in caught] + [str(exc)]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGCONT)
    # the others carried on (it held nothing) or the batch waited on it: either way it is named, then ended and
    # replaced, its chunk made again (the epoch ends, well within the timeout of 3 s: tests/loaders/test_redo.py)
    # named by pid and state: "finished nothing for N s" once it held work, "with work waiting for it" when it
    # was stopped between chunks (which of the two depends on where SIGSTOP found it)
    assert any(f"worker 1 (pid {stopped}) is stopped (T)" in s for s in said), said
    assert any("ended (SIGKILL) and replaced by pid" in s for s in said), said
