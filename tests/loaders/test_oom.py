"""A worker ended by the kernel's out-of-memory killer: the loader's one line says so, names the cgroup's memory
limit and its peak, and what would fit; nothing is left running. Run in a memory cgroup made for the test under
this process's own (cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``); skipped, with the reason, where the
machine does not let one be made."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

LIMIT_MIB = 600
ROOT = Path("/sys/fs/cgroup")

# one worker, on reading image 0, takes a GiB: the killer ends it (the largest process of the cgroup)
SCRIPT = r"""
import sys, time
import numpy as np
from pdl import load_pipeline
from pdl.errors import PdlError
from pdl.loaders.process import ParallelLoader

class Greedy:
    def __len__(self):
        return 16

    def __getitem__(self, i):
        if i == 0:
            np.ones(2**30, np.uint8)
        return np.zeros((16, 16, 3), np.uint8)

try:
    with ParallelLoader(Greedy(), load_pipeline("light"), batch_size=4, num_workers=2, prefetch=2) as loader:
        for _ in loader:
            pass
except PdlError as exc:
    print(exc, flush=True)
    sys.exit(exc.exit_code)
"""


def own_memory_cgroup() -> tuple[Path, str]:
    """This process's memory cgroup folder and the limit file its children have: v2, else v1; skip if neither."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, rel = line.split(":", 2)
        here = ROOT / rel.lstrip("/")
        if controllers == "" and (here / "cgroup.subtree_control").exists():
            if "memory" in (here / "cgroup.subtree_control").read_text().split():
                return here, "memory.max"
        elif "memory" in controllers.split(",") and (ROOT / "memory").is_dir():
            return ROOT / "memory" / rel.lstrip("/"), "memory.limit_in_bytes"
    pytest.skip("no memory cgroup to make a child in here (cgroup v2 without memory in subtree_control, and no v1)")


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    """A child cgroup of this process's own, limited to LIMIT_MIB; removed after (its processes gone first)."""
    parent, limit_file = own_memory_cgroup()
    made = parent / f"pdl-test-{secrets.token_hex(4)}"
    try:
        made.mkdir()
        (made / limit_file).write_text(str(LIMIT_MIB * 2**20))
    except OSError as exc:
        with contextlib.suppress(OSError):
            made.rmdir()
        pytest.skip(f"cannot make a memory cgroup under {parent}: {exc}")
    try:
        yield made
    finally:
        procs = made / "cgroup.procs"
        for pid in procs.read_text().split() if procs.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        for _ in range(50):
            with contextlib.suppress(OSError):
                made.rmdir()
                break
            time.sleep(0.1)


def test_a_worker_killed_by_the_oom_killer_is_said_so_with_the_limit_and_what_fits(memory_cgroup: Path) -> None:
    def enter() -> None:  # in the child, before exec: into the limited cgroup
        (memory_cgroup / "cgroup.procs").write_text(str(os.getpid()))

    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=50, preexec_fn=enter)
    line = done.stdout.strip()
    assert done.returncode == 2, (done.returncode, line, done.stderr[-2000:])
    assert "died: killed by the out-of-memory killer (signal SIGKILL): the cgroup's memory." in line, line
    assert f" is {LIMIT_MIB} MiB (peak " in line or f" is {LIMIT_MIB} MiB;" in line, line
    assert "2 workers of `batch_size` 4 with `prefetch` 2 do not fit: try `num_workers` 1, `batch_size` 2 or" in line
    assert "\n" not in line
    assert (memory_cgroup / "cgroup.procs").read_text().split() == []  # nothing of it left running
