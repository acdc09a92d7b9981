"""No orphans, whatever kills the parent: a main process killed by SIGKILL during an epoch takes its workers and
its shared-memory ring with it (forking.die_with_parent; the watch where the kernel cannot tie a worker)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pdl.loaders.ring import SHM_PREFIX

from ..processes import shm_entries

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

# a ParallelLoader mid-epoch, its ring in a memfd or in /dev/shm, started by the main thread or by a thread that
# has ended by then (its workers must outlive that thread, and still die with the process). Once the first batch is
# out, every read takes a minute (a dead network mount): the workers are deep in a chunk when the parent dies, and
# would not look for it before the minute is over
MAIN = r"""
import json, os, sys, threading, time
import numpy as np
from pdl import load_pipeline
from pdl.loaders import process, ring
from pdl.loaders.process import ParallelLoader

where, who, hang = sys.argv[1:4]
if where == "shm":
    process.backing = lambda: ring.SHM

class Slow:
    def __len__(self):
        return 400

    def __getitem__(self, i):
        time.sleep(60 if os.path.exists(hang) else 0.02)
        return np.zeros((16, 16, 3), np.uint8)

loader = ParallelLoader(Slow(), load_pipeline("light"), batch_size=4, num_workers=2)
if who == "thread":
    starter = threading.Thread(target=loader.start)
    starter.start()
    starter.join()
else:
    loader.start()
batches = iter(loader)
next(batches)
open(hang, "w").close()
print(json.dumps({"workers": loader.worker_pids, "ring": loader.ring.name, "where": loader.ring.where}), flush=True)
for _ in batches:
    pass
"""

MIDDLE = r"""
import subprocess, time
from pdl.loaders.forking import die_with_parent
child = subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent)
print(child.pid, flush=True)
time.sleep(60)
"""


def first_line(proc: subprocess.Popen[str], within_s: float = 30.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], within_s)
    assert ready, "the child said nothing"
    return proc.stdout.readline()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def until(check, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_parent_killed_mid_epoch_leaves_no_worker_and_no_shared_memory(tmp_path: Path) -> None:
    # both cases at once, each in its own parent: a ring in a memfd started by the main thread (one worker
    # stopped, too), and one in /dev/shm started by a thread that has ended
    cases = [("memfd", "main"), ("shm", "thread")]
    procs = [
        subprocess.Popen([sys.executable, "-c", MAIN, where, who, str(tmp_path / who)], stdout=subprocess.PIPE, text=True)
        for where, who in cases
    ]
    workers: list[list[int]] = [[], []]
    try:
        for k, (proc, (where, _)) in enumerate(zip(procs, cases, strict=True)):
            said = json.loads(first_line(proc))
            workers[k] = said["workers"]
            assert said["where"] == ("/dev/shm" if where == "shm" else "memfd") and said["ring"].startswith(SHM_PREFIX)
            assert len(workers[k]) == 2 and all(alive(pid) for pid in workers[k])  # after the starting thread ended too
            assert shm_entries(proc.pid)  # the ring, held
        time.sleep(0.3)  # the workers are in their minute-long reads now
        os.kill(workers[0][0], signal.SIGSTOP)  # tied by the kernel: even a stopped worker goes
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        everyone = [pid for pids in workers for pid in pids]
        assert until(lambda: not any(alive(pid) for pid in everyone), 5.0), "workers outlived their parent"
        for proc in procs:
            assert until(lambda: not shm_entries(proc.pid), 5.0), f"left: {shm_entries(proc.pid)}"  # noqa: B023
    finally:
        for pid in [*(p.pid for p in procs), *(pid for pids in workers for pid in pids)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in procs:
            proc.wait(10)
            for name in shm_entries(proc.pid):
                with contextlib.suppress(FileNotFoundError):
                    (Path("/dev/shm") / name).unlink()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_die_with_parent_as_a_preexec_fn_ends_a_subprocess_with_its_parent() -> None:
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        child = int(first_line(middle))
        assert alive(child)
        middle.send_signal(signal.SIGKILL)
        middle.wait(10)
        assert until(lambda: not alive(child), 5.0), "the subprocess outlived its parent"
    finally:
        for pid in (middle.pid, child):
            with contextlib.suppress(ProcessLookupError):
                if pid:
                    os.kill(pid, signal.SIGKILL)
        middle.wait(10)
